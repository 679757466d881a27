"""`collection profile` (header sizes, figures, tables) and the demo collection + demo step."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from artmem.cli import main
from artmem.data.collection import Collection
from artmem.data.profile import image_sizes, size_summary


def test_profile_reads_header_sizes(tmp_path, monkeypatch):
    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    sizes = {"a/wide.jpg": (300, 100), "a/tall.png": (50, 200), "b/square.jpg": (64, 64)}
    for rel, size in sizes.items():
        Image.new("RGB", size, (10, 20, 30)).save(root / rel)
    rot = Image.new("RGB", (80, 40))
    exif = rot.getexif()
    exif[0x0112] = 6
    rot.save(root / "b/rotated.jpg", exif=exif.tobytes())
    (root / "b/empty.jpg").write_bytes(b"")
    from PIL import ImageFile

    loads = []
    real_load = ImageFile.ImageFile.load

    def counting_load(self):
        loads.append(self.filename)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    table = image_sizes(root, workers=0, progress=False).set_index("path")
    monkeypatch.undo()
    assert loads == []  # no pixel data decoded
    for rel, (w, h) in sizes.items():
        assert (table.loc[rel, "width"], table.loc[rel, "height"]) == (w, h)
    assert (table.loc["b/rotated.jpg", "width"], table.loc["b/rotated.jpg", "height"]) == (40, 80)
    assert table.loc["a/wide.jpg", "aspect"] == pytest.approx(3.0)
    assert not table.loc["b/empty.jpg", "ok"] and "empty" in table.loc["b/empty.jpg", "reason"]
    summary = size_summary(table.reset_index()).set_index("measure")
    assert summary.loc["width", "count"] == 4 and summary.loc["width", "max"] == 300
    assert summary.loc["unreadable header", "count"] == 1


def test_cli_profile_writes_figures_and_tables(synthetic_collection, tmp_path, capsys):
    out = tmp_path / "profile"
    assert main(["collection", "profile", synthetic_collection.root, "-o", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    for name in ("size_scatter.png", "width_hist.png", "height_hist.png", "aspect_hist.png", "summary.csv",
                 "sizes.parquet", "label_counts.csv", "counts_style.png"):
        assert str(out / name) in printed
        assert (out / name).stat().st_size > 0
    counts = pd.read_csv(out / "label_counts.csv")
    assert counts.loc[counts["column"] == "style", "count"].tolist() == [16, 16, 16]
    assert Image.open(out / "size_scatter.png").size[0] > 300


def test_demo_build_and_run(real_images, tmp_path, capsys):
    demo = tmp_path / "demo_data"
    assert main(["demo", "build", "-o", str(demo)]) == 0
    coll = Collection.load(demo / "collection.parquet")
    t = coll.table
    assert {"path", "kind", "subject", "source_package", "licence"} <= set(t.columns)
    assert (t["kind"] == "painting").sum() == 11 and set(t.loc[t["kind"] == "painting", "subject"]) == {"madonna"}
    assert (t["kind"] == "photo").sum() >= 8
    assert set(t["source_package"]) == {"unraphael", "scikit-image", "scikit-learn"}
    assert t["path"].str.startswith("images/painting/").sum() == 11
    moved = tmp_path / "moved"
    demo.rename(moved)  # the collection is relocatable (root is stored as '.')
    assert all(Image.open(p).size[0] > 0 for p in Collection.load(moved / "collection.parquet").abs_paths())
    capsys.readouterr()
    from artmem.data.demo_step import demo_step

    paths = demo_step(Collection.load(moved / "collection.parquet"), tmp_path / "out", "cpu")
    assert (tmp_path / "out/profile/size_scatter.png") in paths
    summary = pd.read_csv(tmp_path / "out/profile/summary.csv").set_index("measure")
    assert summary.loc["width", "count"] == len(t)
    assert np.isfinite(summary.loc["aspect", "median"])
