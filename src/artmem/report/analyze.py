"""`analyze`: the whole study on a collection in one call, in the standard analysis-folder layout.

    OUT/scores/      memorability scores (artmem score)
    OUT/features/    feature vectors for the t-SNE (artmem extract)
    OUT/measures/    image measures (artmem measures)
    OUT/maps/        memorability maps of the most/least memorable images (when available)
    OUT/report/      report.html, figures/, tables/

Every step resumes: finished artefacts in OUT are reused, interrupted batch jobs continue.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pandas as pd

from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)


def _covers(folder: Path, kind: str, paths: set[str]) -> bool:
    """Whether a finished job's table (merged file or shard dataset, plus its errors) accounts for
    every path of the collection; only the path column is read."""
    from artmem.batch.results import has_results, open_dataset, read_errors

    if not has_results(folder, kind):
        return False
    have = set(map(str, open_dataset(folder, kind).to_table(columns=["path"]).column("path").to_pylist()))
    have |= set(read_errors(folder)["path"])
    return paths <= have


def _same_precision(folder: Path, precision: str) -> bool:
    """Whether a finished job folder was computed in `precision` ("auto" accepts either); a
    mismatch sends the step to the batch job, which refuses to mix precisions in one table."""
    import json

    f = folder / "job.json"
    if precision == "auto" or not f.exists():
        return True
    return json.loads(f.read_text()).get("precision", "fp32") == precision


def _features_meta(folder: Path) -> dict:
    import json

    f = folder / "features.json"
    return json.loads(f.read_text()) if f.exists() else {}


def run_scores_and_features(
    coll, out: Path, model: str, feature_model: str | None, layer: str | None, features: bool,
    device: str, batch_size: int | None, workers: int | None, resume: bool, csv: bool,
    precision: str = "fp32",
) -> list[Path]:
    """OUT/scores (and OUT/features): reused when complete, else computed (one pass when the
    score model also gives the features)."""
    from artmem.batch.api import model_processor, run_job
    from artmem.batch.results import write_errors, write_scores

    score_dir, feat_dir = out / "scores", out / "features"
    paths = set(coll.paths)
    fmodel = feature_model or model
    have_scores = resume and _covers(score_dir, "scores", paths) \
        and _same_precision(score_dir, precision)
    meta = _features_meta(feat_dir)
    want_layer = layer
    have_feats = (not features) or (
        resume and _covers(feat_dir, "features", paths)
        and _same_precision(feat_dir, precision) and meta.get("model") == fmodel and (want_layer is None or meta.get("layer") == want_layer)
    )
    if have_scores and have_feats:
        logger.info("analyze: reusing %s%s", score_dir, f" and {feat_dir}" if features else "")
        return []
    opts = {"device": device, "num_workers": workers, "resume": resume, "csv": csv}
    if batch_size:
        opts["batch_size"] = batch_size
    written: list[Path] = []
    if features and not have_feats and fmodel == model and not have_scores:
        # one forward pass gives both (as the scale demo step does)
        proc = model_processor(coll, model, "features", layer=layer, with_score=True, precision=precision)
        result = run_job(coll, proc, feat_dir, **opts)
        (feat_dir / "scores.parquet").unlink(missing_ok=True)
        written += [p for p in result.written if p.name != "scores.parquet"]
        written += write_scores(score_dir, result.table[["path", "score"]], csv=csv)
        written += write_errors(score_dir, result.errors, csv=csv)
        shutil.copyfile(feat_dir / "job.json", score_dir / "job.json")  # model and precision of the scores
        return written
    if not have_scores:
        result = run_job(coll, model_processor(coll, model, "scores", precision=precision), score_dir, **opts)
        written += result.written
    if features and not have_feats:
        result = run_job(coll, model_processor(coll, fmodel, "features", layer=layer, precision=precision), feat_dir,
                         **opts)
        written += result.written
    return written


# The report shows each map as a 256-px thumbnail under its image: the analysis computes maps at
# that size and at the scales whose window step is still visible there (3 and 5 windows: a step
# of 28 and 23 thumbnail px), skipping the 8-window scale that costs as much as the other two
# together (bench/memmap.py) and adds detail finer than the thumbnail shows.
# `artmem memorability map` keeps the paper's 3,5,8.
ANALYZE_MAP_GRIDS = (3, 5)
ANALYZE_MAP_SIZE = 256


def run_maps(coll, out: Path, scores: pd.DataFrame, model: str, device: str, top_k: int,
             grids: tuple[int, ...] | None, renderings: bool, precision: str = "fp32") -> list[Path]:
    """Memorability maps of the top/bottom `top_k` images into OUT/maps (images already mapped
    there are kept), at the report's display size (`ANALYZE_MAP_GRIDS` unless `grids`)."""
    from artmem.memorability.maps import MapConfig, map_images

    ranked = scores.sort_values("score", ascending=False)
    picked = list(dict.fromkeys(ranked["path"].head(top_k).tolist() + ranked["path"].tail(top_k).tolist()))
    maps_dir = out / "maps"
    existing: list[str] = []
    if (maps_dir / "maps.parquet").exists():
        existing = pd.read_parquet(maps_dir / "maps.parquet", columns=["path"])["path"].astype(str).tolist()
        if set(picked) <= set(existing):
            logger.info("analyze: reusing %s", maps_dir)
            return []
    names = list(dict.fromkeys(existing + picked))
    valid = set(coll.paths)
    items = [(p, coll.abs_path(p)) for p in names if p in valid]
    config = MapConfig(grids=tuple(grids or ANALYZE_MAP_GRIDS), map_size=ANALYZE_MAP_SIZE)
    written, _ = map_images(items, maps_dir, model=model, device=device, config=config, renderings=renderings,
                            precision=precision)
    return written


