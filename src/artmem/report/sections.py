"""The sections of the memorability report, in the order they appear: score distribution,
categories, most/least memorable images, t-SNE, correlations with image measures, quartiles,
images left out, and the summary at the top. Imports matplotlib (via `figures`), so `build`
imports this module only when it writes a report."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.analysis import stats as st
from artmem.analysis.color import HUE_COLUMNS
from artmem.data.images import try_load_image
from artmem.errors import ArtmemError
from artmem.report import figures as F
from artmem.report.data import (
    FIG5_DEFAULT,
    QUARTILE_FALLBACK,
    VALUE,
    ReportData,
    ReportOptions,
    parse_subset,
)
from artmem.report.html import esc
from artmem.report.writer import ReportWriter, Thumbnails, short, slug

logger = logging.getLogger("artmem.report.build")  # one logger name for the whole report


def group_of(col: str, groups: dict) -> str:
    """The measure group of `col`: its group in `groups`, else attributes (p_*) or metadata."""
    for g, cols in groups.items():
        if col in cols:
            return g
    if col.startswith("p_"):
        return "attributes"
    return "metadata"


def distribution_section(w: ReportWriter, df: pd.DataFrame, data: ReportData, n_total: int,
                         opt: ReportOptions) -> None:
    """Overall statistics and the histogram of the scores."""
    scores = df[VALUE].to_numpy(dtype=float)
    sec = w.html.section(
        "Memorability scores",
        f"{len(df)} of {n_total} images have a memorability score"
        + (f" (column <code>{esc(data.score_column)}</code> of the collection)." if data.score_column
           else f" ({esc(data.inputs.get('model') or 'model')} predictions)."),
    )
    overall = pd.DataFrame([{
        "n": len(scores), "mean": scores.mean(), "median": np.median(scores),
        "sd": scores.std(ddof=1) if len(scores) > 1 else math.nan,
        "min": scores.min(), "max": scores.max(),
    }])
    w.table(sec, overall, "overall", "All scored images.")
    w.figure(sec, F.score_histogram(scores, opt.value_label), "score_histogram",
             "Distribution of memorability scores (vermillion line: mean; dashed black line: median).")


def category_sections(w: ReportWriter, df: pd.DataFrame, categories: list[str], opt: ReportOptions) -> None:
    """One section per label column: statistics, box plot and the t-test matrix."""
    all_cat_stats = []
    for col in categories:
        cs = st.category_stats(df, col, VALUE)
        all_cat_stats.append(cs)
        sec = w.html.section(
            f"Memorability by {col}",
            f"Mean, median and standard deviation of memorability per <b>{esc(col)}</b> "
            "(as in Cetinic et al. 2019, Figures 1 and 3), ordered by mean.",
        )
        w.table(sec, cs.drop(columns=["column"]), f"category_stats_{slug(col)}", f"Memorability per {esc(col)}.")
        w.figure(sec, F.box_by_category(df, col, cs, VALUE, opt.value_label), f"box_{slug(col)}",
                 f"Memorability by {esc(col)}, categories ordered by mean, n per category in the labels. "
                 + F.BOX_CAPTION)
        tested = cs[cs["n"] >= opt.min_category_n]["category"].tolist()
        if len(tested) >= 2:
            tests = st.ttest_matrix(df[df[col].astype(str).isin(tested)], col, VALUE, order=tested, alpha=opt.alpha)
            w.table(sec, tests, f"ttests_{slug(col)}",
                    f"One-sided Welch t-tests: is <i>a</i> more memorable than <i>b</i>? "
                    f"({int(tests['significant'].sum())} of {len(tests)} ordered pairs significant at {opt.alpha:g}).",
                    max_rows=60)
            w.figure(sec, F.significance_matrix(tests, tested, opt.alpha, col), f"ttest_matrix_{slug(col)}",
                     "Significance matrix (Khosla et al. 2015, Figure 3b): a dark cell means the row category "
                     "is significantly more memorable than the column category.")
            left_out = cs[cs["n"] < opt.min_category_n]["category"].tolist()
            if left_out:
                w.html.text(sec, f'<p class="note">Left out of the t-tests (fewer than {opt.min_category_n} images): '
                            f"{esc(', '.join(map(str, left_out)))}.</p>")
        else:
            w.html.text(sec, f'<p class="note">Fewer than two categories with at least {opt.min_category_n} '
                        "images: no t-tests.</p>")
    if all_cat_stats:
        w.table(None, pd.concat(all_cat_stats, ignore_index=True), "category_stats")


def top_bottom_section(w: ReportWriter, df: pd.DataFrame, data: ReportData, categories: list[str],
                       opt: ReportOptions, thumbs: Thumbnails) -> None:
    """Thumbnail rows of the most and least memorable images (with their maps when given)."""
    k = min(opt.top_k, len(df))
    if k < opt.top_k:
        w.used["top/bottom images"] = f"{k} (asked {opt.top_k}; the collection has {len(df)} scored images)"
    ranked = df.sort_values(VALUE, ascending=False, kind="stable").reset_index(drop=True)
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
    top, bottom = ranked.head(k), ranked.tail(k).iloc[::-1]
    label_col = next((c for c in ("title", "name") if c in df.columns), None)

    def items(rows):
        out_items = []
        for r in rows.itertuples(index=False):
            rd = r._asdict()
            name = rd.get(label_col) if label_col else Path(rd["path"]).stem
            cat = " / ".join(str(rd[c]) for c in categories[:2] if c in rd and pd.notna(rd[c]))
            caption = f"#{rd['rank']}  {rd[VALUE]:.3f}\n{short(name)}" + (f"\n{short(cat)}" if cat else "")
            out_items.append((thumbs(rd["path"]), caption))
        return out_items

    sec = w.html.section(
        "Most and least memorable images",
        f"The {k} most memorable (top row) and {k} least memorable (bottom row) images "
        "(Cetinic et al. 2019, Figure 2).",
    )
    grid_rows = [("most memorable", items(top)), ("least memorable", items(bottom))]
    map_rows = map_overlay_rows(w, data, top, bottom, thumbs, opt)
    grid_rows = grid_rows[:1] + map_rows[:1] + grid_rows[1:] + map_rows[1:]
    cmap = None
    if map_rows:
        from artmem.memorability.maps import MAP_CMAP as cmap
    fig = F.image_grid(grid_rows, colorbar_cmap=cmap,
                       colorbar_label="memorability map, per image\n(0 = its least, 1 = its most memorable region)")
    w.figure(sec, fig, "top_bottom", "Most (top) and least (bottom) memorable images"
             + (", each with its memorability map (Khosla et al. 2015, Figure 7; normalised per image)"
                if map_rows else "") + "; captions: rank, score, name.")
    cols = ["rank", "path", VALUE, *[c for c in categories if c in ranked.columns]]
    if label_col and label_col not in cols:
        cols.insert(2, label_col)
    tb = pd.concat([ranked.head(min(10, len(ranked))), ranked.tail(min(10, len(ranked)))]).drop_duplicates("path")
    w.table(sec, tb[cols], "top_bottom", "The 10 most and 10 least memorable images.")
    w.table(None, ranked[cols], "ranking")


def tsne_section(w: ReportWriter, data: ReportData, df: pd.DataFrame, opt: ReportOptions,
                 thumbs: Thumbnails) -> None:
    """t-SNE of the image features with thumbnails framed by memorability."""
    from artmem.analysis.embedding import tsne_embed, tsne_perplexity

    fs = data.features
    have = set(fs.paths)
    sub = df[df["path"].isin(have)]
    subset_txt = "all scored images with features"
    if opt.tsne_subset:
        sub = sub[parse_subset(opt.tsne_subset, sub)]
        subset_txt = f"images with {opt.tsne_subset}"
    if len(sub) > opt.tsne_max:
        sub = sub.sample(opt.tsne_max, random_state=opt.seed)
        subset_txt += f", a random sample of {opt.tsne_max}"
    if len(sub) < 2:
        logger.warning("t-SNE skipped: fewer than 2 images with features in the subset")
        return
    vecs = fs.select(sub["path"].tolist()).vectors
    coords = tsne_embed(vecs, perplexity=opt.tsne_perplexity, seed=opt.seed)
    model, layer = fs.meta.get("model") or "model", fs.meta.get("layer") or "features"
    n = len(sub)
    size = 72 if n <= 40 else 48 if n <= 150 else 32
    small = []
    for p in sub["path"]:
        t = thumbs(p)
        if t is not None:
            t = t.copy()
            t.thumbnail((size, size))
        small.append(t)
    perp = tsne_perplexity(n, opt.tsne_perplexity)
    w.used["t-SNE"] = (f"perplexity {perp:g} (asked {opt.tsne_perplexity:g}; at most (n - 1) / 3 for n = {n}), "
                       f"cosine distance, PCA to 50 dimensions first, seed {opt.seed}")
    sec = w.html.section(
        f"t-SNE of {model} {layer} features",
        f"2-D t-SNE (perplexity {perp:.1f}, cosine distance) of {esc(model)} <code>{esc(layer)}</code> "
        f"features ({fs.dim}-d) for {n} images: {esc(subset_txt)} (Cetinic et al. 2019, Figure 4). "
        "Nearby images have similar features; the frame colour shows memorability.",
    )
    w.figure(sec, F.tsne_thumbnails(coords, small, sub[VALUE].to_numpy(dtype=float),
                                    title=f"t-SNE of {model} {layer} features (n = {n}, perplexity {perp:.3g})"),
             "tsne", "t-SNE of the image features with thumbnails.")
    w.table(None, pd.DataFrame({"path": sub["path"].to_numpy(), "tsne_x": coords[:, 0], "tsne_y": coords[:, 1],
                                VALUE: sub[VALUE].to_numpy()}), "tsne")


def correlation_section(w: ReportWriter, df: pd.DataFrame, measure_cols: list[str], groups: dict,
                        opt: ReportOptions, hue_mode: str = "unrecorded") -> pd.DataFrame | None:
    """Spearman table, scatter panel, hue wheel and one scatter per measure; returns the table
    (None without measures)."""
    if not measure_cols:
        return None
    spearman = st.spearman_table(df, measure_cols, VALUE, opt.alpha)
    spearman.insert(1, "group", [group_of(m, groups) for m in spearman["measure"]])
    fits = {m: st.linear_fit(df[m], df[VALUE]) for m in measure_cols}
    spearman["slope"] = [fits[m][0] for m in spearman["measure"]]
    sec = w.html.section(
        "Memorability and image measures",
        "Spearman rank correlation between memorability and each measure (rho, two-sided p, n "
        "images with both values), as in Cetinic et al. 2019, section IV.C. Slope: least-squares "
        "line of memorability on the measure.",
    )
    w.table(sec, spearman, "spearman", f"Spearman correlations ({int(spearman['significant'].sum())} "
            f"significant at {opt.alpha:g}; no correction for multiple comparisons).")
    panel = opt.scatter_measures
    if panel is None:
        panel = [m for m in FIG5_DEFAULT if m in measure_cols]
        panel += [m for m in measure_cols if m.startswith("p_")][:1]
        if not panel:
            panel = [m for m in measure_cols if m not in HUE_COLUMNS][:4]
    missing = [m for m in panel if m not in measure_cols]
    if missing:
        raise ArtmemError(f"--scatter: unknown measure(s) {missing}; known: {measure_cols}")
    if panel:
        sub = spearman.set_index("measure").loc[panel].reset_index()
        w.figure(sec, F.scatter_panel(df, sub, fits, VALUE), "scatter_panel",
                 "Memorability against composition, symmetry and attribute measures, one dot per image, "
                 "vermillion line: least-squares fit (Cetinic et al. 2019, Figure 5).")
    if all(h in measure_cols for h in HUE_COLUMNS):
        hue = spearman.set_index("measure").loc[list(HUE_COLUMNS)]
        w.figure(sec, F.hue_wheel(hue["rho"].tolist(), hue["p"].tolist(), opt.alpha), "hue_wheel",
                 "Spearman rho between memorability and the share of each of the 12 hues "
                 f"(Cetinic et al. 2019, Figure 6); * p &lt; {opt.alpha:g}. Grey: not computable. "
                 f"Hue histogram: {hue_mode} mode.")
    singles = [m for m in measure_cols if m not in HUE_COLUMNS]
    import matplotlib.pyplot as plt

    for m in singles:
        fig, ax = plt.subplots(figsize=(4.4, 3.8))
        row = spearman.set_index("measure").loc[m]
        F.scatter_measure(ax, df[m], df[VALUE], m, row["rho"], row["p"], int(row["n"]), *fits[m],
                          value_label=opt.value_label)
        fig.tight_layout()
        w.figure(None, fig, f"scatter_{slug(m)}", "")
    w.html.text(sec, f'<p class="note">A scatter plot of every measure is in figures/scatter_*.png '
                f"({len(singles)} files; {', '.join(w.formats)}).</p>")
    return spearman


def quartile_section(w: ReportWriter, df: pd.DataFrame, measure_cols: list[str], groups: dict,
                     opt: ReportOptions) -> None:
    """Attribute values by memorability quartile (Khosla et al. 2015, Figure 4)."""
    if not measure_cols:
        return
    attrs = opt.quartile_attributes
    if attrs is None:
        attrs = [m for m in measure_cols if group_of(m, groups) in ("attributes", "metadata")]
        if not attrs:
            attrs = [m for m in QUARTILE_FALLBACK if m in measure_cols]
        attrs = attrs[:6]
    missing = [a for a in attrs if a not in measure_cols]
    if missing:
        raise ArtmemError(f"--quartiles: unknown attribute(s) {missing}; known: {measure_cols}")
    if attrs and len(df) >= 4:
        sec = w.html.section(
            "Attributes by memorability quartile",
            "Images split into quartiles of memorability (Q1 = the most memorable 25 %); each "
            "attribute's values per quartile, sorted (Khosla et al. 2015, Figure 4), and the quartile "
            "means with one-sided Welch t-tests of Q1 against the others.",
        )
        qtabs = []
        for a in attrs:
            qt = st.quartile_table(df, a, VALUE)
            qtabs.append(qt)
            w.figure(sec, F.quartile_plot(st.quartile_curves(df, a, VALUE), qt, a), f"quartiles_{slug(a)}",
                     f"{esc(a)} by memorability quartile.")
        w.table(sec, pd.concat(qtabs, ignore_index=True), "quartiles", "Attribute means per memorability quartile.")


def left_out_section(w: ReportWriter, coll, df: pd.DataFrame, data: ReportData) -> None:
    """Unscored collection images and unreadable images, by step."""
    unscored = sorted(set(coll.table["path"].astype(str)) - set(df["path"]))
    err_frames = []
    for kind, e in (data.errors or {}).items():
        if e is not None and len(e):
            err_frames.append(e.assign(step=kind)[["step", "path", "reason"]])
    if unscored or err_frames:
        sec = w.html.section("Images left out")
        if unscored:
            w.html.text(sec, f'<p class="warn">{len(unscored)} image(s) of the collection have no score and are not '
                        "in any statistic (see tables/unscored.csv).</p>")
            w.table(None, pd.DataFrame({"path": unscored}), "unscored")
        if err_frames:
            w.table(sec, pd.concat(err_frames, ignore_index=True), "errors", "Unreadable images, by step.")


def summary_html(df, n_total, categories, measure_cols, spearman, data) -> str:
    """Key numbers and a few sentences on what stands out."""
    s = df[VALUE]
    cards = [
        ("images scored", f"{len(df)} / {n_total}"),
        ("mean memorability", f"{s.mean():.3f}"),
        ("sd", f"{s.std(ddof=1):.3f}" if len(s) > 1 else "n/a"),
        ("range", f"{s.min():.3f} – {s.max():.3f}"),
        ("categories", ", ".join(categories) or "none"),
        ("measures", str(len(measure_cols))),
    ]
    html_cards = "".join(f'<div class="card"><b>{esc(v)}</b>{esc(k)}</div>' for k, v in cards)
    lines = []
    for col in categories:
        cs = st.category_stats(df, col, VALUE, min_n=2)  # single images are not a category mean
        if len(cs) >= 2:
            hi, lo = cs.iloc[0], cs.iloc[-1]
            lines.append(f"By <b>{esc(col)}</b>, <i>{esc(hi['category'])}</i> is the most memorable "
                         f"(mean {hi['mean']:.3f}, n={int(hi['n'])}) and <i>{esc(lo['category'])}</i> the "
                         f"least (mean {lo['mean']:.3f}, n={int(lo['n'])}).")
    if spearman is not None and len(spearman):
        sig = spearman[spearman["significant"]].sort_values("p")
        if len(sig):
            top = sig.head(3)
            lines.append("Significant correlations with memorability: " + "; ".join(
                f"{esc(r.measure)} (rho {r.rho:+.2f}, {F.format_p(r.p)}, n {r.n})" for r in top.itertuples()) + ".")
        else:
            lines.append("No measure correlates significantly with memorability at this sample size.")
    if len(df) < 30:
        lines.append(f"With {len(df)} images, the statistics are illustrative only.")
    text = "".join(f"<li>{x}</li>" for x in lines)
    return f'<div class="summary">{html_cards}</div><ul>{text}</ul>'


def map_overlay_rows(w: ReportWriter, data: ReportData, top: pd.DataFrame, bottom: pd.DataFrame,
                     thumbs: Thumbnails, opt: ReportOptions) -> list:
    """Rows of memorability-map overlays under the top/bottom images: a map under every image
    shown or none. Maps come from the maps folder (the raw `.npy`, coloured here); the few that
    are missing are computed with the maps' own model and settings (maps.json)."""
    if data.maps is None or data.maps_dir is None or "map_npy" not in data.maps.columns:
        return []
    from artmem.memorability.maps import overlay

    shown = list(dict.fromkeys([*top["path"], *bottom["path"]]))
    lookup = dict(zip(data.maps["path"].astype(str), data.maps["map_npy"], strict=False))
    arrays: dict[str, np.ndarray] = {}
    for p in shown:
        f = lookup.get(p)
        if isinstance(f, str) and (data.maps_dir / f).is_file():
            arrays[p] = np.load(data.maps_dir / f, allow_pickle=False)
    missing = [p for p in shown if p not in arrays and thumbs(p) is not None]
    if missing:
        arrays.update(compute_missing_maps(w, data, missing, opt))
    lacking = [p for p in shown if p not in arrays]
    if lacking:
        w.used["memorability maps"] = f"not shown: no map for {len(lacking)} of the {len(shown)} images shown"
        logger.warning("top/bottom grid without maps: %d image(s) have none (%s)", len(lacking), lacking[:3])
        return []
    rows = []
    for frame in (top, bottom):
        rows.append(("maps", [(overlay(thumbs(p), arrays[p]), "") for p in frame["path"]]))
    return rows


