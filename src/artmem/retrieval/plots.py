"""Figures: the contact sheet of a query and its results, and heat maps of feature-space comparisons."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

THUMB = 320


def _thumb(source) -> np.ndarray | None:
    from artmem.data.images import load_image

    try:
        img = source if hasattr(source, "convert") else load_image(source)
    except Exception as exc:  # unreadable image: the sheet shows a grey tile instead
        logger.warning("contact sheet: cannot read %s (%s)", source, exc)
        return None
    img = img.convert("RGB")
    img.thumbnail((THUMB, THUMB))
    return np.asarray(img)


def _short(name: str, width: int = 28) -> str:
    name = Path(str(name)).name
    return name if len(name) <= width else name[: width // 2 - 1] + "…" + name[-(width // 2 - 1):]


def contact_sheet(query_image, query_label: str, results: pd.DataFrame, files: list[str],
                  out: str | Path, label_columns: list[str] | None = None, ncols: int = 6,
                  title: str | None = None) -> Path:
    """Save a PNG: the query first (blue frame), then each result with rank and similarity.

    Args:
        query_image: file path or PIL image of the query (None: a blank tile).
        query_label: caption of the query tile.
        results: output of `search` (rank, path, similarity, metadata).
        files: image file of each result row.
        label_columns: metadata columns printed under each result (default: up to 2 text columns).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if label_columns is None:
        label_columns = [c for c in results.columns
                         if c not in ("rank", "id", "path", "similarity", "distance")
                         and results[c].dtype.kind in "OUT"][:2]
    n = len(results) + 1
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 3.2 * nrows), squeeze=False)
    tiles = [(query_image, "QUERY\n" + "\n".join(textwrap.wrap(_short(query_label, 40), 28)), True)]
    for (_, row), f in zip(results.iterrows(), files, strict=True):
        lines = [f"#{row['rank']}  sim {row['similarity']:.3f}", _short(row["path"])]
        for c in label_columns:
            val = row.get(c)
            if isinstance(val, str) or (val is not None and not pd.isna(val)):
                lines.append(f"{c}: {_short(str(val), 22)}")
        tiles.append((f, "\n".join(lines), False))
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (src, text, is_query) in zip(axes.ravel(), tiles, strict=False):
        arr = _thumb(src) if src is not None else None
        if arr is None:
            arr = np.full((THUMB, THUMB, 3), 200, np.uint8)
        ax.imshow(arr)
        ax.set_title(text, fontsize=8.5, loc="left", color="#1f4e9c" if is_query else "black",
                     fontweight="bold" if is_query else "normal")
        ax.axis("on")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_edgecolor("#1f4e9c" if is_query else "#bbbbbb")
            spine.set_linewidth(4 if is_query else 1)
    height = 3.2 * nrows
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / height) if title else None)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def heatmap(matrix: pd.DataFrame, out: str | Path, title: str, fmt: str = "{:.3f}",
            cmap: str = "viridis", vmin: float | None = None, vmax: float | None = None) -> Path:
    """Annotated heat map of a square DataFrame (NaN cells grey, labelled 'n/a')."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(matrix)
    size = max(4.0, 1.1 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    values = matrix.to_numpy(dtype=float)
    cm = plt.get_cmap(cmap).with_extremes(bad="#dddddd")
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cm, vmin=vmin, vmax=vmax)
    ax.set_xticks(range(n), [_short(c, 24) for c in matrix.columns], rotation=40, ha="right", fontsize=9)
    ax.set_yticks(range(n), [_short(c, 24) for c in matrix.index], fontsize=9)
    finite = values[np.isfinite(values)]
    mid = (np.nanmin(finite) + np.nanmax(finite)) / 2 if finite.size else 0
    for i in range(n):
        for j in range(n):
            v = values[i, j]
            ax.text(j, i, "n/a" if not np.isfinite(v) else fmt.format(v), ha="center", va="center",
                    fontsize=9, color="white" if np.isfinite(v) and v < mid else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
