"""Feature-space comparison (Figure 16) and same-label precision@k against naive references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from artmem.cli import main
from artmem.retrieval.compare import Space, compare_spaces, linear_cka, mean_pairwise_distance
from artmem.retrieval.evaluate import label_precision
from artmem.retrieval.index import build_index
from artmem.retrieval.store import FeatureStore, l2_normalize
from artmem.retrieval.synthetic import clustered_vectors


def _spaces():
    a, _ = clustered_vectors(200, 32, n_clusters=8, latent_dim=6, seed=0)
    rng = np.random.default_rng(1)
    paths = [f"p{i}" for i in range(200)]
    near = l2_normalize(a + 0.05 * rng.normal(size=a.shape))  # same dim, slightly perturbed
    rot, _ = np.linalg.qr(rng.normal(size=(32, 32)))
    other = l2_normalize(a @ rot[:, :24])  # another "architecture": 24-d projection
    noise = l2_normalize(rng.normal(size=(200, 32)))
    perm = rng.permutation(200)  # different row order must not matter
    return [Space("a", paths, a, {}), Space("near", [paths[i] for i in perm], near[perm], {}),
            Space("proj24", paths, other, {}), Space("noise", paths, noise, {})]


def test_compare_matrices_against_naive_loops():
    spaces = _spaces()
    res = compare_spaces(spaces, k=5, sample=None)
    dist, ov = res["cosine_distance"], res["knn_overlap"]
    a, near = spaces[0].vectors, dict(zip(spaces[1].paths, spaces[1].vectors, strict=True))
    near = np.stack([near[p] for p in spaces[0].paths])
    naive = np.mean([1 - float(x @ y) for x, y in zip(a, near, strict=True)])
    assert dist.loc["a", "near"] == pytest.approx(naive, abs=1e-5)
    assert np.isnan(dist.loc["a", "proj24"])  # dimensions differ
    assert dist.loc["a", "a"] == 0 and np.allclose(np.diag(ov), 1)
    # naive neighbour overlap of a vs noise
    def nn(v):
        s = v @ v.T
        np.fill_diagonal(s, -np.inf)
        return np.argsort(-s, axis=1)[:, :5]
    na, nz = nn(a), nn(spaces[3].vectors)
    naive_ov = np.mean([len(set(x) & set(y)) / 5 for x, y in zip(na, nz, strict=True)])
    assert ov.loc["a", "noise"] == pytest.approx(naive_ov)
    assert ov.loc["a", "near"] > 0.6 > ov.loc["a", "noise"]
    assert ov.loc["a", "proj24"] > ov.loc["a", "noise"]  # works across dimensions
    assert res["cka"].loc["a", "near"] > res["cka"].loc["a", "noise"]
    assert list(res["spaces"]["dim"]) == [32, 32, 24, 32]


def test_cka_and_spread_helpers():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 10))
    q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    assert linear_cka(x, x @ q) == pytest.approx(1.0)
    v = l2_normalize(rng.normal(size=(50, 8)))
    s = v @ v.T
    naive = np.mean([1 - s[i, j] for i in range(50) for j in range(50) if i != j])
    assert mean_pairwise_distance(v) == pytest.approx(naive, abs=1e-5)


def test_compare_cli_writes_csv_and_heatmaps(tmp_path):
    from artmem.batch.results import write_features

    dirs = []
    for sp in _spaces()[:3]:
        write_features(tmp_path / sp.name, sp.paths, sp.vectors, {"model": sp.name, "layer": "x"})
        dirs.append(str(tmp_path / sp.name))
    assert main(["-q", "index", "compare", *dirs, "-o", str(tmp_path / "cmp"), "-k", "5"]) == 0
    for name in ("cosine_distance", "knn_overlap", "cka"):
        assert (tmp_path / "cmp" / f"{name}.png").stat().st_size > 5000
        m = pd.read_csv(tmp_path / "cmp" / f"{name}.csv", index_col=0)
        assert m.shape == (3, 3)
    assert (tmp_path / "cmp" / "spaces.csv").exists()


def test_label_precision_matches_naive(tmp_path, make_store):
    store = make_store(n=240, dim=16, clustered=True)
    rng = np.random.default_rng(0)
    store.items["random"] = rng.choice(["x", "y", "z"], size=240)
    index = build_index(store, tmp_path / "idx")
    summary, per_class = label_precision(index, ["cluster", "random"], ks=(1, 5))
    s = store.vectors @ store.vectors.T
    np.fill_diagonal(s, -np.inf)
    nn = np.argsort(-s, axis=1)[:, :5]
    for col in ("cluster", "random"):
        lab = store.items[col].to_numpy()
        naive = np.mean((lab[nn] == lab[:, None]).mean(axis=1))
        got = summary.query("column == @col and k == 5")["precision"].item()
        assert got == pytest.approx(naive)
    cl = summary.query("column == 'cluster' and k == 5").iloc[0]
    rnd = summary.query("column == 'random' and k == 5").iloc[0]
    assert cl["precision"] > 0.7 and cl["lift"] > 3  # clusters are what the features encode
    assert abs(rnd["precision"] - rnd["chance"]) < 0.1  # a random label sits near chance
    assert set(per_class["label"]) >= {"x", "y", "z"}


def test_evaluate_cli(tmp_path, make_store):
    store = make_store(n=150, dim=16, clustered=True)
    build_index(store, tmp_path / "a")
    build_index(FeatureStore(store.items, l2_normalize(np.random.default_rng(2).normal(size=(150, 16))),
                             {"model": "random", "layer": "x"}), tmp_path / "b")
    assert main(["-q", "index", "evaluate", str(tmp_path / "a"), str(tmp_path / "b"),
                 "--labels", "cluster", "genre", "-o", str(tmp_path / "ev")]) == 0
    t = pd.read_parquet(tmp_path / "ev" / "precision.parquet")
    at10 = t[(t["k"] == 10) & (t["column"] == "cluster")].set_index("space")["precision"]
    assert at10["synthetic/x"] > at10["random/x"] + 0.3
    assert (tmp_path / "ev" / "precision_at_10.png").exists()
