"""`artmem report` (statistics, figures, HTML from existing artefacts) and `artmem analyze` (all steps)."""

from __future__ import annotations

import argparse

from artmem.cliutils import (
    add_collection_arg,
    add_csv_arg,
    add_device_arg,
    add_out_arg,
    print_written,
)
from artmem.errors import ArtmemError


def _csv_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [x.strip() for x in text.split(",") if x.strip()]


def _add_report_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("report options")
    g.add_argument("--categories", metavar="COL[,COL]",
                   help="label columns to compare (default: every label column with 2-50 categories)")
    g.add_argument("--title", help="report title")
    g.add_argument("--top", type=int, default=5, help="images in the most/least memorable rows (default 5)")
    g.add_argument("--tsne-subset", metavar="COL=VALUE[|VALUE]",
                   help="t-SNE of this subset only, e.g. style=Color_Field_Painting")
    g.add_argument("--tsne-max", type=int, default=300, help="at most this many images in the t-SNE (default 300)")
    g.add_argument("--perplexity", type=float, default=30.0, help="t-SNE perplexity (lowered for small sets)")
    g.add_argument("--quartiles", metavar="COL[,COL]",
                   help="attributes for the quartile plots (default: classifier probabilities and numeric metadata)")
    g.add_argument("--scatter", metavar="COL[,COL]",
                   help="measures of the scatter panel (default: edge ratios, conv5 symmetry, first p_ column)")
    g.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    g.add_argument("--seed", type=int, default=0, help="seed of the t-SNE and of its sample (default 0)")
    g.add_argument("--figure-format", default="png", metavar="FMT[,FMT]",
                   help="figure file formats, any of png,svg,pdf (default png; PNG is always written "
                        "because the HTML embeds it)")
    g.add_argument("--dpi", type=int, default=200, help="resolution of the PNG figures (default 200)")


def _int_list(option: str, text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(g) for g in _csv_list(text))
    except ValueError:
        raise ArtmemError(f"{option} {text!r}: expected whole numbers, e.g. 3,5,8") from None


def command_from_args(args) -> str:
    """The command line that produced a report: sys.argv when run as `artmem`, else rebuilt from
    the parsed arguments (e.g. when `main([...])` is called from Python)."""
    import shlex
    import sys
    from pathlib import Path

    from artmem.report.html import command_line

    if sys.argv and Path(sys.argv[0]).name == "artmem":
        return command_line(sys.argv)
    sources = args.collection if isinstance(args.collection, list) else [args.collection]
    parts = ["artmem", args.command, *(shlex.quote(str(s)) for s in sources)]
    skip = {"func", "command", "debug", "quiet", "collection"}
    for key, value in vars(args).items():
        if key in skip or value is None or value is False or value == []:
            continue
        flag = "--" + key.replace("_", "-")
        if key == "out":
            flag = "-o"
        if value is True:
            parts.append(flag)
        else:
            for v in value if isinstance(value, list) else [value]:
                parts += [flag, shlex.quote(str(v))]
    return " ".join(parts)


