"""Matplotlib figures of the memorability study (each returns a Figure; `save_figure` writes it).

Figures follow Cetinic et al. (2019) and Khosla et al. (2015):
box plots by category ordered by mean with the mean marked (C. Fig. 1, 3), top/bottom image grids
(C. Fig. 2), the t-test significance matrix (K. Fig. 3b), t-SNE with thumbnails (C. Fig. 4),
scatter plots with the least-squares line (C. Fig. 5), the hue wheel coloured by rho (C. Fig. 6)
and attribute curves by memorability quartile (K. Fig. 4).

Colours are colour-blind safe: the Okabe-Ito palette for categorical marks, viridis / inferno for
continuous values (inferno for memorability maps; every continuous colour comes with a colour bar), ColorBrewer's RdBu for
diverging values. Legends sit outside the data area.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:  # no display needed (must precede pyplot); notebooks keep theirs
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.offsetbox import AnnotationBbox, OffsetImage  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from artmem.analysis.color import HUE_CENTERS_DEG, HUE_NAMES  # noqa: E402
from artmem.plotting import use_literal_text  # noqa: E402
from artmem.report.conventions import BOX_CAPTION, OKABE_ITO  # noqa: E402, F401 (BOX_CAPTION re-exported)

use_literal_text()  # category and artist names are text, never mathtext

DPI = 200  # PNG resolution (vector formats ignore it)
FIGURE_FORMATS = ("png", "svg", "pdf")
MEAN_COLOR = OKABE_ITO["vermillion"]
FIT_COLOR = OKABE_ITO["vermillion"]
POINT_COLOR = OKABE_ITO["blue"]
BOX_FACE = "#cfe3f1"
SEQUENTIAL_CMAP = "viridis"  # memorability as a colour (t-SNE frames)


def save_figure(fig, path: str | Path, formats: Sequence[str] = ("png",), dpi: int = DPI) -> list[Path]:
    """Write `fig` once per format (`path` with each suffix) and close it; returns the paths,
    in the order of `formats`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in formats:
        target = path.with_suffix("." + fmt)
        fig.savefig(target, format=fmt, dpi=dpi, bbox_inches="tight", facecolor="white")
        out.append(target)
    plt.close(fig)
    return out


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """`"png,svg"` -> ("png", "svg"), checked against FIGURE_FORMATS; PNG is always included
    (the HTML report embeds it)."""
    from artmem.errors import ArtmemError

    items = [x.strip().lower().lstrip(".") for x in (text.split(",") if isinstance(text, str) else text)]
    items = [x for x in items if x]
    bad = [x for x in items if x not in FIGURE_FORMATS]
    if bad:
        raise ArtmemError(f"--figure-format: unknown format(s) {bad}; choose from {', '.join(FIGURE_FORMATS)}")
    return tuple(dict.fromkeys(["png", *items]))


def _pretty(name: str) -> str:
    return str(name).replace("_", " ")


def format_p(p: float) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def score_histogram(scores: np.ndarray, value_label: str = "memorability score"):
    """Histogram of all scores with the mean and median marked."""
    s = np.asarray(scores, dtype=float)
    s = s[np.isfinite(s)]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    bins = min(40, max(5, int(np.sqrt(len(s))) * 2))
    ax.hist(s, bins=bins, color=POINT_COLOR, alpha=0.8, edgecolor="white")
    if len(s):
        ax.axvline(s.mean(), color=MEAN_COLOR, lw=2, label=f"mean {s.mean():.3f}")
        ax.axvline(np.median(s), color=OKABE_ITO["black"], lw=1.5, ls="--", label=f"median {np.median(s):.3f}")
        ax.legend(frameon=False, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, fontsize=8)
    ax.set_xlabel(value_label)
    ax.set_ylabel("number of images")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"Distribution of memorability (n = {len(s)})", pad=22)
    return fig


