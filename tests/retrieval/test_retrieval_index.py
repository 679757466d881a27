"""FAISS index: exactness against numpy, approximate recall, persistence, adds, checks, PCA, filters."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from artmem.errors import ArtmemError
from artmem.retrieval.backend_base import (
    AUTO_FLAT_MAX,
    AUTO_HNSW_MAX,
    choose_kind,
    exact_knn,
    recall_at_k,
)
from artmem.retrieval.index import add_to_index, build_index, open_index
from artmem.retrieval.pca import fit_pca
from artmem.retrieval.store import FeatureStore, l2_normalize, store_checksum
from artmem.retrieval.synthetic import clustered_vectors


def numpy_topk(base_raw: np.ndarray, queries_raw: np.ndarray, k: int, exclude=None):
    """Naive reference: full cosine matrix, argsort."""
    b = base_raw / np.linalg.norm(base_raw, axis=1, keepdims=True)
    q = queries_raw / np.linalg.norm(queries_raw, axis=1, keepdims=True)
    sim = q.astype(np.float64) @ b.T.astype(np.float64)
    if exclude is not None:
        sim[np.arange(len(q)), exclude] = -np.inf
    ids = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sim, ids, axis=1), ids


def test_l2_normalize_and_zero_rows():
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    y = l2_normalize(x)
    assert np.allclose(y[0], [0.6, 0.8]) and np.all(y[1] == 0) and y.dtype == np.float32


def test_flat_topk_equals_numpy_full_matrix(tmp_path):
    rng = np.random.default_rng(1)
    raw = rng.normal(size=(400, 48)).astype(np.float32) * rng.uniform(0.1, 10, size=(400, 1))
    items = pd.DataFrame({"path": [f"{i}.jpg" for i in range(400)]})
    store = FeatureStore(items, l2_normalize(raw), {"model": "m", "layer": "l"})
    index = build_index(store, tmp_path / "idx")
    assert index.meta["kind"] == "flat"
    queries = rng.normal(size=(25, 48)).astype(np.float32) * 7  # unnormalised on purpose
    sims, ids = index.search(queries, k=10)
    ref_s, ref_i = numpy_topk(raw, queries, 10)
    assert np.array_equal(ids, ref_i)
    np.testing.assert_allclose(sims, ref_s, atol=1e-5)
    # query = stored item: itself excluded, the rest identical to the reference
    qids = list(range(0, 50, 5))
    sims, ids = index.search(raw[qids], k=10, exclude=qids)
    ref_s, ref_i = numpy_topk(raw, raw[qids], 10, exclude=qids)
    assert np.array_equal(ids, ref_i)
    assert not any(q in row for q, row in zip(qids, ids.tolist(), strict=True))


def test_choose_kind_thresholds():
    assert choose_kind(10) == "flat"
    assert choose_kind(AUTO_FLAT_MAX) == "flat"
    assert choose_kind(AUTO_FLAT_MAX + 1) == "hnsw"
    assert choose_kind(AUTO_HNSW_MAX + 1) == "ivf"
    assert choose_kind(10, "hnsw") == "hnsw"
    with pytest.raises(ArtmemError):
        choose_kind(10, "lsh")


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_recall_on_clustered_set(tmp_path, kind):
    n, nq = 20_000, 200
    v, _ = clustered_vectors(n + nq, 64, seed=3)
    base, queries = v[:n], v[n:]
    store = FeatureStore(pd.DataFrame({"path": [f"{i}" for i in range(n)]}), base, {})
    index = build_index(store, tmp_path / kind, kind=kind, target_recall=0.95)
    tuning = index.meta["tuning"]
    assert index.meta["kind"] == kind and tuning["recall"] >= 0.95
    _, truth = exact_knn(queries, base, 10)
    loaded = open_index(tmp_path / kind)
    _, found = loaded.search(queries, 10, raw=False)  # held-out queries
    assert recall_at_k(found, truth) >= 0.95
    assert loaded.check() == []


def test_persistence_round_trip(tmp_path, store):
    built = build_index(store, tmp_path / "idx", kind="hnsw")
    meta = json.loads((tmp_path / "idx" / "index.json").read_text())
    for key in ("model", "layer", "dim", "index_dim", "normalization", "pca", "backend", "kind",
                "params", "build_seconds", "store_checksum", "count", "tuning"):
        assert key in meta, key
    assert meta["backend"] == "faiss" and meta["count"] == len(store) and meta["params"]["M"] == 32
    q = store.vectors[:7]
    s1, i1 = built.search(q, 5)
    loaded = open_index(tmp_path / "idx")
    s2, i2 = loaded.search(q, 5)
    assert np.array_equal(i1, i2) and np.allclose(s1, s2)
    assert loaded.meta["tuning"]["value"] == loaded.faiss_index.hnsw.efSearch
    assert loaded.items["path"].tolist() == store.paths
    assert loaded.items["genre"].tolist() == store.items["genre"].tolist()
    assert loaded.check() == []
    assert meta["store_checksum"] == store_checksum(store.paths, store.vectors)


def test_incremental_add_no_duplicates(tmp_path, make_store):
    full = make_store(n=120)
    first = FeatureStore(full.items.iloc[:80].reset_index(drop=True), full.vectors[:80], full.meta)
    index = build_index(first, tmp_path / "idx")
    counts = add_to_index(index, full)  # 80 known + 40 new
    assert counts["added"] == 40 and counts["skipped_existing"] == 80 and len(index) == 120
    again = add_to_index(index, full)
    assert again["added"] == 0 and len(index) == 120
    reopened = open_index(tmp_path / "idx")
    assert reopened.check() == []
    assert reopened.items["path"].tolist() == full.paths and not reopened.items["path"].duplicated().any()
    # same answers as an index built from all 120 at once
    fresh = build_index(full, tmp_path / "fresh")
    q = full.vectors[::9]
    assert np.array_equal(reopened.search(q, 8)[1], fresh.search(q, 8)[1])
    assert [h["op"] for h in reopened.meta["history"]] == ["build", "add"]


def test_add_rejects_other_model_and_dim(tmp_path, store, make_store):
    index = build_index(store, tmp_path / "idx")
    other = make_store(n=10, dim=16)
    with pytest.raises(ArtmemError, match="dims|-d"):
        add_to_index(index, other)
    wrong = FeatureStore(store.items, store.vectors, {"model": "other", "layer": "x"})
    with pytest.raises(ArtmemError, match="model"):
        add_to_index(index, wrong)


def test_check_catches_mismatches(tmp_path, store):
    build_index(store, tmp_path / "idx", kind="hnsw")
    assert open_index(tmp_path / "idx").check() == []
    # 1) a vector in the store changed behind the index's back
    vec_file = tmp_path / "idx" / "vectors.npy"
    v = np.load(vec_file)
    v[3] = -v[3]
    np.save(vec_file, v)
    problems = open_index(tmp_path / "idx").check()
    assert any("checksum" in p for p in problems)
    # 2) items table and faiss index disagree in size
    build_index(store, tmp_path / "idx2")
    items = pd.read_parquet(tmp_path / "idx2" / "items.parquet")
    items.iloc[:-1].to_parquet(tmp_path / "idx2" / "items.parquet", index=False)
    problems = open_index(tmp_path / "idx2").check()
    assert any("counts disagree" in p for p in problems)


def test_check_against_newer_features(tmp_path, store):
    from artmem.retrieval.index import check_against_features

    index = build_index(FeatureStore(store.items.iloc[:250].reset_index(drop=True),
                                     store.vectors[:250], store.meta), tmp_path / "idx")
    diff = check_against_features(index, store)
    assert diff["not_indexed"] == 50 and diff["not_in_features"] == 0 and diff["changed_in_sample"] == 0


def test_pca_is_stored_and_applied_to_queries(tmp_path, make_store):
    store = make_store(n=500, dim=64, clustered=True)
    pca = fit_pca(store.vectors, 16)
    assert np.allclose(pca.components @ pca.components.T, np.eye(16), atol=1e-4)
    assert np.all(np.diff(pca.explained) <= 1e-7)
    index = build_index(store, tmp_path / "idx", pca_dim=16)
    assert index.meta["index_dim"] == 16 and index.meta["pca"]["dim"] == 16
    loaded = open_index(tmp_path / "idx")
    raw = store.vectors[:5] * 3.0
    # raw queries are normalised + projected; same result as searching the projected vectors
    s1, i1 = loaded.search(raw, 6)
    s2, i2 = loaded.search(pca.transform(store.vectors[:5]), 6, raw=False)
    assert np.array_equal(i1, i2) and np.allclose(s1, s2, atol=1e-5)
    assert np.array_equal(i1[:, 0], np.arange(5))
    with pytest.raises(ArtmemError):
        fit_pca(store.vectors, 65)


def test_filter_matches_numpy_on_subset(tmp_path, store):
    index = build_index(store, tmp_path / "idx")
    q = store.vectors[[1, 2]]
    sims, ids = index.search(q, 5, filter="genre == 'portrait' and year >= 1450")
    mask = (store.items["genre"] == "portrait").to_numpy() & (store.items["year"] >= 1450).to_numpy()
    sub = np.flatnonzero(mask)
    ref = np.argsort(-(q @ store.vectors[sub].T), axis=1)[:, :5]
    assert np.array_equal(ids, sub[ref])
    _, none = index.search(q, 5, filter="genre == 'still life'")
    assert (none == -1).all()
    with pytest.raises(ArtmemError, match="bad filter"):
        index.search(q, 5, filter="nosuchcolumn == 1")


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_add_to_approximate_index_after_reload(tmp_path, kind):
    v, _ = clustered_vectors(3000, 32, n_clusters=10, latent_dim=6, seed=7)
    items = pd.DataFrame({"path": [f"{i}.jpg" for i in range(3000)]})
    full = FeatureStore(items, v, {"model": "m", "layer": "l"})
    first = FeatureStore(items.iloc[:2500].reset_index(drop=True), v[:2500], full.meta)
    build_index(first, tmp_path / "idx", kind=kind, params={"nlist": 16})
    index = open_index(tmp_path / "idx")
    counts = add_to_index(index, full)
    assert counts["added"] == 500 and len(index) == 3000
    reloaded = open_index(tmp_path / "idx")
    assert reloaded.check() == [] and reloaded.meta["tuning"]["recall"] >= 0.95
    _, ids = reloaded.search(v[2500:2600], 1, raw=False)  # new images find themselves
    assert (ids[:, 0] == np.arange(2500, 2600)).mean() >= 0.95


def test_large_filter_uses_faiss_id_selector(tmp_path, monkeypatch):
    import artmem.retrieval.faiss_backend as fb

    v, _ = clustered_vectors(3000, 32, n_clusters=10, latent_dim=6, seed=8)
    items = pd.DataFrame({"path": [f"{i}.jpg" for i in range(3000)],
                          "half": np.where(np.arange(3000) % 2 == 0, "even", "odd")})
    index = build_index(FeatureStore(items, v, {}), tmp_path / "idx", kind="hnsw")
    monkeypatch.setattr(fb, "EXACT_FILTER_MAX", 0)  # force the approximate filtered path
    q = v[:50]
    _, ids = index.search(q, 10, filter="half == 'odd'", raw=False)
    assert (ids % 2 == 1).all()
    odd = np.flatnonzero(np.arange(3000) % 2 == 1)
    _, local = exact_knn(q, v[odd], 10)
    assert recall_at_k(ids, odd[local]) >= 0.9


def test_backends_import_the_base_module_not_index():
    import ast
    from pathlib import Path

    import artmem.retrieval as pkg

    folder = Path(pkg.__file__).parent
    for name in ("faiss_backend.py", "lance_backend.py", "backend_base.py"):
        tree = ast.parse((folder / name).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "artmem.retrieval.index" not in imported, name