def _options(args):
    from artmem.errors import ArtmemError
    from artmem.report.data import ReportOptions
    from artmem.report.figures import parse_formats

    if args.dpi < 20 or args.dpi > 1200:
        raise ArtmemError(f"--dpi must be between 20 and 1200, got {args.dpi}")
    return ReportOptions(
        categories=_csv_list(args.categories),
        title=args.title,
        top_k=args.top,
        tsne_subset=args.tsne_subset,
        tsne_max=args.tsne_max,
        tsne_perplexity=args.perplexity,
        quartile_attributes=_csv_list(args.quartiles),
        scatter_measures=_csv_list(args.scatter),
        alpha=args.alpha,
        seed=args.seed,
        figure_formats=parse_formats(args.figure_format),
        dpi=args.dpi,
        maps_device=getattr(args, "device", "auto"),
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="statistics, figures and a self-contained HTML report from scores (+ features, measures)",
        description=(
            "Per-category statistics, box plots, t-test matrix, top/bottom images, t-SNE with "
            "thumbnails, Spearman correlations with every measure, scatter plots, the hue wheel and "
            "quartile plots, written as OUT/report.html (figures embedded), OUT/figures/*.png and "
            "OUT/tables/*.csv."
        ),
    )
    add_collection_arg(p)
    p.add_argument("--scores", help="score job folder or scores table (from `artmem score`)")
    p.add_argument("--score-column", help="use this numeric collection column as memorability instead")
    p.add_argument("--features", help="feature job folder (from `artmem extract`) for the t-SNE")
    p.add_argument("--measures", help="measures folder or table (from `artmem measures`)")
    p.add_argument("--maps", help="maps folder with maps.parquet (overlays under the top/bottom images; "
                                  "the few missing ones are computed with the maps' model)")
    p.add_argument("--predictions", action="append", default=[], metavar="TABLE_OR_RUN",
                   help="predictions table whose p_<class> columns are attributes; repeatable")
    add_out_arg(p)
    add_device_arg(p)
    _add_report_options(p)
    p.set_defaults(func=cmd_report)

    a = sub.add_parser(
        "analyze",
        help="score, extract features, measure, (map) and report a collection in one go (resumes)",
        description=(
            "Runs the whole study of Cetinic et al. (2019) on a collection and writes the analysis "
            "folder: OUT/scores, OUT/features, OUT/measures, OUT/maps (when the maps module is "
            "installed), OUT/report/report.html. Artefacts already in OUT are reused."
        ),
    )
    add_collection_arg(a)
    add_out_arg(a)
    a.add_argument("--model", default="resmem", help="memorability model (default resmem)")
    a.add_argument("--feature-model", help="model for the t-SNE features (default: --model)")
    a.add_argument("--layer", help="feature layer (default: the model's default layer, fc7 for resmem)")
    a.add_argument("--predictions", action="append", default=[], metavar="TABLE_OR_RUN",
                   help="predictions table whose p_<class> columns are attributes; repeatable")
    a.add_argument("--no-features", action="store_true", help="skip features and the t-SNE")
    a.add_argument("--no-measures", action="store_true", help="skip the image measures")
    a.add_argument("--no-symmetry", action="store_true", help="measures without the CNN symmetry")
    a.add_argument("--hue-mode", choices=("chromatic", "paper"), default="chromatic",
                   help="hue histogram: chromatic (greys left out, default) or paper (every pixel, "
                   "Cetinic 2019); see `artmem measures --help`")
    a.add_argument("--no-maps", action="store_true", help="skip memorability maps of the top/bottom images")
    a.add_argument("--map-grids", metavar="N[,N]", help="map scales: windows along the shorter side (default 3,5,8)")
    a.add_argument("--batch-size", type=int, default=None, help="batch size of the model runs")
    a.add_argument("--workers", type=int, default=None, help="worker processes")
    a.add_argument("--no-resume", action="store_true", help="recompute artefacts already in OUT")
    add_device_arg(a)
    add_csv_arg(a)
    _add_report_options(a)
    a.set_defaults(func=cmd_analyze)


def cmd_report(args) -> int:
    from artmem.report.build import build_report
    from artmem.report.data import load_report_data

    options = _options(args)  # a bad option fails before anything is read
    data = load_report_data(
        args.collection, scores=args.scores, features=args.features, measures=args.measures,
        maps=args.maps, predictions=args.predictions, score_column=args.score_column,
    )
    print_written(build_report(data, args.out, options, command=command_from_args(args)))
    return 0


def cmd_analyze(args) -> int:
    from artmem.report.analyze import analyze

    written = analyze(
        args.collection, args.out, model=args.model, feature_model=args.feature_model, layer=args.layer,
        device=args.device, options=_options(args), predictions=args.predictions,
        features=not args.no_features, measures=not args.no_measures, symmetry=not args.no_symmetry,
        hue_mode=args.hue_mode,
        maps=not args.no_maps, map_grids=_int_list("--map-grids", args.map_grids),
        batch_size=args.batch_size, workers=args.workers,
        resume=not args.no_resume, csv=args.csv, command=command_from_args(args),
    )
    print_written(written)
    return 0
