"""End to end through the CLI: build, similar (inside / outside query, filter), add, check, info."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from artmem.cli import main
from artmem.retrieval.index import open_index
from artmem.retrieval.query import search


@pytest.fixture(scope="module")
def built(tmp_path_factory, synthetic_collection, tiny_features):
    out = tmp_path_factory.mktemp("idx") / "index"
    coll_file = f"{synthetic_collection.root}/collection.parquet"
    assert main(["-q", "index", "build", coll_file, "--features", str(tiny_features), "-o", str(out)]) == 0
    return out


def test_build_writes_index_with_collection_metadata(built, synthetic_collection, capsys):
    index = open_index(built)
    assert len(index) == len(synthetic_collection)
    assert {"style", "genre", "artist"} <= set(index.items.columns)
    assert index.meta["model"] == "tiny_test" and index.meta["layer"] == "conv3"
    assert index.meta["collection_root"] == synthetic_collection.root
    assert main(["index", "check", str(built)]) == 0
    assert main(["index", "info", str(built)]) == 0
    assert '"backend": "faiss"' in capsys.readouterr().out


def test_similar_by_collection_path(built, synthetic_collection, tmp_path, capsys):
    query = synthetic_collection.paths[3]
    assert main(["similar", query, "--index", str(built), "-k", "5", "-o", str(tmp_path / "q"), "--csv"]) == 0
    printed = capsys.readouterr()
    assert str(tmp_path / "q" / "contact_sheet.png") in printed.out.splitlines()
    assert "rank" in printed.err and "similarity" in printed.err  # the table, on stderr
    res = pd.read_parquet(tmp_path / "q" / "results.parquet")
    assert len(res) == 5 and query not in res["path"].tolist()
    assert res["similarity"].is_monotonic_decreasing and (res["rank"] == range(1, 6)).all()
    assert (tmp_path / "q" / "results.csv").exists()
    png = (tmp_path / "q" / "contact_sheet.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # an absolute path under the collection root is the same query
    same = search(built, synthetic_collection.abs_path(query), k=5)
    assert same["path"].tolist() == res["path"].tolist()


def test_similar_outside_image_reextracts_features(built, synthetic_collection, tmp_path):
    """A copy of a collection image outside the collection is embedded with the index's model/layer."""
    rel = synthetic_collection.paths[7]
    outside = tmp_path / "elsewhere.jpg"
    shutil.copyfile(synthetic_collection.abs_path(rel), outside)
    df = search(built, str(outside), k=3)
    assert df.attrs["query_id"] is None
    assert df["path"].iloc[0] == rel and df["similarity"].iloc[0] > 0.9999


def test_similar_filter_and_include_self(built, synthetic_collection, tmp_path):
    query = synthetic_collection.paths[0]
    df = search(built, query, k=4, filter="genre == 'landscape'")
    assert len(df) == 4 and (df["genre"] == "landscape").all()
    df = search(built, query, k=3, exclude_self=False)
    assert df["path"].iloc[0] == query and df["similarity"].iloc[0] == pytest.approx(1.0, abs=1e-5)
    assert main(["-q", "similar", query, "--index", str(built), "--filter", "nope == 1",
                 "-o", str(tmp_path / "x")]) == 2
    assert main(["-q", "similar", "no/such/file.jpg", "--index", str(built), "-o", str(tmp_path / "y")]) == 2


@pytest.mark.parametrize("expr", [
    "__import__('os').system('touch {marker}')",
    "@pd.io.common.os.system('touch {marker}')",
    "genre.__class__.__init__.__globals__",
])
def test_a_crafted_filter_runs_no_code(built, synthetic_collection, tmp_path, capsys, expr):
    marker = tmp_path / "MARKER"
    query = synthetic_collection.paths[0]
    assert main(["similar", query, "--index", str(built), "--filter", expr.format(marker=marker),
                 "-o", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad filter" in err and len(err.splitlines()) == 1, err
    assert not marker.exists()


def test_add_and_check_via_cli(tmp_path, synthetic_collection, tiny_features):
    from artmem.batch.results import read_features, write_features

    fs = read_features(tiny_features)
    write_features(tmp_path / "part", fs.paths[:30], fs.vectors[:30], fs.meta)
    coll_file = f"{synthetic_collection.root}/collection.parquet"
    idx = tmp_path / "idx"
    assert main(["-q", "index", "build", coll_file, "--features", str(tmp_path / "part"), "-o", str(idx)]) == 0
    assert main(["index", "check", str(idx), "--features", str(tiny_features)]) == 1  # 18 not indexed
    assert main(["-q", "index", "add", str(idx), "--features", str(tiny_features)]) == 0
    index = open_index(idx)
    assert len(index) == len(fs.paths) and index.items["style"].notna().all()  # metadata joined
    assert main(["index", "check", str(idx), "--features", str(tiny_features)]) == 0
    np.save(idx / "vectors.npy", np.zeros((len(fs.paths), fs.dim), np.float32))
    assert main(["index", "check", str(idx)]) == 1


def test_build_lancedb_backend_via_cli(tmp_path, synthetic_collection, tiny_features):
    pytest.importorskip("lancedb")
    coll_file = f"{synthetic_collection.root}/collection.parquet"
    out = tmp_path / "lance"
    assert main(["-q", "index", "build", coll_file, "--features", str(tiny_features), "-o", str(out),
                 "--backend", "lancedb"]) == 0
    q = synthetic_collection.paths[5]
    a = search(out, q, k=6, filter="style = 'style_1'")
    b = search(open_index(out), q, k=6)
    assert (a["style"] == "style_1").all() and len(b) == 6
    assert main(["index", "check", str(out)]) == 0


def test_build_without_features_extracts_with_the_extract_default(tmp_path, synthetic_collection,
                                                                 monkeypatch):
    import artmem.batch.api

    seen = {}

    def fake_extract(coll, model, layer, out, device):
        seen["model"] = model
        raise SystemExit  # enough: the default was applied before any compute

    monkeypatch.setattr(artmem.batch.api, "extract", fake_extract)
    coll_file = f"{synthetic_collection.root}/collection.parquet"
    with pytest.raises(SystemExit):
        main(["-q", "index", "build", coll_file, "-o", str(tmp_path / "i")])
    assert seen["model"] == "resmem"
    # features already extracted and a model to extract with: ambiguous, refused
    assert main(["-q", "index", "build", coll_file, "--features", "f", "--model", "tiny_test",
                 "-o", str(tmp_path / "j")]) == 2


def test_similar_without_out_prints_results_and_writes_nothing(built, synthetic_collection, tmp_path,
                                                               capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    query = synthetic_collection.paths[0]
    assert main(["similar", query, "--index", str(built), "-k", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["rank", "similarity", "path"] and len(out) == 4
    expected = search(built, query, k=3)["path"].tolist()
    assert [line.split()[2] for line in out[1:]] == expected
    assert list(tmp_path.iterdir()) == []


def test_build_extracts_features_when_given_a_model(tmp_path, synthetic_collection):
    coll_file = f"{synthetic_collection.root}/collection.parquet"
    out = tmp_path / "idx"
    assert main(["-q", "index", "build", coll_file, "--model", "tiny_test", "--layer", "conv3",
                 "-o", str(out), "--device", "cpu"]) == 0
    assert (out / "features" / "features.parquet").exists()
    index = open_index(out)
    assert len(index) == len(synthetic_collection) and index.meta["model"] == "tiny_test"
