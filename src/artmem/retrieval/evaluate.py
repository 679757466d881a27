"""Retrieval quality when labels exist: precision@k of same-label neighbours per label column.

For every labelled image, precision@k is the fraction of its k nearest neighbours (itself
excluded) that carry the same label; it is averaged over images (and reported per class).
`chance` is the expected precision of a random ranking, sum_c p_c (n_c - 1) / (n - 1), so
`lift` = precision / chance compares columns with different numbers of classes. With a genre-tuned
and a style-tuned feature index this turns "genre-tuned features retrieve content, style-tuned
features retrieve style" into numbers.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.errors import ArtmemError
from artmem.retrieval.backend_base import Index
from artmem.retrieval.index import open_index

logger = logging.getLogger(__name__)


def default_label_columns(items: pd.DataFrame) -> list[str]:
    """Text columns with 2..N/2 distinct values (categories), not paths or ids."""
    cols = []
    for c in items.columns:
        if c in ("id", "path") or pd.api.types.is_numeric_dtype(items[c]):
            continue
        nun = items[c].nunique(dropna=True)
        if 2 <= nun <= max(2, len(items) // 2):
            cols.append(c)
    return cols


def neighbours(index: Index, ids: np.ndarray, k: int, batch: int = 1024) -> np.ndarray:
    """k nearest neighbour ids (self excluded) of the given items, via the index."""
    out = []
    for s in range(0, len(ids), batch):
        chunk = ids[s : s + batch]
        _, nn = index.search(index.vectors(chunk), k, exclude=chunk.tolist(), raw=False)
        out.append(nn)
    return np.concatenate(out) if out else np.zeros((0, k), np.int64)


def label_precision(index: Index | str | Path, columns: list[str] | None = None,
                    ks: tuple[int, ...] = (1, 5, 10), sample: int | None = 20_000,
                    seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, per_class) precision@k tables for each label column of the index's items."""
    if not isinstance(index, Index):
        index = open_index(index)
    items = index.items
    columns = columns or default_label_columns(items)
    if not columns:
        raise ArtmemError(f"index {index.dir} has no label columns to evaluate (its items: "
                          f"{', '.join(items.columns)}); build it with a labelled COLLECTION")
    missing = [c for c in columns if c not in items.columns]
    if missing:
        raise ArtmemError(f"no column(s) {missing} in the index items ({', '.join(items.columns)})")
    kmax = min(max(ks), len(items) - 1)
    if kmax < 1:
        raise ArtmemError("the index needs at least 2 items to evaluate")
    all_ids = items["id"].to_numpy()
    rng = np.random.default_rng(seed)
    qids = np.sort(rng.choice(all_ids, size=sample, replace=False)) if sample and len(all_ids) > sample else all_ids
    nn = neighbours(index, qids, kmax)
    rows, per_class = [], []
    name = f"{index.meta.get('model')}/{index.meta.get('layer')}"
    for col in columns:
        labels = items[col].to_numpy(dtype=object)
        known = ~pd.isna(items[col]).to_numpy()
        q_mask = known[qids]
        if q_mask.sum() == 0:
            continue
        ql = labels[qids][q_mask]
        nl = labels[np.clip(nn[q_mask], 0, None)]
        valid = nn[q_mask] >= 0
        counts = pd.Series(labels[known]).value_counts()
        n_lab = int(known.sum())
        chance = float(((counts / n_lab) * (counts - 1) / max(1, n_lab - 1)).sum())
        for k in ks:
            kk = min(k, kmax)
            same = ((nl[:, :kk] == ql[:, None]) & valid[:, :kk]).sum(axis=1) / kk
            prec = float(same.mean())
            rows.append({"space": name, "column": col, "k": k, "precision": prec, "chance": chance,
                         "lift": prec / chance if chance > 0 else np.nan,
                         "queries": int(q_mask.sum()), "classes": int(len(counts))})
            by = pd.DataFrame({"label": ql, "p": same}).groupby("label")["p"].agg(["mean", "size"])
            for label, r in by.iterrows():
                per_class.append({"space": name, "column": col, "k": k, "label": label,
                                  "precision": float(r["mean"]), "queries": int(r["size"]),
                                  "chance": float((counts[label] - 1) / max(1, n_lab - 1))})
    return pd.DataFrame(rows), pd.DataFrame(per_class)


def precision_chart(summary: pd.DataFrame, out: str | Path, k: int) -> Path:
    """Grouped bars: precision@k per label column, one bar per index/space, chance as ticks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = summary[summary["k"] == k]
    cols = list(dict.fromkeys(sub["column"]))
    spaces = list(dict.fromkeys(sub["space"]))
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(cols) * max(1, len(spaces)) / 2, 3.8))
    width = 0.8 / max(1, len(spaces))
    for j, sp in enumerate(spaces):
        s = sub[sub["space"] == sp].set_index("column").reindex(cols)
        x = np.arange(len(cols)) + j * width
        ax.bar(x, s["precision"], width, label=sp)
        ax.scatter(x, s["chance"], marker="_", s=300, color="black", zorder=3)
    ax.set_xticks(np.arange(len(cols)) + width * (len(spaces) - 1) / 2, cols)
    ax.set_ylabel(f"precision@{k} (same label)")
    ax.set_ylim(0, 1)
    ax.set_title(f"Same-label neighbours at k={k} (black ticks: chance)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return Path(out)
