"""Statistics checked against scipy and naive reference computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from artmem.analysis import stats as st
from artmem.analysis.embedding import tsne_embed, tsne_perplexity


@pytest.fixture()
def table():
    rng = np.random.default_rng(1)
    rows = []
    for cat, mu, n in (("portrait", 0.85, 30), ("landscape", 0.65, 25), ("abstract", 0.80, 20), ("solo", 0.5, 1)):
        for v in rng.normal(mu, 0.05, n):
            rows.append({"genre": cat, "score": v})
    df = pd.DataFrame(rows)
    df["x"] = df["score"] * 2 + rng.normal(0, 0.05, len(df))
    df["noise"] = rng.normal(size=len(df))
    df.loc[3, "noise"] = np.nan
    return df


def test_category_stats_match_pandas(table):
    cs = st.category_stats(table, "genre")
    assert cs["category"].tolist()[0] == "portrait" and cs["category"].tolist()[-1] == "solo"
    assert cs["mean"].is_monotonic_decreasing
    for r in cs.itertuples():
        vals = table.loc[table["genre"] == r.category, "score"]
        assert r.n == len(vals)
        assert r.mean == pytest.approx(vals.mean())
        assert r.median == pytest.approx(vals.median())
        if r.n > 1:
            assert r.sd == pytest.approx(vals.std(ddof=1))
            assert r.sem == pytest.approx(stats.sem(vals))
        else:
            assert math.isnan(r.sd)


def test_ttest_matrix_matches_scipy_one_sided(table):
    t = st.ttest_matrix(table, "genre", order=["portrait", "abstract", "landscape", "solo"])
    assert len(t) == 12
    a = table.loc[table.genre == "portrait", "score"]
    b = table.loc[table.genre == "landscape", "score"]
    row = t[(t.a == "portrait") & (t.b == "landscape")].iloc[0]
    ref = stats.ttest_ind(a, b, equal_var=False, alternative="greater")
    assert row.p == pytest.approx(ref.pvalue) and row.t == pytest.approx(ref.statistic)
    assert row.significant
    back = t[(t.a == "landscape") & (t.b == "portrait")].iloc[0]
    assert back.p == pytest.approx(1 - ref.pvalue) and not back.significant
    solo = t[t.a == "solo"]
    assert solo["p"].isna().all()  # one image: no test
    m = st.pivot_p(t)
    assert list(m.index) == ["portrait", "abstract", "landscape", "solo"]
    assert math.isnan(m.loc["portrait", "portrait"])
    pooled = st.ttest_matrix(table, "genre", equal_var=True)
    r2 = pooled[(pooled.a == "portrait") & (pooled.b == "landscape")].iloc[0]
    assert r2.p == pytest.approx(stats.ttest_ind(a, b, alternative="greater").pvalue)


def test_spearman_table_matches_scipy_and_drops_nan(table):
    sp = st.spearman_table(table, ["x", "noise"])
    ref = stats.spearmanr(table["x"], table["score"])
    row = sp.set_index("measure").loc["x"]
    assert row.rho == pytest.approx(ref.statistic) and row.p == pytest.approx(ref.pvalue)
    assert row.n == len(table) and row.significant
    ok = table["noise"].notna()
    ref2 = stats.spearmanr(table.loc[ok, "noise"], table.loc[ok, "score"])
    row2 = sp.set_index("measure").loc["noise"]
    assert row2.n == ok.sum() and row2.rho == pytest.approx(ref2.statistic)
    rho, p, n = st.spearman([1, 1, 1, 1], [1, 2, 3, 4])
    assert math.isnan(rho) and math.isnan(p) and n == 4


def test_linear_fit_is_least_squares():
    x = np.array([0.0, 1.0, 2.0, 3.0, np.nan])
    y = np.array([1.0, 3.0, 5.0, 7.0, 100.0])
    assert st.linear_fit(x, y) == pytest.approx((2.0, 1.0))
    assert all(math.isnan(v) for v in st.linear_fit([1.0], [2.0]))


def test_quartiles_split_evenly_and_q1_is_most_memorable():
    scores = np.arange(20, dtype=float)
    q = st.memorability_quartiles(scores)
    assert np.bincount(q)[1:].tolist() == [5, 5, 5, 5]
    assert set(q[scores >= 15]) == {1} and set(q[scores < 5]) == {4}
    df = pd.DataFrame({"score": scores, "pop": scores ** 2})
    qt = st.quartile_table(df, "pop")
    assert qt["quartile"].tolist() == [1, 2, 3, 4]
    assert qt.loc[0, "mean"] == pytest.approx(np.mean(np.arange(15, 20) ** 2))
    ref = stats.ttest_ind(np.arange(15, 20) ** 2, np.arange(0, 5) ** 2, equal_var=False, alternative="greater")
    assert qt.loc[3, "p_q1_greater"] == pytest.approx(ref.pvalue)
    curves = st.quartile_curves(df, "pop")
    assert curves[1].tolist() == sorted((np.arange(15, 20) ** 2).tolist(), reverse=True)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 12])
def test_tsne_handles_tiny_sets(n):
    x = np.random.default_rng(0).normal(size=(n, 40))
    y = tsne_embed(x)
    assert y.shape == (n, 2) and np.isfinite(y).all()
    if n >= 2:
        assert tsne_perplexity(n) < n


def test_tsne_separates_clusters():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 0.1, (15, 100)) + 3
    b = rng.normal(0, 0.1, (15, 100)) - 3
    b[:, :50] += 6  # different direction (cosine)
    y = tsne_embed(np.vstack([a, b]))
    ca, cb = y[:15].mean(0), y[15:].mean(0)
    spread = max(y[:15].std(0).max(), y[15:].std(0).max())
    assert np.linalg.norm(ca - cb) > 3 * spread
