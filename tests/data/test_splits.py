"""Class subsets, stratified splits (proportions, reproducibility, too-small classes) and k-fold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from artmem.cli import main
from artmem.data.collection import Collection
from artmem.data.splits import filter_classes, kfold_assign, split_counts, stratified_split
from artmem.errors import ArtmemError


def _coll(counts: dict[str, int], extra_missing: int = 0) -> Collection:
    labels = [c for c, n in counts.items() for _ in range(n)] + [None] * extra_missing
    rng = np.random.default_rng(1)
    labels = [labels[i] for i in rng.permutation(len(labels))]
    df = pd.DataFrame({"path": [f"img_{i:04d}.jpg" for i in range(len(labels))], "style": labels})
    return Collection(df, "/data", "t")


def test_split_keeps_class_proportions():
    coll = _coll({"a": 200, "b": 50, "c": 30, "d": 10})
    s = stratified_split(coll, "style")
    counts = split_counts(s, "style")
    for cls, n in {"a": 200, "b": 50, "c": 30, "d": 10}.items():
        row = counts.loc[cls]
        assert row["total"] == n
        assert abs(row["train"] - 0.7 * n) <= 1 and abs(row["val"] - 0.1 * n) <= 1 and abs(row["test"] - 0.2 * n) <= 1
    assert set(s.table["split"]) == {"train", "val", "test"}
    assert s.paths == coll.paths  # order kept


def test_split_is_reproducible_and_seed_dependent():
    coll = _coll({"a": 100, "b": 40})
    a = stratified_split(coll, "style", seed=3).table["split"].tolist()
    b = stratified_split(coll, "style", seed=3).table["split"].tolist()
    c = stratified_split(coll, "style", seed=4).table["split"].tolist()
    assert a == b and a != c
    # adding a class does not reshuffle the others
    extra = pd.DataFrame({"path": [f"z_{i}.jpg" for i in range(20)], "style": "z"})
    bigger = Collection(pd.concat([coll.table, extra], ignore_index=True), "/data")
    s2 = stratified_split(bigger, "style", seed=3).table
    assert s2["split"].tolist()[:140] == a


def test_too_small_class_is_named():
    coll = _coll({"big": 30, "tiny": 2, "solo": 1})
    with pytest.raises(ArtmemError) as exc:
        stratified_split(coll, "style")
    msg = str(exc.value)
    assert "tiny (2)" in msg and "solo (1)" in msg and "big" not in msg
    # two-way split: two images are enough
    assert stratified_split(_coll({"tiny": 2, "big": 10}), "style", ratios=(0.8, 0, 0.2)).table["split"].isin(["train", "test"]).all()


def test_unknown_label_and_bad_ratios():
    coll = _coll({"a": 10})
    with pytest.raises(ArtmemError, match="no column 'genre'"):
        stratified_split(coll, "genre")
    with pytest.raises(ArtmemError, match="ratios"):
        stratified_split(coll, "style", ratios=(0.5, -0.1, 0.6))


def test_missing_labels_left_out(caplog):
    coll = _coll({"a": 20, "b": 20}, extra_missing=3)
    s = stratified_split(coll, "style")
    assert len(s) == 40 and s.table["style"].notna().all()


def test_filter_classes_min_count_and_cap():
    coll = _coll({"a": 100, "b": 20, "c": 5})
    f = filter_classes(coll, "style", min_count=10, max_per_class=30, seed=0)
    assert f.table["style"].value_counts().to_dict() == {"a": 30, "b": 20}
    assert f.table.equals(filter_classes(coll, "style", min_count=10, max_per_class=30, seed=0).table)
    assert not f.table.equals(filter_classes(coll, "style", min_count=10, max_per_class=30, seed=1).table)
    order = [coll.paths.index(p) for p in f.paths]
    assert order == sorted(order)
    with pytest.raises(ArtmemError, match="at least 1000"):
        filter_classes(coll, "style", min_count=1000)


def test_kfold_balanced_and_stratified():
    coll = _coll({"a": 50, "b": 23, "c": 7})
    k = kfold_assign(coll, k=5, label="style", seed=0).table
    sizes = k["fold"].value_counts()
    assert sizes.max() - sizes.min() <= 1
    per = pd.crosstab(k["style"], k["fold"])
    assert (per.max(axis=1) - per.min(axis=1)).max() <= 1
    plain = kfold_assign(coll, k=4, seed=0).table["fold"]
    assert sorted(plain.value_counts().tolist()) == [20, 20, 20, 20]
    assert plain.tolist() == kfold_assign(coll, k=4, seed=0).table["fold"].tolist()
    with pytest.raises(ArtmemError):
        kfold_assign(coll, k=1)


def test_cli_split(synthetic_collection, tmp_path, capsys):
    out = tmp_path / "split"
    rc = main(["collection", "split", synthetic_collection.root, "--label", "style", "--min-count", "5",
               "--folds", "4", "-o", str(out)])
    assert rc == 0
    s = Collection.load(out / "collection.parquet")
    assert {"split", "fold"} <= set(s.table.columns) and len(s) == 48
    counts = pd.read_csv(out / "split_counts.csv")
    assert counts["total"].sum() == 48
    assert main(["collection", "split", synthetic_collection.root, "--label", "nope", "-o", str(out)]) == 2
    assert "no column 'nope'" in capsys.readouterr().err