def draw_boxes(ax, data: list[np.ndarray], labels: list[str], max_points: int = 200) -> None:
    """Horizontal box plots of `data` (bottom to top) with the conventions of BOX_CAPTION: quartile
    box, median line, 1.5-IQR whiskers, the mean as a vermillion dot and every image as a grey
    dot (a seeded random sample of `max_points` per box beyond that). Used by the report and the
    explorer alike."""
    n = len(data)
    ax.boxplot(
        data, orientation="horizontal", widths=0.6, patch_artist=True, showfliers=False,
        boxprops={"facecolor": BOX_FACE, "edgecolor": "#3a3a3a"},
        medianprops={"color": "#1a1a1a", "lw": 1.8},
        whiskerprops={"color": "#3a3a3a"}, capprops={"color": "#3a3a3a"},
    )
    rng = np.random.default_rng(0)
    for i, d in enumerate(data, start=1):
        if len(d) > max_points:  # a sample keeps figures (and the explorer's SVG) small
            d = rng.choice(d, max_points, replace=False)
        ax.scatter(d, i + rng.uniform(-0.18, 0.18, len(d)), s=8, color="#6b6b6b", alpha=0.55,
                   zorder=2, edgecolor="none", label="image" if i == 1 else None)
    means = [d.mean() if len(d) else np.nan for d in data]
    ax.scatter(means, np.arange(1, n + 1), color=MEAN_COLOR, edgecolor="white", lw=0.8, zorder=3, s=36,
               label="mean")
    ax.set_yticks(np.arange(1, n + 1), labels)
    ax.grid(axis="x", alpha=0.3)
    # the legend goes above the axes, never over the boxes
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, frameon=False, fontsize=8,
              borderaxespad=0.2)


def box_by_category(
    df: pd.DataFrame,
    column: str,
    stats: pd.DataFrame,
    value: str = "score",
    value_label: str = "memorability score",
):
    """Horizontal box plots of `value` per category, ordered by mean (highest at the top), drawn
    by `draw_boxes` (see BOX_CAPTION), with n in each label. `stats` is
    `category_stats(df, column, value)`."""
    order = list(stats["category"])[::-1]  # bottom-to-top: lowest mean first
    groups = {str(k): v[value].dropna().to_numpy(dtype=float) for k, v in df.groupby(df[column].astype(str))}
    data = [groups.get(c, np.array([])) for c in order]
    n = len(order)
    fig, ax = plt.subplots(figsize=(7.5, 1.5 + 0.42 * max(n, 2)))
    ns = dict(zip(stats["category"], stats["n"], strict=True))
    draw_boxes(ax, data, [f"{_pretty(c)} (n={ns[c]})" for c in order])
    ax.set_xlabel(value_label)
    ax.set_ylabel(_pretty(column))
    ax.set_title(f"Memorability by {_pretty(column)}, ordered by mean", loc="left", fontsize=11)
    return fig


