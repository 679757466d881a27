"""The per-category box plot of memorability scores, rendered as an SVG string (no files), drawn
by the report's `draw_boxes` so that the explorer and the report follow one convention."""

from __future__ import annotations

import io

import numpy as np


def boxplot_svg(groups: dict[str, np.ndarray], column: str, score_label: str = "memorability score",
                max_groups: int = 40, max_points: int = 200) -> str:
    """One box per category (ordered by mean, highest at the top), images as dots, the mean marked
    (see `artmem.report.figures.BOX_CAPTION`).

    Args:
        groups: category value -> its finite scores.
        column: the label column (axis title).
        max_groups: categories beyond this many (the smallest) are left out, and the title says so.
        max_points: at most this many image dots per box (a random sample beyond).
    """
    from matplotlib.figure import Figure

    from artmem.report.figures import draw_boxes

    items = [(k, np.asarray(v, dtype=float)) for k, v in groups.items() if len(v)]
    dropped = 0
    if len(items) > max_groups:
        keep = {k for k, _ in sorted(items, key=lambda kv: -len(kv[1]))[:max_groups]}
        dropped = len(items) - max_groups
        items = [kv for kv in items if kv[0] in keep]
    items.sort(key=lambda kv: float(kv[1].mean()))  # bottom to top: lowest mean first
    height = max(2.6, 0.38 * len(items) + 1.5)
    fig = Figure(figsize=(7.5, height), dpi=96)
    ax = fig.add_subplot(1, 1, 1)
    if not items:
        ax.text(0.5, 0.5, "no scores yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        draw_boxes(ax, [v for _, v in items], [f"{k} (n={len(v)})" for k, v in items], max_points)
        ax.set_xlabel(score_label)
        title = f"memorability by {column}, ordered by mean"
        if dropped:
            title += f" ({dropped} smallest categories not shown)"
        ax.set_title(title, fontsize=11, loc="left")
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    svg = buf.getvalue()
    return svg[svg.find("<svg"):]  # drop the XML prolog so it can be inlined in HTML
