"""`artmem measures`: one row per image through the batch engine, errors, attributes, resume."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from artmem.analysis.measures import (
    COMPOSITION_COLUMNS,
    HUE_COLUMNS,
    SYMMETRY_COLUMNS,
    ImageMeasurer,
)
from artmem.cli import main
from artmem.data.collection import Collection


@pytest.fixture()
def small_collection(synthetic_collection, tmp_path):
    """8 synthetic images + one broken file, with a predictions table for them."""
    root = tmp_path / "imgs"
    table = synthetic_collection.table.head(8).copy()
    for p in table["path"]:
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(synthetic_collection.abs_path(p), root / p)
    (root / "broken.jpg").write_bytes(b"not an image")
    extra = pd.DataFrame([{"path": "broken.jpg", **{c: table.iloc[0][c] for c in table.columns if c != "path"}}])
    table = pd.concat([table, extra], ignore_index=True)
    coll = Collection(table, str(root), "small")
    coll.save(tmp_path / "coll")
    preds = pd.DataFrame({"path": table["path"], "p_positive": np.linspace(0, 1, len(table)),
                          "p_negative": np.linspace(1, 0, len(table)), "pred": "x"})
    preds.to_parquet(tmp_path / "predictions.parquet")
    return tmp_path / "coll" / "collection.parquet", tmp_path / "predictions.parquet", coll


def test_measures_cli_rows_errors_attributes_and_resume(small_collection, tmp_path, capsys):
    coll_file, preds, coll = small_collection
    out = tmp_path / "m"
    args = ["measures", str(coll_file), "-o", str(out), "--predictions", str(preds), "--csv",
            "--workers", "0", "--shard-size", "4"]
    assert main(args) == 0
    printed = capsys.readouterr().out.split()
    assert str(out / "measures.parquet") in printed and str(out / "errors.parquet") in printed
    m = pd.read_parquet(out / "measures.parquet")
    assert len(m) == 8 and "broken.jpg" not in set(m["path"])
    assert m["path"].tolist() == coll.paths[:8]  # collection order
    for c in (*COMPOSITION_COLUMNS, *SYMMETRY_COLUMNS, *HUE_COLUMNS, "p_positive", "p_negative", "year",
              "true_memorability"):
        assert c in m.columns, c
    assert "pred" not in m.columns  # only p_<class> probabilities are attributes
    assert m[list(SYMMETRY_COLUMNS)].apply(lambda s: s.between(0, 1)).all().all()
    hue = m[list(HUE_COLUMNS)].to_numpy()
    ok = ~np.isnan(hue).any(1)
    assert np.allclose(hue[ok].sum(1), 1.0)
    err = pd.read_parquet(out / "errors.parquet")
    assert err["path"].tolist() == ["broken.jpg"] and err["reason"].str.len().gt(0).all()
    info = json.loads((out / "measures.json").read_text())
    assert info["groups"]["attributes"] == ["p_positive", "p_negative"]
    assert info["config"]["hue_mode"] == "chromatic"
    assert "year" in info["groups"]["metadata"]
    assert (out / "measures.csv").exists()
    # same values as the one-image path
    from artmem.data.images import load_image

    one = ImageMeasurer()(load_image(coll.abs_path(coll.paths[0])))
    for k, v in one.items():
        assert m.loc[0, k] == pytest.approx(v, abs=1e-6, nan_ok=True)

    # resume: finished shards are kept as they are (only the unreadable image is retried)
    mtime = {f: f.stat().st_mtime for f in (out / "shards").glob("measures-*.parquet")}
    assert main(args) == 0
    assert all(f.stat().st_mtime == t for f, t in mtime.items())
    pd.testing.assert_frame_equal(pd.read_parquet(out / "measures.parquet"), m)


def test_measures_without_symmetry_and_bad_predictions(small_collection, tmp_path, capsys):
    coll_file, _, _ = small_collection
    out = tmp_path / "m2"
    assert main(["measures", str(coll_file), "-o", str(out), "--no-symmetry", "--workers", "0"]) == 0
    m = pd.read_parquet(out / "measures.parquet")
    assert not any(c.startswith("symmetry") for c in m.columns)
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"path": ["a"], "label": ["x"]}).to_csv(bad, index=False)
    assert main(["measures", str(coll_file), "-o", str(tmp_path / "m3"), "--no-symmetry",
                 "--predictions", str(bad)]) == 2
    assert "p_<class>" in capsys.readouterr().err
