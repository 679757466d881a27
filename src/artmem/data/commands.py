"""`artmem collection ...` (import, check, profile, cache, split, info) and `artmem demo ...` (build, run)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from artmem.cliutils import (
    RATIOS_HELP,
    add_collection_arg,
    add_csv_arg,
    add_device_arg,
    add_out_arg,
    add_ratios_arg,
    parse_ratios,
    print_written,
)

logger = logging.getLogger(__name__)

FORMATS = ("wikiart", "wga", "pandora", "lamem", "memcat", "folder", "csv")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {value})")
    return value


def register(subparsers) -> None:
    coll = subparsers.add_parser("collection", help="import, check, profile, split and cache image collections",
                                 description="Collections: read dataset formats, check images, profile sizes, "
                                             "make splits and the resized-image cache.")
    sub = coll.add_subparsers(dest="collection_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("import", help="read a dataset in its own format and write OUT/collection.parquet",
                       description="Read a dataset as it is on disk. Rows whose file is missing are left out "
                                   "and listed in OUT/errors.parquet.")
    p.add_argument("--format", required=True, choices=FORMATS, help="dataset format")
    p.add_argument("source", help="dataset folder or file (csv: the CSV file; wga: catalog.csv; memcat: the CSV or its folder)")
    add_out_arg(p)
    add_csv_arg(p)
    p.add_argument("--root", help="image folder the paths are relative to (csv, wga, memcat, lamem, wikiart)")
    p.add_argument("--allow-outside-root", action="store_true",
                   help="csv: keep rows whose path leads outside --root (`..`, a symlink out); refused by "
                   "default, as the web explorer refuses to serve them")
    p.add_argument("--path-column", default="path", help="csv: column with the image path (default: path)")
    p.add_argument("--label-columns", help="csv: comma-separated columns to keep (default: all)")
    p.add_argument("--sep", help="csv: field separator (default: sniffed)")
    p.add_argument("--encoding", help="csv/wga: file encoding (default: UTF-8, else ISO-8859-1)")
    p.add_argument("--levels", help="folder: comma-separated names of the folder levels (e.g. style,artist)")
    p.add_argument("--labels", help="wikiart: folder with the CSV and class files (default: SOURCE/wikiart_csv)")
    p.add_argument("--form", default=None, help="wga: FORM values to keep, comma-separated, or 'all' (default: painting)")
    p.add_argument("--split-id", type=int, default=None, choices=range(1, 6), metavar="1..5",
                   help="lamem: which of the five split sets (default: 1)")
    p.add_argument("--score", choices=("fa", "no-fa"), default=None,
                   help="memcat: FA-corrected (default) or raw hit-rate memorability as `score`")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("check", help="decode every image and list the unreadable ones",
                       description="Try to load every image (in parallel). Exit 0 even when some fail, "
                                   "unless --strict.")
    add_collection_arg(p)
    add_out_arg(p, default="")
    add_csv_arg(p)
    p.add_argument("--strict", action="store_true", help="exit 1 when any image is unreadable")
    p.add_argument("--max-pixels", type=_positive_int, help="decompression-bomb limit in pixels (default 89,478,485)")
    p.add_argument("--workers", type=int, help="decoding processes (default: all cores)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("profile", help="image-size profile (scatter, histograms, summary) and label counts")
    add_collection_arg(p)
    add_out_arg(p)
    add_csv_arg(p)
    p.add_argument("--workers", type=int, help="processes for header reading (default: all cores)")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("cache", help="build/update the resized-image cache (uint8 memmap + index)",
                       description="Decode every image once into a memory-mapped uint8 array; unchanged "
                                   "files are reused on later runs.")
    add_collection_arg(p)
    add_out_arg(p)
    p.add_argument("--size", type=_positive_int, default=256, help="side of the cached square images (default 256)")
    p.add_argument("--resize", choices=("squash", "crop"), default="squash",
                   help="squash to a square (default, as the papers) or shorter side + centre crop")
    p.add_argument("--workers", type=int, help="decoding processes (default: all cores)")
    p.add_argument("--max-pixels", type=_positive_int, help="decompression-bomb limit in pixels")
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser("split", help="keep classes with >= N images and add a stratified train/val/test split",
                       description="Cetinic 2018 subsets: classes with at least --min-count images (optionally "
                                   "capped), split 70/10/20 keeping class proportions, reproducible by --seed.")
    add_collection_arg(p)
    add_out_arg(p)
    add_csv_arg(p)
    p.add_argument("--label", required=True, help="class column (e.g. style)")
    p.add_argument("--min-count", type=_positive_int, default=1, help="drop classes with fewer images (default 1)")
    p.add_argument("--max-per-class", type=_positive_int, help="cap images per class (seeded sample)")
    add_ratios_arg(p, default="70/10/20", help=RATIOS_HELP + " (default 70/10/20)")
    p.add_argument("--folds", type=int, help="also add a stratified `fold` column with this many folds")
    p.add_argument("--seed", type=int, default=0, help="seed of the class sample and the split (default 0)")
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("info", help="print a collection's size, root and columns")
    add_collection_arg(p)
    p.set_defaults(func=cmd_info)

    demo = subparsers.add_parser("demo", help="build and run the demo on images bundled in packages")
    dsub = demo.add_subparsers(dest="demo_command", metavar="SUBCOMMAND", required=True)
    p = dsub.add_parser("build", help="assemble the demo collection (Raphael copies + package photos)")
    add_out_arg(p, default="demo_data")
    p.set_defaults(func=cmd_demo_build)
    p = dsub.add_parser("run", help="run every demo step and print where the outputs are")
    add_collection_arg(p)
    add_out_arg(p, default="out/demo")
    add_device_arg(p)
    p.set_defaults(func=cmd_demo_run)


def _write_errors(errors, out: Path, csv: bool) -> list[Path]:
    from artmem.io import write_table

    return write_table(errors, out, "errors", csv=csv)


def cmd_import(args) -> int:
    from artmem.data.check import summarise_errors
    from artmem.data.readers import import_collection
    from artmem.io import ensure_out_dir

    options = {"root": args.root}
    if args.format == "csv":
        options.update(path_column=args.path_column, label_columns=args.label_columns, sep=args.sep,
                       encoding=args.encoding, allow_outside_root=args.allow_outside_root)
    elif args.format == "folder":
        options.update(levels=args.levels)
    elif args.format == "wikiart":
        options.update(labels=args.labels)
    elif args.format == "wga":
        options.update(form=args.form, encoding=args.encoding)
    elif args.format == "lamem":
        options.update(split_id=args.split_id)
    elif args.format == "memcat":
        options.update(score=args.score)
    if args.format in ("folder", "pandora") and args.root:
        logger.warning("--root is ignored for --format %s (SOURCE is the image folder)", args.format)
    result = import_collection(args.format, args.source, **options)
    out = ensure_out_dir(args.out)
    written = result.collection.save(out, csv=args.csv)
    written += _write_errors(result.errors, out, args.csv)
    cols = ", ".join(c for c in result.collection.table.columns if c != "path")
    logger.info("imported %d images (%s) with columns: %s", len(result.collection), args.format, cols)
    if len(result.errors):
        summarise_errors(result.errors, len(result.collection) + len(result.errors), "rows")
    print_written(written)
    return 0


def cmd_check(args) -> int:
    from artmem.data.check import check_collection, errors_of, summarise_errors
    from artmem.io import ensure_out_dir, write_table

    table = check_collection(args.collection, workers=args.workers, max_pixels=args.max_pixels)
    errors = errors_of(table)
    summarise_errors(errors, len(table))
    if args.out:
        out = ensure_out_dir(args.out)
        written = write_table(table, out, "check", csv=args.csv) + write_table(errors, out, "errors", csv=args.csv)
        print_written(written)
    elif len(errors):
        for path, reason in errors.itertuples(index=False):
            print(f"{path}\t{reason}")
    if args.strict and len(errors):
        print(f"artmem collection check: {len(errors)} of {len(table)} images unreadable (--strict)", file=sys.stderr)
        return 1
    return 0


def cmd_profile(args) -> int:
    from artmem.data.profile import profile_collection

    print_written(profile_collection(args.collection, args.out, csv=args.csv, workers=args.workers))
    return 0


def cmd_cache(args) -> int:
    from artmem.data.cache import build_cache
    from artmem.data.check import summarise_errors
    from artmem.data.images import set_max_image_pixels

    if args.max_pixels:
        set_max_image_pixels(args.max_pixels)
    cache = build_cache(args.collection, args.out, size=args.size, workers=args.workers, resize=args.resize)
    written = cache.files
    errors = cache.errors
    if len(errors):
        summarise_errors(errors, len(cache))
    written += _write_errors(errors, Path(args.out), False)
    print_written(written)
    return 0


def cmd_split(args) -> int:
    from artmem.data.collection import open_collection
    from artmem.data.splits import filter_classes, kfold_assign, split_counts, stratified_split
    from artmem.io import ensure_out_dir, write_table

    coll = open_collection(args.collection)
    sub = filter_classes(coll, args.label, min_count=args.min_count, max_per_class=args.max_per_class, seed=args.seed)
    sub = stratified_split(sub, args.label, ratios=parse_ratios(args.ratios), seed=args.seed)
    if args.folds:
        sub = kfold_assign(sub, k=args.folds, label=args.label, seed=args.seed)
    out = ensure_out_dir(args.out)
    written = sub.save(out, csv=args.csv)
    counts = split_counts(sub, args.label).reset_index().rename(columns={args.label: "class"})
    written += write_table(counts, out, "split_counts", csv=True)
    logger.info("%d images in %d classes of %s: %s", len(sub), len(counts), args.label,
                ", ".join(f"{s} {int(counts[s].sum())}" for s in ("train", "val", "test") if s in counts))
    print_written(written)
    return 0


def cmd_info(args) -> int:
    from artmem.data.collection import open_collection

    coll = open_collection(args.collection)
    print(f"name: {coll.name}\nroot: {coll.root}\nimages: {len(coll)}")
    for col in coll.table.columns:
        if col == "path":
            continue
        s = coll.table[col]
        print(f"column {col}: {s.dtype}, {s.nunique()} distinct, {int(s.isna().sum())} missing")
    return 0


def cmd_demo_build(args) -> int:
    from artmem.data.demo_collection import build_demo_collection

    written = build_demo_collection(args.out)
    print_written(written[:3])  # the collection files; the copied images are listed in the table
    return 0


def cmd_demo_run(args) -> int:
    from artmem.demo import run_demo

    results = run_demo(args.collection, args.out, device=args.device)
    for title, paths in results.items():
        print(f"# {title}", file=sys.stderr)
        print_written(paths)
    print(f"# all outputs are under {Path(args.out).resolve()}", file=sys.stderr)
    return 0
