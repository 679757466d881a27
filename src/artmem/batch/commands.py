"""`artmem score` and `artmem extract`: batch jobs over a whole collection, sharded and resumable."""

from __future__ import annotations

import argparse
import logging
import sys

from artmem.cliutils import (
    add_collection_arg,
    add_csv_arg,
    add_device_arg,
    add_out_arg,
    add_precision_arg,
    print_written,
)

logger = logging.getLogger(__name__)


def _add_job_args(p: argparse.ArgumentParser, out_optional: bool = False) -> None:
    add_collection_arg(p)
    add_out_arg(p, optional=out_optional,
                help="output folder or fsspec URL (s3://bucket/prefix, gs://..., file://...; created; "
                "resumable)" + (
                    "; without it the scores are printed, path and score per line" if out_optional else ""))
    add_device_arg(p)
    add_csv_arg(p)
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    p.add_argument("--workers", type=int, default=None,
                   help="image-decoding worker processes (default: cores - 1, at most 4; 0 = none)")
    p.add_argument("--threads", type=int, default=None,
                   help="compute threads for the model (default: all cores; lower it on a shared machine)")
    p.add_argument("--shard-size", type=int, default=256,
                   help="images per result shard; a killed job loses at most the shard in flight (default 256)")
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="start over instead of skipping images already done in OUT")
    p.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                   help="auto: ONNX Runtime on CPU where the model supports it (faster, same scores "
                   "within 1e-5; exported once, about a minute) for 16 images or more, else PyTorch")
    add_precision_arg(p)
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this machine with DataLoader workers; ray: Ray Data actors")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (engine ray; default: local Ray)")
    p.add_argument("--actors", type=int, default=None, help="model actors (engine ray)")
    p.add_argument("--cpus-per-actor", type=float, default=None,
                   help="CPUs reserved per model actor (engine ray; default 1, fractional on small machines)")
    p.add_argument("--gpus-per-actor", type=float, default=0.0,
                   help="GPUs per model actor (engine ray; fractions share a GPU; default: 1 on a GPU cluster "
                   "with --device auto/cuda, else 0)")
    p.add_argument("--merge", dest="merge", action="store_true", default=None,
                   help="also merge the shards into one OUT/<kind>.parquet (default: only up to 1,000,000 rows "
                   "and 1 GiB of column data)")
    p.add_argument("--no-merge", dest="merge", action="store_false",
                   help="leave the results as a dataset of Parquet shards (OUT/<kind>.dataset.json), which "
                   "every artmem reader takes; the default above the --merge limits")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "score",
        help="memorability score of images (printed, or OUT/scores.parquet with -o)",
        description="Score images with a memorability model: `artmem score photo.jpg` prints the "
        "path and score of each image; with -o OUT it writes OUT/scores.parquet (path, score) and "
        "OUT/errors.parquet (path, reason) instead, in shards that a rerun resumes.",
    )
    _add_job_args(p, out_optional=True)
    p.add_argument("--model", default="resmem",
                   help="registry name (`artmem models`) or a trained checkpoint/run folder (default resmem)")
    p.set_defaults(func=run_score)

    p = subparsers.add_parser(
        "extract",
        help="feature vectors of one layer for every image (OUT/features.parquet)",
        description="Extract one named layer's activations (pooled to a vector) for every image. Writes "
        "OUT/features.parquet (path, embedding), OUT/features.json and OUT/errors.parquet; resumable.",
    )
    _add_job_args(p)
    p.add_argument("--model", default="resmem", help="registry name or trained checkpoint (default resmem)")
    p.add_argument("--layer", default=None,
                   help="feature layer (default: the model's default, e.g. fc7 for resmem; see `artmem models -v`)")
    p.set_defaults(func=run_extract)


def _engine_opts(args) -> dict:
    if args.engine != "ray":
        if args.ray_address or args.actors:
            logger.warning("--ray-address/--actors apply to --engine ray only; ignored")
        return {"num_workers": args.workers}
    opts = {}
    if args.ray_address:
        opts["address"] = args.ray_address
    if args.actors:
        opts["actors"] = args.actors
    if getattr(args, "cpus_per_actor", None):
        opts["cpus_per_actor"] = args.cpus_per_actor
    if getattr(args, "gpus_per_actor", None):
        opts["gpus_per_actor"] = args.gpus_per_actor
    if getattr(args, "threads", None):
        opts["threads"] = args.threads
    return opts


def _run(args, kind: str) -> int:
    from artmem.batch.plan import open_job_inputs

    with open_job_inputs(args.collection, args.engine) as coll:  # Ray: a collection file stays on disk
        return _run_on(args, kind, coll)


def _run_on(args, kind: str, coll) -> int:
    from artmem.batch.api import backend_for, model_processor, run_job
    from artmem.batch.engines.local import summarize_errors

    processor = model_processor(coll, args.model, kind, layer=getattr(args, "layer", None),
                                backend=backend_for(args.backend, len(coll), args.precision),
                                threads=args.threads, precision=args.precision)
    processor.resolved_precision(args.device)  # calibrates int8 once (cached) for this device
    processor.spec()  # validate model/layer before touching OUT
    opts = _engine_opts(args)
    result = run_job(
        coll, processor, args.out, device=args.device, batch_size=args.batch_size,
        resume=args.resume, csv=args.csv, engine=args.engine, shard_size=args.shard_size,
        progress=args.progress, merge=args.merge, **opts,
    )
    if args.out is None:
        _print_scores(result, coll)
    else:
        print_written(result.written)
    n_ok = result.n_rows
    msg = f"{kind}: {n_ok} of {result.n_total} image(s) done"
    if result.n_resumed:
        msg += f" ({result.n_resumed} from earlier runs)"
    if result.n_processed and result.seconds:
        msg += f"; {result.n_processed} processed now at {result.images_per_second:.2f} img/s"
    if result.backend:
        msg += f" [{result.backend}, {processor.resolved_precision()}]"
    print(msg, file=sys.stderr)
    if len(result.errors):
        print(summarize_errors(result.errors), file=sys.stderr)
    return 0


def _print_scores(result, coll) -> None:
    """Without -o: one `path<TAB>score` line per image, paths as the user can open them."""
    import os

    from artmem.errors import ArtmemError

    if not len(result.table) and len(result.errors):
        first = result.errors.iloc[0]
        raise ArtmemError(f"no image could be scored ({len(result.errors)} unreadable; "
                          f"first: {first['path']}: {first['reason']})")
    cwd = os.getcwd()
    for rel, value in zip(result.table["path"], result.table["score"], strict=True):
        path = coll.abs_path(rel)
        shown = path if "://" in path else os.path.relpath(path, cwd)
        print(f"{path if shown.startswith('..') else shown}\t{value:.6f}")


def run_score(args) -> int:
    return _run(args, "scores")


def run_extract(args) -> int:
    return _run(args, "features")
