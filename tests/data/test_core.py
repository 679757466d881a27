"""Collection round-trips, folder import and the synthetic generator."""

import pandas as pd
import pytest

from artmem.data.collection import Collection, open_collection, read_folder
from artmem.errors import CollectionError


def test_synthetic_collection_is_saved_and_reloads(synthetic_collection, tmp_path):
    coll = synthetic_collection
    assert len(coll) == 3 * 2 * 8
    assert set(coll.table["style"]) == {"style_0", "style_1", "style_2"}
    reloaded = open_collection(coll.root)  # folder holding collection.parquet
    pd.testing.assert_frame_equal(reloaded.table, coll.table)
    assert reloaded.root == coll.root
    written = coll.save(tmp_path / "copy", csv=True)
    from_csv = Collection.load(written[-1])
    assert from_csv.root == coll.root
    assert from_csv.paths == coll.paths


def test_read_folder_has_one_column_per_level(tmp_path):
    from PIL import Image

    for rel in ["a/x/1.jpg", "a/y/2.png", "b/x/3.jpg", "top.jpg"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(p)
    (tmp_path / "notes.txt").write_text("not an image")
    coll = read_folder(tmp_path, levels=["style"])
    assert coll.paths == ["a/x/1.jpg", "a/y/2.png", "b/x/3.jpg", "top.jpg"]
    assert list(coll.table.columns) == ["path", "style", "level2"]
    assert pd.isna(coll.table.loc[3, "style"])


def test_empty_folder_raises_with_path(tmp_path):
    with pytest.raises(CollectionError, match=str(tmp_path)):
        read_folder(tmp_path)
