"""`index build` never deletes what it did not create, and refuses features of another collection."""

from __future__ import annotations

import pandas as pd

from artmem.cli import main
from artmem.data.collection import Collection


def test_build_refuses_a_folder_that_is_not_an_index(tmp_path, synthetic_collection, tiny_features, capsys):
    coll_file = f"{synthetic_collection.root}/collection.parquet"
    out = tmp_path / "mine"
    (out / "lance").mkdir(parents=True)
    (out / "lance" / "precious.txt").write_text("keep me")
    (out / "items.parquet").write_text("not artmem's")
    rc = main(["index", "build", coll_file, "--features", str(tiny_features), "-o", str(out)])
    assert rc == 2 and "is not an artmem index" in capsys.readouterr().err
    assert (out / "lance" / "precious.txt").read_text() == "keep me"
    assert (out / "items.parquet").read_text() == "not artmem's"
    # an index folder is rebuilt in place; a user file inside lance/ of a FAISS index survives
    idx = tmp_path / "idx"
    assert main(["-q", "index", "build", coll_file, "--features", str(tiny_features), "-o", str(idx)]) == 0
    (idx / "lance").mkdir()
    (idx / "lance" / "precious.txt").write_text("keep me")
    assert main(["-q", "index", "build", coll_file, "--features", str(tiny_features), "-o", str(idx)]) == 0
    assert (idx / "lance" / "precious.txt").exists()


def test_build_with_features_of_another_collection_is_an_error(tmp_path, synthetic_collection, tiny_features,
                                                              capsys):
    other = Collection(pd.DataFrame({"path": ["elsewhere/a.jpg", "elsewhere/b.jpg"]}), str(tmp_path), "other")
    other.save(tmp_path / "other")
    rc = main(["index", "build", str(tmp_path / "other" / "collection.parquet"), "--features", str(tiny_features),
               "-o", str(tmp_path / "idx")])
    err = capsys.readouterr().err
    assert rc == 2 and "another collection" in err and len(err.strip().splitlines()) == 1
