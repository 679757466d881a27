"""What a report is made of: its options, the loaded artefacts (collection, scores, features,
measures, maps) and the one table of scored images every section reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from artmem.errors import ArtmemError

VALUE = "score"
# default measures of the Figure-5 scatter panel, and of the quartile plots without attributes
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
        figure_formats: file formats of every figure ("png", "svg", "pdf"); PNG is always written
            (the HTML embeds it).
        dpi: resolution of the PNG figures.
        maps_device: torch device for the few memorability maps the top/bottom grid lacks.
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
    figure_formats: tuple[str, ...] = ("png",)
    dpi: int = 200
    maps_device: str = "auto"


@dataclass
class ReportData:
    """Everything the report reads, already loaded."""

    collection: object  # artmem.data.collection.Collection
    scores: pd.DataFrame
    features: object | None = None  # artmem.batch.results.FeatureSet
    measures: pd.DataFrame | None = None
    measure_groups: dict = field(default_factory=dict)
    maps: pd.DataFrame | None = None
    maps_dir: Path | None = None
    errors: dict = field(default_factory=dict)  # {"scores": df, "measures": df}
    inputs: dict = field(default_factory=dict)  # provenance: {"scores": path, ...}
    score_column: str | None = None


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
    from artmem.batch.results import (
        job_folder,
        read_errors,
        read_features,
        read_job_record,
        read_scores,
    )
    from artmem.data.collection import open_collection

    coll = open_collection(collection)
    inputs: dict = {}
    errors: dict = {}
    if score_column is None and scores is None:
        raise ArtmemError("give --scores (a score job folder or table) or --score-column")
    if isinstance(scores, pd.DataFrame):
        score_df = scores
    elif scores is not None and score_column is None:
        score_df = read_scores(scores, columns=[])  # path and score only, merged file or shard dataset
        inputs["scores"] = scores if "://" in str(scores) else Path(scores)
        base = job_folder(scores)
        job = read_job_record(base)
        if job is not None:
            inputs["model"] = job.model
            inputs["precision"] = job.processor.get("precision", "fp32")
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
        # which hue histogram the measures hold (chromatic or paper; see artmem.analysis.color)
        inputs["hue_mode"] = info.get("config", {}).get("hue_mode", "unrecorded")
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


def parse_subset(spec: str, df: pd.DataFrame) -> pd.Series:
    """Rows of `df` matching a `column=value` or `column=a|b` spec."""
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
