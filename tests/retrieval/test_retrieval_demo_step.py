"""The `make demo` step: index from out/features and one query's contact sheet."""

from __future__ import annotations

import shutil

import pandas as pd

from artmem.retrieval.demo_step import demo_step, pick_query


def test_demo_step_uses_existing_features(tmp_path, synthetic_collection, tiny_features):
    out = tmp_path / "out"
    shutil.copytree(tiny_features, out / "features")
    written = demo_step(synthetic_collection, out, "cpu")
    names = {p.name for p in written}
    assert {"index.json", "index.faiss", "results.parquet", "contact_sheet.png", "precision.parquet"} <= names
    res = pd.read_parquet(out / "similar" / "results.parquet")
    assert len(res) == 10 and res["query"].iloc[0] not in res["path"].tolist()
    assert not (out / "index" / "features").exists()  # reused out/features, extracted nothing


def test_pick_query_prefers_a_raphael_painting():
    items = pd.DataFrame({"path": ["photo/a.png", "painting/2_x.jpg", "painting/1_y.jpg"],
                          "kind": ["photo", "painting", "painting"],
                          "subject": ["cat", "madonna", "madonna"]})
    assert pick_query(items) == "painting/1_y.jpg"
    assert pick_query(items[["path"]]) == "photo/a.png"