def image_grid(rows: list[tuple[str, list[tuple[object, str]]]], thumb_inches: float = 1.9,
               colorbar_cmap: str | None = None, colorbar_label: str = ""):
    """A grid of images: `rows` = [(row title, [(PIL image or None, caption), ...]), ...].

    Missing images (None) are drawn as a grey square with the caption, so a row keeps its place
    (an empty cell when the caption is empty too). With `colorbar_cmap` (rows holding map
    overlays) a 0-1 colour bar of that colour map is drawn at the right.
    """
    ncols = max((len(items) for _, items in rows), default=1) or 1
    nrows = max(len(rows), 1)
    width = thumb_inches * ncols + (0.9 if colorbar_cmap else 0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, (thumb_inches + 0.55) * nrows), squeeze=False,
                             layout="constrained")
    for r, (title, items) in enumerate(rows):
        for c in range(ncols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if c >= len(items):
                ax.axis("off")
                continue
            img, caption = items[c]
            if img is None and not caption:  # nothing to show in this cell
                ax.axis("off")
                continue
            if img is None:
                ax.imshow(np.full((8, 8, 3), 0.85))
            else:
                ax.imshow(img)
            ax.set_xlabel(caption, fontsize=8)
            if c == 0:
                ax.set_ylabel(title, fontsize=10, fontweight="bold")
    if colorbar_cmap:
        sm = plt.cm.ScalarMappable(norm=plt.Normalize(0, 1), cmap=plt.get_cmap(colorbar_cmap))
        cb = fig.colorbar(sm, ax=axes.ravel().tolist(), shrink=0.6, aspect=30, pad=0.02)
        cb.set_label(colorbar_label, fontsize=8)
        cb.ax.tick_params(labelsize=7)
    return fig


def significance_matrix(tests: pd.DataFrame, order: list[str], alpha: float = 0.05, column: str = ""):
    """Khosla Fig. 3b: cell (row, col) dark when row is significantly more memorable than col
    (one-sided t-test); p-values printed in the cells when the matrix is small enough to read."""
    from matplotlib.colors import ListedColormap

    k = len(order)
    idx = {c: i for i, c in enumerate(order)}
    p = np.full((k, k), np.nan)
    for a, b, pv in tests[["a", "b", "p"]].itertuples(index=False):
        if a in idx and b in idx:
            p[idx[a], idx[b]] = pv
    level = np.full((k, k), 0.0)
    level[p < alpha] = 1
    level[p < alpha / 5] = 2
    level[p < alpha / 50] = 3
    level[np.isnan(p)] = -1
    cmap = ListedColormap(["#e6e6e6", "#ffffff", "#9ecae1", "#4292c6", "#08519c"])
    side = min(14.0, 2.2 + 0.55 * k)
    fig, ax = plt.subplots(figsize=(side + 1.6, side))
    ax.imshow(level, cmap=cmap, vmin=-1.5, vmax=3.5)
    labels = [_pretty(c) for c in order]
    ax.set_xticks(range(k), labels, rotation=45, ha="right", fontsize=8 if k > 12 else 9)
    ax.set_yticks(range(k), labels, fontsize=8 if k > 12 else 9)
    ax.set_xticks(np.arange(-0.5, k, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, k, 1), minor=True)
    ax.grid(which="minor", color="#bbbbbb", lw=0.5)
    ax.tick_params(which="minor", length=0)
    if k <= 12:
        for i in range(k):
            for j in range(k):
                if i == j or np.isnan(p[i, j]):
                    continue
                txt = "<.001" if p[i, j] < 0.001 else f"{p[i, j]:.3f}"
                ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                        color="white" if level[i, j] >= 2 else "black")
    ax.set_xlabel("... than this category")
    ax.set_ylabel("this category is more memorable ...")
    ax.set_title(f"One-sided Welch t-tests{' by ' + _pretty(column) if column else ''}\n"
                 "(categories ordered by mean memorability)", fontsize=10)
    from matplotlib.patches import Patch

    handles = [
        Patch(color="#08519c", label=f"p < {alpha / 50:g}"),
        Patch(color="#4292c6", label=f"p < {alpha / 5:g}"),
        Patch(color="#9ecae1", label=f"p < {alpha:g}"),
        Patch(facecolor="#ffffff", edgecolor="#999999", label="not significant"),
        Patch(color="#e6e6e6", label="n/a"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=8)
    return fig


def tsne_thumbnails(
    coords: np.ndarray,
    thumbs: list,
    scores: np.ndarray | None = None,
    title: str = "t-SNE of image features",
    zoom: float = 1.0,
):
    """Cetinic Fig. 4: every image drawn at its t-SNE position, framed in a colour showing its
    memorability (with a colour bar) when `scores` are given."""
    coords = np.asarray(coords, dtype=float)
    fig, ax = plt.subplots(figsize=(10, 8.5))
    cmap = plt.get_cmap(SEQUENTIAL_CMAP)
    if scores is not None and len(scores):
        s = np.asarray(scores, dtype=float)
        lo, hi = np.nanmin(s), np.nanmax(s)
        norm = plt.Normalize(lo, hi if hi > lo else lo + 1e-6)
        sc = ax.scatter(coords[:, 0], coords[:, 1], c=s, cmap=cmap, norm=norm, s=8)
        fig.colorbar(sc, ax=ax, shrink=0.7, label="memorability score (frame colour)")
    else:
        norm = None
        ax.scatter(coords[:, 0], coords[:, 1], s=8, color=POINT_COLOR)
    for i, (xy, th) in enumerate(zip(coords, thumbs, strict=True)):
        if th is None:
            continue
        frame = cmap(norm(scores[i])) if norm is not None else "#444444"
        box = AnnotationBbox(
            OffsetImage(np.asarray(th), zoom=zoom), xy, frameon=True, pad=0.15,
            bboxprops={"edgecolor": frame, "lw": 2.5},
        )
        ax.add_artist(box)
    # leave room for the thumbnails at the edges
    span = np.ptp(coords, axis=0) if len(coords) else np.ones(2)
    span = np.where(span > 0, span, 1.0)
    lo, hi = coords.min(axis=0) - 0.16 * span, coords.max(axis=0) + 0.16 * span
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.set_title(title)
    return fig


def scatter_measure(
    ax, x, y, measure: str, rho: float, p: float, n: int, slope: float, intercept: float,
    value_label: str = "memorability score",
) -> None:
    """One Cetinic Fig. 5 panel on `ax`: a dot per image and the red least-squares line."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    ax.scatter(x[ok], y[ok], s=14, alpha=0.75, color=POINT_COLOR, edgecolor="none")
    if not math.isnan(slope):
        xs = np.linspace(x[ok].min(), x[ok].max(), 50)
        ax.plot(xs, slope * xs + intercept, color=FIT_COLOR, lw=2, label="least-squares fit")
    rho_txt = "n/a" if math.isnan(rho) else f"{rho:+.2f}"
    ax.set_title(f"{_pretty(measure)}\nrho = {rho_txt}, {format_p(p)}, n = {n}", fontsize=9)
    ax.set_xlabel(_pretty(measure), fontsize=9)
    ax.set_ylabel(value_label, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)


def scatter_panel(df: pd.DataFrame, table: pd.DataFrame, fits: dict, value: str = "score", ncols: int = 4):
    """Several `scatter_measure` panels, one per row of the Spearman `table` (measure, rho, p, n)."""
    k = len(table)
    ncols = max(1, min(ncols, k))
    nrows = max(1, math.ceil(k / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.3 * nrows), squeeze=False)
    for i, row in enumerate(table.itertuples(index=False)):
        ax = axes[i // ncols][i % ncols]
        slope, intercept = fits[row.measure]
        scatter_measure(ax, df[row.measure], df[value], row.measure, row.rho, row.p, row.n, slope, intercept)
    for j in range(k, nrows * ncols):
        axes[j // ncols][j % ncols].axis("off")
    fig.tight_layout()
    return fig


def hue_wheel(rho: list[float], p: list[float], alpha: float = 0.05, title: str | None = None):
    """Cetinic Fig. 6: the 12 hue sectors, each filled with a colour for Spearman's rho between
    memorability and the share of that hue (diverging scale), the hue itself on the outer ring,
    and rho printed in each sector (* when p < alpha)."""
    import colorsys

    from matplotlib.colors import TwoSlopeNorm

    rho = np.asarray(rho, dtype=float)
    p = np.asarray(p, dtype=float)
    finite = np.abs(rho[np.isfinite(rho)])
    lim = max(0.1, float(finite.max()) if len(finite) else 0.1)
    norm = TwoSlopeNorm(vmin=-lim, vcenter=0.0, vmax=lim)
    cmap = plt.get_cmap("RdBu_r")
    fig = plt.figure(figsize=(6.8, 6.0))
    ax = fig.add_subplot(projection="polar")
    width = np.deg2rad(30)
    theta = np.deg2rad(np.asarray(HUE_CENTERS_DEG))
    for t, r_, p_, c_deg, name in zip(theta, rho, p, HUE_CENTERS_DEG, HUE_NAMES, strict=True):
        face = "#dddddd" if not np.isfinite(r_) else cmap(norm(r_))
        ax.bar(t, 1.0, width=width, bottom=0.0, color=face, edgecolor="white", lw=1.5)
        ax.bar(t, 0.22, width=width, bottom=1.05, color=colorsys.hsv_to_rgb(c_deg / 360, 1, 1),
               edgecolor="white", lw=1.5)
        label = "n/a" if not np.isfinite(r_) else f"{r_:+.2f}" + ("*" if np.isfinite(p_) and p_ < alpha else "")
        ax.text(t, 0.62, label, ha="center", va="center", fontsize=9,
                color="white" if np.isfinite(r_) and abs(norm(r_) - 0.5) > 0.33 else "black")
        ax.text(t, 1.45, _pretty(name), ha="center", va="center", fontsize=8)
    ax.set_ylim(0, 1.6)
    ax.set_yticks([])
    ax.set_xticks([])
    ax.spines["polar"].set_visible(False)
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, shrink=0.65, pad=0.08, label="Spearman rho with memorability")
    ax.set_title(title or f"Hue share vs memorability (* p < {alpha:g})", pad=18)
    return fig


# Okabe-Ito, most to least memorable quartile
QUARTILE_COLORS = (OKABE_ITO["vermillion"], OKABE_ITO["orange"], OKABE_ITO["green"], OKABE_ITO["blue"])


def quartile_plot(curves: dict[int, np.ndarray], table: pd.DataFrame, attribute: str):
    """Khosla Fig. 4: left, the attribute's values in each memorability quartile sorted and plotted
    against a 0-1 normalised index; right, the quartile means with standard errors."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.4), gridspec_kw={"width_ratios": [3, 2]})
    names = {1: "Q1 (most memorable)", 2: "Q2", 3: "Q3", 4: "Q4 (least memorable)"}
    for k in range(1, 5):
        v = curves.get(k, np.array([]))
        if len(v) == 0:
            continue
        x = np.linspace(0, 1, len(v)) if len(v) > 1 else np.array([0.5])
        ax1.plot(x, v, color=QUARTILE_COLORS[k - 1], lw=2, marker="o" if len(v) < 15 else None,
                 ms=3, label=f"{names[k]}, mean {np.mean(v):.3g}")
    ax1.set_xlabel("image index within quartile (sorted, normalised 0-1)")
    ax1.set_ylabel(_pretty(attribute))
    ax1.set_title(f"{_pretty(attribute)} by memorability quartile", fontsize=10)
    ax1.legend(fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    ax1.grid(alpha=0.3)
    t = table.sort_values("quartile")
    for row in t.itertuples(index=False):
        ax2.errorbar(row.quartile, row.mean, yerr=0 if not np.isfinite(row.sem) else row.sem,
                     fmt="o", ms=8, capsize=5, color=QUARTILE_COLORS[int(row.quartile) - 1])
    ticks = []
    for row in t.itertuples(index=False):
        q = int(row.quartile)
        name = {1: "Q1\nmost", 4: "Q4\nleast"}.get(q, f"Q{q}")
        if q > 1:
            name += "\n" + format_p(row.p_q1_greater).replace(" ", "")
        ticks.append(name)
    ax2.set_xticks(t["quartile"].tolist(), ticks, fontsize=8)
    ax2.set_xlim(0.5, 4.5)
    ax2.set_xlabel("memorability quartile (p: Q1 > Qk)")
    ax2.set_ylabel(f"mean {_pretty(attribute)} (+- sem)")
    ax2.set_title("Quartile means, one-sided Welch t-tests", fontsize=10)
    ax2.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
