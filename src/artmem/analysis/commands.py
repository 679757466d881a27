"""`artmem measures`: composition, symmetry, colour and attribute measures per image."""

from __future__ import annotations

import argparse

from artmem.cliutils import (
    add_collection_arg,
    add_csv_arg,
    add_device_arg,
    add_out_arg,
    print_written,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "measures",
        help="per-image measures: edge ratios, CNN symmetry, hue histogram, classifier attributes",
        description=(
            "Compute one row of measures per image: Sobel horizontal/vertical edge ratios, "
            "left-right symmetry from CNN filters (Brachmann & Redies; conv1 17x17 grid and "
            "conv5 patch 6), the 12-bin hue histogram and colour statistics, plus p_<class> "
            "probabilities of classifier predictions and numeric metadata columns. "
            "Writes OUT/measures.parquet, OUT/measures.json and OUT/errors.parquet."
        ),
    )
    add_collection_arg(p)
    add_out_arg(p)
    p.add_argument("--predictions", action="append", default=[], metavar="TABLE_OR_RUN",
                   help="predictions table (or run folder) whose p_<class> columns become attributes; repeatable")
    p.add_argument("--no-edges", action="store_true", help="skip the edge ratios")
    p.add_argument("--no-symmetry", action="store_true", help="skip the CNN symmetry measures")
    p.add_argument("--no-color", action="store_true", help="skip the hue histogram and colour statistics")
    p.add_argument("--edge-threshold", type=float, default=0.1,
                   help="gradient magnitude (0-1 intensity) of an edge pixel (default 0.1)")
    p.add_argument("--edge-tolerance", type=float, default=22.5,
                   help="degrees from an axis within which a gradient counts as horizontal/vertical (default 22.5)")
    p.add_argument("--hue-mode", choices=("chromatic", "paper"), default="chromatic",
                   help="chromatic: greys (chroma < --min-chroma) left out of the hue histogram; "
                   "paper: the plain 12-bin histogram of every pixel (Cetinic 2019). Default chromatic")
    p.add_argument("--min-chroma", type=float, default=0.05,
                   help="chroma max(RGB) - min(RGB) below which a pixel is grey (default 0.05)")
    p.add_argument("--symmetry-model", default="resmem_alexnet",
                   help="model whose AlexNet-like conv1..conv5 filters measure symmetry (default resmem_alexnet)")
    p.add_argument("--workers", type=int, default=None,
                   help="decoding processes, which also compute edges and colour (default: engine's choice)")
    p.add_argument("--batch-size", type=int, default=8, help="images per symmetry forward pass (default 8)")
    p.add_argument("--shard-size", type=int, default=256, help="images per shard, the unit of resume (default 256)")
    p.add_argument("--no-resume", action="store_true", help="recompute everything in OUT")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this machine; ray: Ray Data actors (extra `scale`)")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (engine ray; default: local Ray)")
    p.add_argument("--actors", type=int, default=None, help="actors (engine ray)")
    add_device_arg(p)
    add_csv_arg(p)
    p.set_defaults(func=cmd_measures)


def cmd_measures(args) -> int:
    from artmem.analysis.jobs import run_measures
    from artmem.analysis.measures import MeasureConfig

    config = MeasureConfig(
        edges=not args.no_edges,
        edge_threshold=args.edge_threshold,
        edge_tolerance_deg=args.edge_tolerance,
        color=not args.no_color,
        hue_mode=args.hue_mode,
        min_chroma=args.min_chroma,
        symmetry=not args.no_symmetry,
        symmetry_model=args.symmetry_model,
    )
    opts = {}
    if args.engine == "ray":
        if args.ray_address:
            opts["address"] = args.ray_address
        if args.actors:
            opts["actors"] = args.actors
    _, _, written = run_measures(
        args.collection, args.out, config=config, predictions=args.predictions, device=args.device,
        batch_size=args.batch_size, num_workers=args.workers, shard_size=args.shard_size,
        resume=not args.no_resume, csv=args.csv, engine=args.engine, **opts,
    )
    print_written(written)
    return 0
