"""The per-category box plot of memorability scores, rendered as an SVG string (no files)."""

from __future__ import annotations

import io

import numpy as np


def boxplot_svg(groups: dict[str, np.ndarray], column: str, score_label: str = "memorability score",
                max_groups: int = 40, max_points: int = 200) -> str:
    """One box per category (sorted by median, highest first), points jittered on top.

    Args:
        groups: category value -> its finite scores.
        column: the label column (axis title).
        max_groups: categories beyond this many (the smallest) are left out, and the title says so.
        max_points: at most this many jittered points per box (a random sample beyond).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    items = [(k, np.asarray(v, dtype=float)) for k, v in groups.items() if len(v)]
    items.sort(key=lambda kv: -float(np.median(kv[1])))
    dropped = 0
    if len(items) > max_groups:
        keep = sorted(items, key=lambda kv: -len(kv[1]))[:max_groups]
        dropped = len(items) - max_groups
        items = [kv for kv in items if any(kv[0] == k for k, _ in keep)]
    height = max(2.4, 0.38 * len(items) + 1.2)
    fig = Figure(figsize=(7.5, height), dpi=96)
    ax = fig.add_subplot(1, 1, 1)
    if not items:
        ax.text(0.5, 0.5, "no scores yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        data = [v for _, v in items][::-1]
        labels = [f"{k} (n={len(v)})" for k, v in items][::-1]
        ax.boxplot(data, vert=False, widths=0.6, patch_artist=True, showfliers=False,
                   boxprops={"facecolor": "#dbe7f3", "edgecolor": "#35608c"},
                   medianprops={"color": "#c0392b", "linewidth": 2},
                   whiskerprops={"color": "#35608c"}, capprops={"color": "#35608c"})
        rng = np.random.default_rng(0)
        for i, v in enumerate(data, start=1):
            if len(v) > max_points:  # a random sample keeps the SVG small on big collections
                v = rng.choice(v, max_points, replace=False)
            ax.scatter(v, i + rng.uniform(-0.18, 0.18, len(v)), s=6, color="#1f2d3d", alpha=0.45, zorder=3)
        ax.set_yticks(range(1, len(labels) + 1), labels)
        ax.set_xlabel(score_label)
        ax.grid(axis="x", alpha=0.3)
        title = f"memorability by {column}"
        if dropped:
            title += f" ({dropped} smallest categories not shown)"
        ax.set_title(title, fontsize=11)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    svg = buf.getvalue()
    return svg[svg.find("<svg"):]  # drop the XML prolog so it can be inlined in HTML
