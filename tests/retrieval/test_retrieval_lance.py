"""LanceDB backend: same answers as FAISS flat, SQL prefilters, versions, ANN index, checks."""

from __future__ import annotations

import numpy as np
import pytest

from artmem.retrieval.backend_base import exact_knn, recall_at_k
from artmem.retrieval.index import add_to_index, build_index, open_index
from artmem.retrieval.store import FeatureStore

pytest.importorskip("lancedb")


def test_lancedb_matches_faiss_flat(tmp_path, make_store):
    store = make_store(n=300, dim=32)
    lance = build_index(store, tmp_path / "lance", backend="lancedb")
    flat = build_index(store, tmp_path / "flat", backend="faiss", kind="flat")
    assert lance.meta["kind"] == "scan" and lance.meta["backend"] == "lancedb"
    q = store.vectors[:15]
    ls, li = open_index(tmp_path / "lance").search(q, 10, exclude=list(range(15)))
    fs, fi = flat.search(q, 10, exclude=list(range(15)))
    assert np.array_equal(li, fi)
    np.testing.assert_allclose(ls, fs, atol=1e-5)
    assert lance.check() == []


def test_lancedb_filters_same_as_faiss(tmp_path, make_store):
    store = make_store(n=300, dim=32)
    lance = build_index(store, tmp_path / "lance", backend="lancedb")
    flat = build_index(store, tmp_path / "flat")
    q = store.vectors[[4, 8]]
    it = store.items
    cases = {
        "genre == 'portrait'": it["genre"] == "portrait",
        "genre = 'landscape' AND year < 1500": (it["genre"] == "landscape") & (it["year"] < 1500),
        "cluster IN ('c0', 'c1')": it["cluster"].isin(["c0", "c1"]),
    }
    for expr, mask in cases.items():
        sub = np.flatnonzero(mask.to_numpy())
        expected = sub[np.argsort(-(q @ store.vectors[sub].T), axis=1)[:, :6]]
        assert np.array_equal(lance.search(q, 6, filter=expr)[1], expected), expr
        assert np.array_equal(flat.search(q, 6, filter=expr)[1], expected), expr


def test_lancedb_add_creates_versions(tmp_path, make_store):
    full = make_store(n=200, dim=16)
    first = FeatureStore(full.items.iloc[:150].reset_index(drop=True), full.vectors[:150], full.meta)
    index = build_index(first, tmp_path / "idx", backend="lancedb")
    v1 = index.meta["table_version"]
    counts = add_to_index(index, full)
    assert counts["added"] == 50 and counts["skipped_existing"] == 150
    latest = open_index(tmp_path / "idx")
    assert len(latest) == 200 and latest.meta["table_version"] > v1 and latest.check() == []
    old = open_index(tmp_path / "idx", version=v1)
    assert len(old) == 150 and len(old.items) == 150
    assert add_to_index(latest, full)["added"] == 0


def test_lancedb_check_catches_outside_change(tmp_path, make_store):
    store = make_store(n=100, dim=8)
    index = build_index(store, tmp_path / "idx", backend="lancedb")
    index.table.delete("id = 7")  # someone edits the table directly
    problems = open_index(tmp_path / "idx").check()
    assert any("rows" in p for p in problems) and any("version" in p for p in problems)


def test_lancedb_ann_index_recall(tmp_path, make_store):
    from artmem.retrieval.synthetic import clustered_vectors

    n, nq = 3000, 100
    v, _ = clustered_vectors(n + nq, 32, n_clusters=20, latent_dim=8, seed=5)
    store = FeatureStore(make_store(n=n, dim=32).items, v[:n], {})
    index = build_index(store, tmp_path / "ann", backend="lancedb",
                        params={"ann_min": 1000, "num_partitions": 4})
    assert index.meta["kind"] == "ivf_hnsw_sq" and index.meta["params"]["distance"] == "cosine"
    _, truth = exact_knn(v[n:], v[:n], 10)
    _, found = index.search(v[n:], 10, raw=False)
    assert recall_at_k(found, truth) >= 0.9