def analyze(
    collection,
    out: str | Path,
    model: str = "resmem",
    feature_model: str | None = None,
    layer: str | None = None,
    device: str = "auto",
    options=None,
    predictions: list[str | Path] | tuple = (),
    features: bool = True,
    measures: bool = True,
    symmetry: bool = True,
    hue_mode: str = "chromatic",
    maps: bool = True,
    map_grids: tuple[int, ...] | None = None,
    map_renderings: bool = False,
    map_top: int | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    resume: bool = True,
    csv: bool = False,
    command: str | None = None,
    precision: str = "fp32",
) -> list[Path]:
    """Score, extract features, measure, map the top/bottom images and write the report.

    `map_top`: maps for this many most and least memorable images (default: the report's top_k).
    `precision`: of every model pass on CPU (scores, features, symmetry, maps): "fp32", "int8"
    (calibrated on a sample of the collection) or "auto"; recorded in each job.json and the report.
    Returns the written paths (the report first).
    """
    from artmem.analysis.jobs import run_measures
    from artmem.analysis.measures import MeasureConfig
    from artmem.batch.results import has_results, read_scores
    from artmem.data.collection import open_collection
    from artmem.io import ensure_out_dir
    from artmem.report.build import build_report
    from artmem.report.data import ReportOptions, load_report_data

    coll = open_collection(collection)
    options = options or ReportOptions()
    check_analyze_args(coll, options, model=model, feature_model=feature_model, layer=layer,
                       features=features, predictions=predictions, map_grids=map_grids,
                       batch_size=batch_size, workers=workers, device=device)
    out = ensure_out_dir(out)
    written: list[Path] = []
    logger.info("analyze: [1/4] memorability scores%s", " and features" if features else "")
    written += run_scores_and_features(coll, out, model, feature_model, layer, features, device,
                                       batch_size, workers, resume, csv, precision)
    scores = read_scores(out / "scores")
    if measures:
        logger.info("analyze: [2/4] image measures")
        mdir = out / "measures"
        config = MeasureConfig(symmetry=symmetry, hue_mode=hue_mode)
        if resume and _covers(mdir, "measures", set(coll.paths)) \
                and _same_measures(mdir, config):
            logger.info("analyze: reusing %s", mdir)
        else:  # classifier predictions are joined in the report, so these measures stay reusable
            _, _, w = run_measures(coll, mdir, config, (), device=device, num_workers=workers,
                                   resume=resume, csv=csv, progress=True, precision=precision)
            written += w
    maps_dir = None
    if maps and len(scores):
        logger.info("analyze: [3/4] memorability maps of the most and least memorable images")
        written += run_maps(coll, out, scores, model, device, map_top or options.top_k, map_grids,
                            map_renderings, precision)
        if (out / "maps" / "maps.parquet").exists():
            maps_dir = out / "maps"
    logger.info("analyze: [4/4] report")
    data = load_report_data(
        coll, scores=out / "scores",
        features=out / "features" if features and has_results(out / "features", "features") else None,
        measures=out / "measures" if measures else None,
        maps=maps_dir, predictions=predictions, model=model,
    )
    report = build_report(data, out / "report", options, command=command)
    return report + written


def check_analyze_args(coll, options, model: str, feature_model: str | None, layer: str | None,
                       features: bool, predictions, map_grids, batch_size, workers, device: str) -> None:
    """Every argument of `analyze`, checked before any compute: the report options against the
    collection's columns first (no model import), then the models and the layer."""
    from artmem.cliutils import check_device

    if len(coll) == 0:
        raise ArtmemError("the collection is empty")
    columns = [c for c in coll.table.columns if c != "path"]
    for c in options.categories or []:
        if c not in coll.table.columns:
            raise ArtmemError(f"--categories: the collection has no column {c!r} "
                              f"(columns: {', '.join(columns) or 'none'})")
    if options.tsne_subset:
        if not features:
            raise ArtmemError("--tsne-subset needs the features (drop --no-features)")
        from artmem.report.data import parse_subset

        parse_subset(options.tsne_subset, coll.table)
    for name, value, ok, rule in (
        ("--top", options.top_k, options.top_k >= 1, ">= 1"),
        ("--tsne-max", options.tsne_max, options.tsne_max >= 2, ">= 2"),
        ("--perplexity", options.tsne_perplexity, options.tsne_perplexity > 0, "> 0"),
        ("--alpha", options.alpha, 0 < options.alpha < 1, "between 0 and 1"),
        ("--batch-size", batch_size, batch_size is None or batch_size >= 1, ">= 1"),
        ("--workers", workers, workers is None or workers >= 0, ">= 0"),
    ):
        if not ok:
            raise ArtmemError(f"{name} {value}: must be {rule}")
    if map_grids is not None and (not map_grids or min(map_grids) < 1):
        raise ArtmemError(f"--map-grids {map_grids}: windows per side must be >= 1")
    for table in predictions or ():
        if not Path(table).exists():
            raise ArtmemError(f"--predictions {table}: no such file or folder")
    check_device(device)
    from artmem.batch.processors import ModelProcessor  # imports torch: after the cheap checks

    ModelProcessor(model, "scores").spec()
    if features:
        ModelProcessor(feature_model or model, "features", layer=layer).spec()


def _same_measures(mdir: Path, config) -> bool:
    import json

    f = mdir / "measures.json"
    if not f.exists():
        return False
    return json.loads(f.read_text()).get("config") == config.to_dict()
