"""Statistics of memorability across categories and against image measures.

- `category_stats`: n, mean, median, sd (and sem, min, max) of memorability per category
  (Cetinic et al. 2019, Figures 1 and 3).
- `ttest_matrix`: one-sided two-sample t-tests between every ordered pair of categories
  (Khosla et al. 2015, Figure 3b).
- `spearman_table`: Spearman rank correlation, its p-value and n between memorability and every
  measure (Cetinic et al., Figures 5 and 6).
- `quartile_table` / `quartile_curves`: an attribute summarised by memorability quartile
  (Khosla et al., Figure 4).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from artmem.errors import ArtmemError


def _check_columns(df: pd.DataFrame, *cols: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ArtmemError(f"no column(s) {missing} in the table (columns: {list(df.columns)})")


def category_stats(
    df: pd.DataFrame, column: str, value: str = "score", min_n: int = 1
) -> pd.DataFrame:
    """Per category of `column`: n, mean, median, sd (ddof 1), sem, min, max of `value`.

    Rows with a missing category or value are left out. Sorted by mean, highest first.
    """
    _check_columns(df, column, value)
    d = df[[column, value]].dropna()
    d = d.assign(**{column: d[column].astype(str)})
    g = d.groupby(column, sort=False)[value]
    out = pd.DataFrame(
        {
            "n": g.size(),
            "mean": g.mean(),
            "median": g.median(),
            "sd": g.std(ddof=1),
            "min": g.min(),
            "max": g.max(),
        }
    )
    out["sem"] = out["sd"] / np.sqrt(out["n"])
    out = out[out["n"] >= min_n]
    out = out.sort_values(["mean", "n"], ascending=[False, False])
    out.index.name = "category"
    out = out.reset_index()
    out.insert(0, "column", column)
    return out[["column", "category", "n", "mean", "median", "sd", "sem", "min", "max"]]


def ttest_matrix(
    df: pd.DataFrame,
    column: str,
    value: str = "score",
    order: list[str] | None = None,
    equal_var: bool = False,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """One-sided t-tests between categories: is row category more memorable than column category?

    Cell (a, b) holds the p-value of H1: mean(a) > mean(b) (Welch's test unless `equal_var`).
    Categories with fewer than 2 values, or pairs where both groups are constant, give NaN.

    Returns:
        long table with columns a, b, n_a, n_b, mean_a, mean_b, t, p, significant (p < alpha).
        Use `pivot_p` to get the square matrix.
    """
    from scipy import stats

    _check_columns(df, column, value)
    d = df[[column, value]].dropna()
    groups = {str(k): v[value].to_numpy(dtype=np.float64) for k, v in d.groupby(d[column].astype(str))}
    if order is None:
        order = sorted(groups, key=lambda k: -groups[k].mean())
    rows = []
    for a in order:
        for b in order:
            if a == b:
                continue
            xa, xb = groups.get(a, np.array([])), groups.get(b, np.array([]))
            t = p = math.nan
            if len(xa) >= 2 and len(xb) >= 2 and (np.ptp(xa) > 0 or np.ptp(xb) > 0):
                res = stats.ttest_ind(xa, xb, equal_var=equal_var, alternative="greater")
                t, p = float(res.statistic), float(res.pvalue)
            rows.append(
                {
                    "a": a, "b": b, "n_a": len(xa), "n_b": len(xb),
                    "mean_a": float(xa.mean()) if len(xa) else math.nan,
                    "mean_b": float(xb.mean()) if len(xb) else math.nan,
                    "t": t, "p": p, "significant": bool(p < alpha) if not math.isnan(p) else False,
                }
            )
    out = pd.DataFrame(rows, columns=["a", "b", "n_a", "n_b", "mean_a", "mean_b", "t", "p", "significant"])
    out.attrs["order"] = list(order)
    return out


def pivot_p(tests: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    """Square matrix of p-values (rows a, columns b) from a `ttest_matrix` table."""
    order = order or tests.attrs.get("order") or sorted(set(tests["a"]) | set(tests["b"]))
    m = tests.pivot(index="a", columns="b", values="p") if len(tests) else pd.DataFrame()
    return m.reindex(index=order, columns=order)


def spearman(x, y) -> tuple[float, float, int]:
    """Spearman rho, two-sided p-value and n over the pairs where both values are finite."""
    from scipy import stats

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return math.nan, math.nan, n
    res = stats.spearmanr(x[ok], y[ok])
    return float(res.statistic), float(res.pvalue), n


def spearman_table(
    df: pd.DataFrame, measures: list[str], value: str = "score", alpha: float = 0.05
) -> pd.DataFrame:
    """Spearman rho, p and n between `value` and each measure, in the order given."""
    _check_columns(df, value, *measures)
    rows = []
    for m in measures:
        rho, p, n = spearman(df[m], df[value])
        rows.append(
            {"measure": m, "rho": rho, "p": p, "n": n,
             "significant": bool(p < alpha) if not math.isnan(p) else False}
        )
    return pd.DataFrame(rows, columns=["measure", "rho", "p", "n", "significant"])


def linear_fit(x, y) -> tuple[float, float]:
    """Least-squares line y = slope * x + intercept over finite pairs (NaNs if under 2 points)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2 or np.ptp(x[ok]) == 0:
        return math.nan, math.nan
    slope, intercept = np.polyfit(x[ok], y[ok], 1)
    return float(slope), float(intercept)


def memorability_quartiles(values) -> np.ndarray:
    """Quartile of each value, 1 = the most memorable 25 % ... 4 = the least (NaN stays 0).

    Ranks are used (ties broken by order), so the quartiles have equal sizes (+-1).
    """
    v = np.asarray(values, dtype=np.float64)
    q = np.zeros(len(v), dtype=int)
    ok = np.flatnonzero(np.isfinite(v))
    if len(ok) == 0:
        return q
    order = ok[np.argsort(-v[ok], kind="stable")]
    q[order] = 1 + (np.arange(len(order)) * 4) // len(order)
    return q


def quartile_table(df: pd.DataFrame, attribute: str, value: str = "score") -> pd.DataFrame:
    """The attribute per memorability quartile (1 = most memorable): n, mean, sd, sem, and the
    one-sided Welch t-test p-value that quartile 1 has a higher attribute mean than each other."""
    from scipy import stats

    _check_columns(df, attribute, value)
    d = df[[attribute, value]].dropna()
    q = memorability_quartiles(d[value].to_numpy())
    a = d[attribute].to_numpy(dtype=np.float64)
    top = a[q == 1]
    rows = []
    for k in range(1, 5):
        x = a[q == k]
        p = math.nan
        if k > 1 and len(top) >= 2 and len(x) >= 2 and (np.ptp(top) > 0 or np.ptp(x) > 0):
            p = float(stats.ttest_ind(top, x, equal_var=False, alternative="greater").pvalue)
        rows.append(
            {
                "attribute": attribute, "quartile": k, "n": len(x),
                "memorability_min": float(d[value].to_numpy()[q == k].min()) if len(x) else math.nan,
                "memorability_max": float(d[value].to_numpy()[q == k].max()) if len(x) else math.nan,
                "mean": float(x.mean()) if len(x) else math.nan,
                "sd": float(x.std(ddof=1)) if len(x) > 1 else math.nan,
                "sem": float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else math.nan,
                "p_q1_greater": p,
            }
        )
    return pd.DataFrame(rows)


def quartile_curves(df: pd.DataFrame, attribute: str, value: str = "score") -> dict[int, np.ndarray]:
    """{quartile: the attribute's values in that memorability quartile, sorted descending} -
    the curves of Khosla et al. Figure 4 (plotted against a 0-1 normalised index)."""
    d = df[[attribute, value]].dropna()
    q = memorability_quartiles(d[value].to_numpy())
    a = d[attribute].to_numpy(dtype=np.float64)
    return {k: np.sort(a[q == k])[::-1] for k in range(1, 5)}
