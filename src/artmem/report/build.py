"""`build_report`: the statistics and figures of a memorability study, as PNG, CSV and one HTML file.

Output folder:

    OUT/report.html        self-contained (figures embedded as base64 PNG)
    OUT/figures/*.png      every figure
    OUT/tables/*.csv       every table
    OUT/report.json        inputs, options, versions, the command line, and the written files
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.analysis import stats as st
from artmem.analysis.color import HUE_COLUMNS
from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)

VALUE = "score"
FIG5_DEFAULT = ("vertical_edge_ratio", "horizontal_edge_ratio", "symmetry_conv5")
QUARTILE_FALLBACK = ("vertical_edge_ratio", "horizontal_edge_ratio", "symmetry_conv5", "colorfulness")


@dataclass
class ReportOptions:
    """What the report shows.

    Attributes:
        categories: label columns to compare (None: every label column with 2-50 categories
            whose median category has at least 2 images).
        title: report title (default: "Memorability of <collection name>").
        value_label: axis label of the memorability value.
        top_k: images in the most/least memorable rows.
        tsne_subset: "column=value" (or "column=a|b") restricting the t-SNE to a subset.
        tsne_max: at most this many images in the t-SNE (a seeded random sample beyond).
        tsne_perplexity: t-SNE perplexity (lowered automatically for small sets).
        quartile_attributes: attributes for the quartile plots (None: classifier probabilities and
            numeric metadata, else a few image measures).
        scatter_measures: measures of the Figure-5 panel (None: edge ratios, conv5 symmetry and
            the first classifier probability).
        alpha: significance level.
        seed: for the t-SNE and the sample.
        min_category_n: categories with fewer images are left out of the t-tests.
    """

    categories: list[str] | None = None
    title: str | None = None
    value_label: str = "memorability score"
    top_k: int = 5
    tsne_subset: str | None = None
    tsne_max: int = 300
    tsne_perplexity: float = 30.0
    quartile_attributes: list[str] | None = None
    scatter_measures: list[str] | None = None
    alpha: float = 0.05
    seed: int = 0
    min_category_n: int = 2


@dataclass
class ReportData:
    """Everything the report reads, already loaded."""

    collection: object  # artmem.data.collection.Collection
    scores: pd.DataFrame
    features: object | None = None  # artmem.scale.store.FeatureSet
    measures: pd.DataFrame | None = None
    measure_groups: dict = field(default_factory=dict)
    maps: pd.DataFrame | None = None
    maps_dir: Path | None = None
    errors: dict = field(default_factory=dict)  # {"scores": df, "measures": df}
    inputs: dict = field(default_factory=dict)  # provenance: {"scores": path, ...}
    score_column: str | None = None


def _slug(x: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(x)).strip("_") or "x"


def default_categories(table: pd.DataFrame, exclude: tuple[str, ...] = ("path",)) -> list[str]:
    """Label columns worth comparing: non-numeric, 2-50 distinct values, median group size >= 2."""
    out = []
    for c in table.columns:
        if c in exclude or pd.api.types.is_numeric_dtype(table[c]):
            continue
        counts = table[c].dropna().astype(str).value_counts()
        if 2 <= len(counts) <= 50 and counts.median() >= 2:
            out.append(c)
    return out


class _Writer:
    """Collects figure and table files and the HTML sections."""

    def __init__(self, out: Path, title: str):
        from artmem.report.html import HtmlReport

        self.out = out
        self.fig_dir = out / "figures"
        self.tab_dir = out / "tables"
        self.fig_dir.mkdir(parents=True, exist_ok=True)
        self.tab_dir.mkdir(parents=True, exist_ok=True)
        self.html = HtmlReport(title)
        self.written: list[Path] = []

    def figure(self, sec, fig, name: str, caption: str) -> Path:
        from artmem.report.figures import save_figure

        path = save_figure(fig, self.fig_dir / f"{name}.png")
        self.written.append(path)
        if sec is not None:
            self.html.figure(sec, path, caption)
        return path

    def table(self, sec, df: pd.DataFrame, name: str, caption: str | None = None,
              shown: pd.DataFrame | None = None, max_rows: int = 200) -> Path:
        path = self.tab_dir / f"{name}.csv"
        df.to_csv(path, index=False)
        self.written.append(path)
        if sec is not None and caption is not None:
            self.html.table(sec, df if shown is None else shown, caption, f"tables/{path.name}", max_rows)
        return path


class _Thumbs:
    """Thumbnails of collection images, loaded once (None for an unreadable image)."""

    def __init__(self, collection, size: int):
        self.collection = collection
        self.size = size
        self._cache: dict[str, object] = {}

    def __call__(self, rel: str):
        from artmem.data.images import try_load_image

        if rel not in self._cache:
            img, _ = try_load_image(self.collection.abs_path(rel))
            if img is not None:
                img = img.copy()
                img.thumbnail((self.size, self.size))
            self._cache[rel] = img
        return self._cache[rel]


def _short(text: str, n: int = 24) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def assemble_table(data: ReportData) -> tuple[pd.DataFrame, list[str]]:
    """One row per scored image: collection columns, `score`, and the measures; the measure names."""
    coll_table = data.collection.table.copy()
    coll_table["path"] = coll_table["path"].astype(str)
    if data.score_column:
        if data.score_column not in coll_table.columns:
            raise ArtmemError(f"the collection has no column {data.score_column!r}")
        df = coll_table.copy()
        df[VALUE] = pd.to_numeric(df[data.score_column], errors="coerce")
        df = df[df[VALUE].notna()]
    else:
        scores = data.scores[["path", VALUE]].copy()
        scores["path"] = scores["path"].astype(str)
        scores = scores.drop_duplicates("path", keep="last")
        if VALUE in coll_table.columns:
            coll_table = coll_table.rename(columns={VALUE: "score_in_collection"})
        df = coll_table.merge(scores, on="path", how="inner")
    if df.empty:
        raise ArtmemError("no image of the collection has a memorability score (do the scores belong to this collection?)")
    measure_cols: list[str] = []
    if data.measures is not None and len(data.measures):
        m = data.measures.copy()
        m["path"] = m["path"].astype(str)
        keep = ["path"] + [c for c in m.columns if c != "path" and c not in df.columns
                           and pd.api.types.is_numeric_dtype(m[c])]
        df = df.merge(m[keep].drop_duplicates("path"), on="path", how="left")
        measure_cols = keep[1:]
    # numeric collection columns are attributes too (year, a human score, ...)
    from artmem.analysis.measures import numeric_metadata_columns

    meta = [c for c in numeric_metadata_columns(coll_table, exclude=(VALUE, data.score_column or ""))
            if c not in measure_cols and c in df.columns]
    return df.reset_index(drop=True), measure_cols + meta


def _group_of(col: str, groups: dict) -> str:
    for g, cols in groups.items():
        if col in cols:
            return g
    if col.startswith("p_"):
        return "attributes"
    return "metadata"


def build_report(data: ReportData, out: str | Path, options: ReportOptions | None = None,
                 command: str | None = None) -> list[Path]:
    """Write the report of `data` into `out`; returns the written paths (report.html first)."""
    from artmem.report import figures as F
    from artmem.report.html import command_line, esc, package_versions

    opt = options or ReportOptions()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    coll = data.collection
    df, measure_cols = assemble_table(data)
    title = opt.title or f"Memorability of {coll.name}"
    w = _Writer(out, title)
    thumbs = _Thumbs(coll, 256)
    scores = df[VALUE].to_numpy(dtype=float)
    n_total = len(coll)
    categories = opt.categories if opt.categories is not None else default_categories(coll.table)
    for c in categories:
        if c not in df.columns:
            raise ArtmemError(f"--categories: the collection has no column {c!r} (columns: {list(coll.table.columns)})")
    w.table(None, df, "images")

    # ---------------------------------------------------------------- distribution
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
             "Distribution of memorability scores (red: mean, dashed: median).")

    # ---------------------------------------------------------------- categories
    all_cat_stats = []
    for col in categories:
        cs = st.category_stats(df, col, VALUE)
        all_cat_stats.append(cs)
        sec = w.html.section(
            f"Memorability by {col}",
            f"Mean, median and standard deviation of memorability per <b>{esc(col)}</b> "
            "(as in Cetinic et al. 2019, Figures 1 and 3), ordered by mean.",
        )
        w.table(sec, cs.drop(columns=["column"]), f"category_stats_{_slug(col)}", f"Memorability per {esc(col)}.")
        w.figure(sec, F.box_by_category(df, col, cs, VALUE, opt.value_label), f"box_{_slug(col)}",
                 f"Memorability by {esc(col)}: boxes ordered by mean (red dot), n per category in the labels.")
        tested = cs[cs["n"] >= opt.min_category_n]["category"].tolist()
        if len(tested) >= 2:
            tests = st.ttest_matrix(df[df[col].astype(str).isin(tested)], col, VALUE, order=tested, alpha=opt.alpha)
            w.table(sec, tests, f"ttests_{_slug(col)}",
                    f"One-sided Welch t-tests: is <i>a</i> more memorable than <i>b</i>? "
                    f"({int(tests['significant'].sum())} of {len(tests)} ordered pairs significant at {opt.alpha:g}).",
                    max_rows=60)
            w.figure(sec, F.significance_matrix(tests, tested, opt.alpha, col), f"ttest_matrix_{_slug(col)}",
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

    # ---------------------------------------------------------------- top / bottom
    k = min(opt.top_k, len(df))
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
            caption = f"#{rd['rank']}  {rd[VALUE]:.3f}\n{_short(name)}" + (f"\n{_short(cat)}" if cat else "")
            out_items.append((thumbs(rd["path"]), caption))
        return out_items

    sec = w.html.section(
        "Most and least memorable images",
        f"The {k} most memorable (top row) and {k} least memorable (bottom row) images "
        "(Cetinic et al. 2019, Figure 2).",
    )
    grid_rows = [("most memorable", items(top)), ("least memorable", items(bottom))]
    map_rows = _map_rows(data, top, bottom)
    grid_rows = grid_rows[:1] + map_rows[:1] + grid_rows[1:] + map_rows[1:]
    w.figure(sec, F.image_grid(grid_rows), "top_bottom", "Most (top) and least (bottom) memorable images"
             + (", each with its memorability map" if map_rows else "") + "; captions: rank, score, name.")
    cols = ["rank", "path", VALUE, *[c for c in categories if c in ranked.columns]]
    if label_col and label_col not in cols:
        cols.insert(2, label_col)
    tb = pd.concat([ranked.head(min(10, len(ranked))), ranked.tail(min(10, len(ranked)))]).drop_duplicates("path")
    w.table(sec, tb[cols], "top_bottom", "The 10 most and 10 least memorable images.")
    w.table(None, ranked[cols], "ranking")

    # ---------------------------------------------------------------- t-SNE
    if data.features is not None:
        _tsne_section(w, data, df, opt, thumbs)

    # ---------------------------------------------------------------- correlations
    groups = data.measure_groups or {}
    spearman = None
    if measure_cols:
        spearman = st.spearman_table(df, measure_cols, VALUE, opt.alpha)
        spearman.insert(1, "group", [_group_of(m, groups) for m in spearman["measure"]])
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
                     "red line: least-squares fit (Cetinic et al. 2019, Figure 5).")
        if all(h in measure_cols for h in HUE_COLUMNS):
            hue = spearman.set_index("measure").loc[list(HUE_COLUMNS)]
            w.figure(sec, F.hue_wheel(hue["rho"].tolist(), hue["p"].tolist(), opt.alpha), "hue_wheel",
                     "Spearman rho between memorability and the share of each of the 12 hues "
                     f"(Cetinic et al. 2019, Figure 6); * p &lt; {opt.alpha:g}. Grey: not computable.")
        singles = [m for m in measure_cols if m not in HUE_COLUMNS]
        import matplotlib.pyplot as plt

        for m in singles:
            fig, ax = plt.subplots(figsize=(4.4, 3.8))
            row = spearman.set_index("measure").loc[m]
            F.scatter_measure(ax, df[m], df[VALUE], m, row["rho"], row["p"], int(row["n"]), *fits[m],
                              value_label=opt.value_label)
            fig.tight_layout()
            w.figure(None, fig, f"scatter_{_slug(m)}", "")
        w.html.text(sec, f'<p class="note">A scatter plot of every measure is in figures/scatter_*.png '
                    f"({len(singles)} files).</p>")

    # ---------------------------------------------------------------- quartiles
    if measure_cols:
        attrs = opt.quartile_attributes
        if attrs is None:
            attrs = [m for m in measure_cols if _group_of(m, groups) in ("attributes", "metadata")]
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
                w.figure(sec, F.quartile_plot(st.quartile_curves(df, a, VALUE), qt, a), f"quartiles_{_slug(a)}",
                         f"{esc(a)} by memorability quartile.")
            w.table(sec, pd.concat(qtabs, ignore_index=True), "quartiles", "Attribute means per memorability quartile.")

    # ---------------------------------------------------------------- left out
    sec = None
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

    # ---------------------------------------------------------------- provenance
    versions = package_versions()
    provenance = {"command": command or command_line(), "collection": f"{coll.name} ({coll.root})"}
    provenance.update({k: str(v) for k, v in (data.inputs or {}).items()})
    provenance["options"] = json.dumps({k: v for k, v in asdict(opt).items() if v is not None}, default=str)
    provenance["versions"] = ", ".join(f"{k} {v}" for k, v in versions.items())
    summary = _summary_html(df, n_total, categories, measure_cols, spearman, data)
    html_path = out / "report.html"
    html_path.write_text(w.html.render(summary, provenance), encoding="utf-8")
    info = {
        "title": title, "n_images": len(df), "n_collection": n_total, "categories": categories,
        "measures": measure_cols, "inputs": {k: str(v) for k, v in (data.inputs or {}).items()},
        "options": asdict(opt), "versions": versions, "command": provenance["command"],
        "files": [str(p.relative_to(out)) for p in w.written],
    }
    json_path = out / "report.json"
    json_path.write_text(json.dumps(info, indent=2, default=str) + "\n")
    return [html_path, json_path, *w.written]


def _summary_html(df, n_total, categories, measure_cols, spearman, data) -> str:
    from artmem.report.html import esc

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
                f"{esc(r.measure)} (rho {r.rho:+.2f}, p {r.p:.3g}, n {r.n})" for r in top.itertuples()) + ".")
        else:
            lines.append("No measure correlates significantly with memorability at this sample size.")
    if len(df) < 30:
        lines.append(f"With {len(df)} images, the statistics are illustrative only.")
    text = "".join(f"<li>{x}</li>" for x in lines)
    return f'<div class="summary">{html_cards}</div><ul>{text}</ul>'


def _parse_subset(spec: str, df: pd.DataFrame) -> pd.Series:
    if "=" not in spec:
        raise ArtmemError(f"--tsne-subset must look like column=value or column=a|b, got {spec!r}")
    col, values = spec.split("=", 1)
    col = col.strip()
    if col not in df.columns:
        raise ArtmemError(f"--tsne-subset: no column {col!r}")
    wanted = {v.strip() for v in values.split("|")}
    mask = df[col].astype(str).isin(wanted)
    if not mask.any():
        raise ArtmemError(f"--tsne-subset: no image has {col} in {sorted(wanted)}")
    return mask


def _tsne_section(w: _Writer, data: ReportData, df: pd.DataFrame, opt: ReportOptions, thumbs: _Thumbs) -> None:
    from artmem.analysis.embedding import tsne_embed, tsne_perplexity
    from artmem.report import figures as F
    from artmem.report.html import esc

    fs = data.features
    have = set(fs.paths)
    sub = df[df["path"].isin(have)]
    subset_txt = "all scored images with features"
    if opt.tsne_subset:
        sub = sub[_parse_subset(opt.tsne_subset, sub)]
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
    sec = w.html.section(
        f"t-SNE of {model} {layer} features",
        f"2-D t-SNE (perplexity {perp:.1f}, cosine distance) of {esc(model)} <code>{esc(layer)}</code> "
        f"features ({fs.dim}-d) for {n} images: {esc(subset_txt)} (Cetinic et al. 2019, Figure 4). "
        "Nearby images have similar features; the frame colour shows memorability.",
    )
    w.figure(sec, F.tsne_thumbnails(coords, small, sub[VALUE].to_numpy(dtype=float),
                                    title=f"t-SNE of {model} {layer} features (n = {n})"),
             "tsne", "t-SNE of the image features with thumbnails.")
    w.table(None, pd.DataFrame({"path": sub["path"].to_numpy(), "tsne_x": coords[:, 0], "tsne_y": coords[:, 1],
                                VALUE: sub[VALUE].to_numpy()}), "tsne")


def _map_rows(data: ReportData, top: pd.DataFrame, bottom: pd.DataFrame) -> list:
    """Rows of memorability-map overlays for the top/bottom images, when maps are available."""
    if data.maps is None or data.maps_dir is None or "overlay_png" not in data.maps.columns:
        return []
    from PIL import Image

    lookup = dict(zip(data.maps["path"].astype(str), data.maps["overlay_png"], strict=False))
    rows = []
    for title, frame in (("maps", top), ("maps", bottom)):
        items = []
        for p in frame["path"]:
            f = lookup.get(p)
            img = None
            if isinstance(f, str) and (data.maps_dir / f).exists():
                img = Image.open(data.maps_dir / f).convert("RGB")
                img.thumbnail((256, 256))
            items.append((img, "memorability map" if img is not None else ""))
        rows.append((title, items))
    if all(img is None for _, its in rows for img, _ in its):
        return []
    return rows


def load_report_data(
    collection,
    scores: str | Path | pd.DataFrame | None = None,
    features: str | Path | None = None,
    measures: str | Path | pd.DataFrame | None = None,
    maps: str | Path | None = None,
    predictions: list[str | Path] | tuple = (),
    score_column: str | None = None,
    model: str | None = None,
) -> ReportData:
    """Read the artefacts a report is made of (folders as written by the batch jobs, or tables).

    Args:
        collection: Collection, collection file or image folder.
        scores: a score job folder / scores table (or a DataFrame[path, score]).
        features: a feature job folder / features.parquet (enables the t-SNE section).
        measures: a measures folder / table (enables correlations and quartile plots).
        maps: a maps folder with maps.parquet (overlays shown under the top/bottom images).
        predictions: predictions tables whose p_<class> columns are added as attributes.
        score_column: use this numeric collection column as memorability instead of `scores`.
        model: the model that made the scores, for the report text (default: from job.json).
    """
    from artmem.analysis.jobs import read_measures
    from artmem.analysis.measures import add_attributes, measure_groups
    from artmem.data.collection import open_collection
    from artmem.scale.store import read_errors, read_features, read_scores

    coll = open_collection(collection)
    inputs: dict = {}
    errors: dict = {}
    if score_column is None and scores is None:
        raise ArtmemError("give --scores (a score job folder or table) or --score-column")
    if isinstance(scores, pd.DataFrame):
        score_df = scores
    elif scores is not None and score_column is None:
        score_df = read_scores(scores)
        inputs["scores"] = Path(scores)
        base = Path(scores) if Path(scores).is_dir() else Path(scores).parent
        job = base / "job.json"
        if job.exists():
            try:
                rec = json.loads(job.read_text())
                inputs["model"] = rec.get("model") or (rec.get("processor") or {}).get("model")
            except ValueError:
                pass
        try:
            errors["scores"] = read_errors(base)
        except ArtmemError:
            pass
    else:
        score_df = pd.DataFrame({"path": pd.Series([], dtype="str"), VALUE: pd.Series([], dtype="float64")})
    if model:
        inputs["model"] = model
    fs = None
    if features is not None:
        fs = read_features(features)
        inputs["features"] = f"{features} ({fs.meta.get('model')} {fs.meta.get('layer')}, {fs.dim}-d)"
    mdf, groups = None, {}
    if isinstance(measures, pd.DataFrame):
        mdf = measures
        groups = measure_groups([c for c in mdf.columns if c != "path"])
    elif measures is not None:
        mdf, info = read_measures(measures)
        groups = info.get("groups", {})
        inputs["measures"] = Path(measures)
        base = Path(measures) if Path(measures).is_dir() else Path(measures).parent
        if (base / "errors.parquet").exists():
            errors["measures"] = pd.read_parquet(base / "errors.parquet")
    if predictions:
        base = mdf if mdf is not None else pd.DataFrame({"path": coll.table["path"].astype(str)})
        mdf, added = add_attributes(base, None, predictions)
        groups = {**groups, "attributes": list(dict.fromkeys(groups.get("attributes", []) + added["attributes"]))}
        inputs["predictions"] = ", ".join(map(str, predictions))
    maps_df, maps_dir = None, None
    if maps is not None:
        mp = Path(maps)
        table = mp / "maps.parquet" if mp.is_dir() else mp
        if not table.exists():
            raise ArtmemError(f"{maps}: no maps.parquet")
        maps_df, maps_dir = pd.read_parquet(table), table.parent
        inputs["maps"] = mp
    return ReportData(coll, score_df, fs, mdf, groups, maps_df, maps_dir, errors, inputs, score_column)