def compute_missing_maps(w: ReportWriter, data: ReportData, paths: list[str], opt: ReportOptions) -> dict:
    """Maps of `paths` made with the model and settings recorded in the maps folder's maps.json
    (else the scores' model); {} when no model is known or it cannot be loaded."""
    import json

    from artmem.memorability.maps import MapConfig, MapModel, memorability_map
    from artmem.models.factory import create_model
    from artmem.runtime import resolve_device

    meta_file = data.maps_dir / "maps.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    model = meta.get("model") or data.inputs.get("model")
    if not model:
        return {}
    config = MapConfig(**{k: (tuple(meta[k]) if k == "grids" else meta[k])
                          for k in ("grids", "map_size", "stride") if meta.get(k) is not None})
    dev = resolve_device(opt.maps_device)
    try:
        net = create_model(str(model))
    except (ArtmemError, OSError) as exc:  # e.g. a checkpoint that has moved: the grid shows no maps
        logger.warning("missing memorability maps not computed: model %s unavailable (%s)", model, exc)
        return {}
    mm = MapModel(net.to(dev).eval(), dev, meta.get("method") or "auto", config.stride)
    out = {}
    for p in paths:
        img, _ = try_load_image(data.collection.abs_path(p))
        if img is not None:
            out[p] = memorability_map(mm, img, config)
    w.used["memorability maps"] = (f"{len(out)} missing map(s) computed for the grid with {model} "
                                   f"(grids {list(config.grids)}, {mm.method})")
    logger.info("computed %d missing memorability map(s) with %s", len(out), model)
    return out
