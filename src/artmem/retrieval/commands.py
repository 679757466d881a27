"""CLI: `artmem index build|add|remove|check|info|compare|evaluate` and `artmem similar`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from artmem.cliutils import (
    add_collection_arg,
    add_csv_arg,
    add_device_arg,
    add_out_arg,
    print_written,
)
from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p_index = sub.add_parser("index", help="build, update, check, compare and evaluate similarity indexes")
    isub = p_index.add_subparsers(dest="index_command", metavar="ACTION", required=True)

    p = isub.add_parser("build", help="index a collection's features (FAISS or LanceDB)")
    add_collection_arg(p)
    p.add_argument("--features", help="extract output folder or features.parquet (`artmem extract`); "
                   "without it, features are extracted now with --model into INDEX/features")
    p.add_argument("--model", default=None,
                   help="model to extract features with when --features is not given (default resmem, "
                   "as `artmem extract`)")
    p.add_argument("--layer", help="layer for --model (default: the model's default layer)")
    p.add_argument("--backend", choices=["faiss", "lancedb"], default="faiss",
                   help="faiss: index files in INDEX (default); lancedb: a LanceDB table (filters, versions)")
    p.add_argument("--kind", choices=["auto", "flat", "hnsw", "ivf", "ivfpq"], default="auto",
                   help="faiss index kind (auto: flat up to 20,000 vectors, HNSW up to 5M, IVF above; "
                   "ivfpq on disk when the vectors would take over a quarter of the available RAM)")
    p.add_argument("--on-disk", action="store_true",
                   help="build the on-disk IVF-PQ index (= --kind ivfpq): features streamed in chunks, "
                   "re-ranked on full vectors read from disk; resumable")
    p.add_argument("--chunk-rows", type=int, help="on-disk build: rows per chunk (default 100,000)")
    p.add_argument("--pq-m", type=int, help="on-disk index: PQ sub-vectors per code (default dim/8, max 64)")
    p.add_argument("--pca", type=int, metavar="D", help="reduce to D dims with PCA before indexing")
    p.add_argument("--target-recall", type=float, default=0.95,
                   help="recall@10 the approximate search breadth is tuned for (default 0.95)")
    p.add_argument("--hnsw-m", type=int, help="HNSW graph degree M (default 32)")
    p.add_argument("--ef-construction", type=int, help="HNSW efConstruction (default 40)")
    p.add_argument("--nlist", type=int, help="IVF cells (default ~4 sqrt(N); on disk at most 4096)")
    p.add_argument("--lance-uri", help="LanceDB location (default INDEX_DIR/lance; s3://... works)")
    add_device_arg(p)
    add_out_arg(p)
    p.set_defaults(func=cmd_build)

    p = isub.add_parser("add", help="add new images' features to an index (no duplicates)")
    p.add_argument("index", help="index folder")
    p.add_argument("--features", required=True, help="extract output with the new images")
    p.add_argument("--collection", help="collection for the new images' metadata "
                   "(default: the one the index was built from)")
    p.set_defaults(func=cmd_add)

    p = isub.add_parser("remove", help="remove images from an on-disk index (by path)")
    p.add_argument("index", help="index folder")
    p.add_argument("paths", nargs="*", help="collection paths of the images to remove")
    p.add_argument("--paths-file", help="a text file with one path per line to remove")
    p.set_defaults(func=cmd_remove)

    p = isub.add_parser("check", help="verify that the index matches its feature store, and measure "
                        "recall@10 and latency against exact search")
    p.add_argument("index", help="index folder")
    p.add_argument("--features", help="also compare with this (newer) extract output")
    p.add_argument("--queries", type=int, default=200,
                   help="held-out queries for recall@10 and latency vs exact search (default 200; 0 = skip)")
    p.add_argument("--json", action="store_true",
                   help="print the check's figures (problems, recall, p50/p99 ms) as JSON on stdout")
    p.set_defaults(func=cmd_check)

    p = isub.add_parser("info", help="print an index's metadata")
    p.add_argument("index", help="index folder")
    p.set_defaults(func=cmd_info)

    p = isub.add_parser("compare", help="compare feature spaces over the same images (Figure 16)")
    p.add_argument("features", nargs="+", help="two or more extract outputs (or index folders)")
    p.add_argument("--names", nargs="+", help="display names, one per feature set")
    p.add_argument("-k", type=int, default=10, help="neighbours for the overlap measure (default 10)")
    p.add_argument("--sample", type=int, default=5000,
                   help="compare on at most this many shared images (default 5000; 0 = all)")
    add_out_arg(p)
    p.set_defaults(func=cmd_compare)

    p = isub.add_parser("evaluate", help="precision@k of same-label neighbours per label column")
    p.add_argument("indexes", nargs="+", help="one or more index folders")
    p.add_argument("--labels", nargs="+", help="label columns (default: every category column)")
    p.add_argument("-k", type=int, nargs="+", default=[1, 5, 10], help="cut-offs (default 1 5 10)")
    p.add_argument("--sample", type=int, default=20000,
                   help="query at most this many images (default 20000; 0 = all)")
    add_csv_arg(p)
    add_out_arg(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("similar", help="find the images most similar to a query image")
    p.add_argument("query", help="a path in the indexed collection, or any image file")
    p.add_argument("--index", required=True, help="index folder (`artmem index build`)")
    p.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--filter", help="metadata condition, e.g. \"genre == 'portrait'\"")
    p.add_argument("--include-self", action="store_true",
                   help="keep the query in its own results when it is in the collection")
    p.add_argument("--version", type=int, help="LanceDB backend: query this older table version")
    add_device_arg(p)
    add_csv_arg(p)
    add_out_arg(p, optional=True, help="also write OUT/results.parquet and OUT/contact_sheet.png "
                "(without it the results are only printed)")
    p.set_defaults(func=cmd_similar)


def _params(args) -> dict:
    params = {}
    if args.hnsw_m:
        params["M"] = args.hnsw_m
    if args.ef_construction:
        params["ef_construction"] = args.ef_construction
    if args.nlist:
        params["nlist"] = args.nlist
    if args.lance_uri:
        params["uri"] = args.lance_uri
    if args.chunk_rows:
        params["chunk_rows"] = args.chunk_rows
    if args.pq_m:
        params["pq_m"] = args.pq_m
    return params


def _on_disk(args, features) -> bool:
    """--on-disk / --kind ivfpq, or kind auto with features too large for the in-RAM path."""
    from artmem.retrieval.index import wants_on_disk
    from artmem.retrieval.stream import FeatureStream

    if args.on_disk or args.kind == "ivfpq":
        if args.kind not in ("auto", "ivfpq") or args.backend != "faiss" or args.pca:
            raise ArtmemError("--on-disk builds a faiss IVF-PQ index: it does not combine with "
                              "--kind flat/hnsw/ivf, --backend lancedb or --pca")
        return True
    if args.kind != "auto" or args.backend != "faiss":
        return False
    try:
        stream = FeatureStream(features)
    except ArtmemError:  # CSV features cannot be streamed (and are never that large): in RAM
        return False
    if wants_on_disk(len(stream), stream.dim):
        logger.info("%d x %d features exceed the in-RAM budget: building the on-disk index",
                    len(stream), stream.dim)
        return True
    return False


def cmd_build(args) -> int:
    from artmem.data.collection import open_collection
    from artmem.retrieval.index import build_index, check_index_folder
    from artmem.retrieval.store import load_store

    coll = open_collection(args.collection)
    out = Path(args.out)
    check_index_folder(out)  # before extracting into it: refuse a folder that is not an index
    features = args.features
    if features and args.model:
        raise ArtmemError("give --features (features already extracted) or --model (extract now), not both")
    if not features:
        from artmem.batch.api import extract

        model = args.model or "resmem"  # the default of `artmem extract`
        features = out / "features"
        logger.info("extracting %s features into %s", model, features)
        extract(coll, model, args.layer, out=features, device=args.device)
    if _on_disk(args, features):
        from artmem.retrieval.index import build_ondisk_index
        from artmem.retrieval.stream import FeatureStream

        index = build_ondisk_index(FeatureStream(features, coll), out, args.target_recall, _params(args))
    else:
        store = load_store(features, coll)
        index = build_index(store, out, backend=args.backend, kind=args.kind, pca_dim=args.pca,
                            target_recall=args.target_recall, params=_params(args))
    if isinstance(args.collection, str):
        src = Path(args.collection)
        index.meta["collection"] = str(src.resolve()) if src.exists() else str(args.collection)
    else:  # several inputs: `index add` finds their metadata in the collection root
        index.meta["collection"] = str(coll.root)
    index.write_meta()
    _summary(index)
    print_written(_index_files(out))
    return 0


def _index_files(out: Path) -> list[Path]:
    """The files of an index folder, plus its LanceDB folder when there is one."""
    return sorted(p for p in Path(out).iterdir() if p.is_file() or p.name in ("lance", "items"))


def _summary(index) -> None:
    m = index.meta
    tuning = m.get("tuning") or {}
    extra = (f", {tuning['parameter']}={tuning['value']} -> recall@{tuning['k']} "
             f"{tuning['recall']:.3f}" if tuning else "")
    print(f"{m['backend']}/{m['kind']} index: {m['count']} images, {m.get('model')}/{m.get('layer')} "
          f"{m['dim']}-d" + (f" -> PCA {m['index_dim']}-d" if m.get("pca") else "")
          + f", built in {m.get('build_seconds', 0):.1f} s{extra}", file=sys.stderr)


def cmd_add(args) -> int:
    from artmem.data.collection import open_collection
    from artmem.retrieval.index import add_to_index, open_index
    from artmem.retrieval.store import load_store

    index = open_index(args.index)
    coll = None
    source = args.collection or index.meta.get("collection")
    if source and Path(source).exists():
        coll = open_collection(source)
    if index.meta["kind"] == "ivfpq":
        from artmem.retrieval.stream import FeatureStream

        store = FeatureStream(args.features, coll)
    else:
        store = load_store(args.features, coll)
    counts = add_to_index(index, store)
    print(f"added {counts['added']} images ({counts['skipped_existing']} already indexed); the "
          f"index now holds {counts['count']}", file=sys.stderr)
    print_written(_index_files(Path(args.index)))
    return 0


def cmd_remove(args) -> int:
    from artmem.retrieval.index import open_index, remove_from_index

    paths = list(args.paths)
    if args.paths_file:
        try:
            paths += [ln.strip() for ln in Path(args.paths_file).read_text().splitlines() if ln.strip()]
        except OSError as exc:
            raise ArtmemError(f"{args.paths_file}: cannot read the paths file ({exc.strerror})") from exc
    if not paths:
        raise ArtmemError("give the paths to remove (arguments or --paths-file)")
    index = open_index(args.index)
    counts = remove_from_index(index, paths)
    print(f"removed {counts['removed']} images ({counts['not_found']} paths not in the index); "
          f"{counts['removed_total']} removed in all, {counts['count'] - counts['removed_total']} searchable",
          file=sys.stderr)
    print_written(_index_files(Path(args.index)))
    return 0


def cmd_check(args) -> int:
    from artmem.retrieval.index import check_against_features, measure_recall, open_index
    from artmem.retrieval.store import load_store

    index = open_index(args.index)
    problems = index.check()
    report = {"index": str(args.index), "backend": index.backend, "kind": index.meta["kind"],
              "count": len(index), "removed": len(index.removed_ids())}
    if args.queries and not problems:
        m = measure_recall(index, queries=args.queries)
        report["search"] = m
        if m["queries"]:
            print(f"artmem index check: recall@{m['k']} {m['recall']:.3f} vs exact search on "
                  f"{m['queries']} held-out queries; latency p50 {m['p50_ms']:.2f} ms, "
                  f"p99 {m['p99_ms']:.2f} ms per single query", file=sys.stderr)
    if args.features:
        diff = check_against_features(index, load_store(args.features))
        if diff["not_indexed"]:
            problems.append(f"{diff['not_indexed']} images in {args.features} are not indexed "
                            "(run `artmem index add`)")
        if diff["not_in_features"]:
            problems.append(f"{diff['not_in_features']} indexed images are not in {args.features}")
        if diff["changed_in_sample"]:
            problems.append(f"{diff['changed_in_sample']} of {diff['compared']} sampled images have "
                            "different features now (rebuild the index)")
    report["problems"] = problems
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    if problems:
        for line in problems:
            print(f"artmem index check: {line}", file=sys.stderr)
        return 1
    print(f"artmem index check: ok ({len(index)} images, {index.backend}/{index.meta['kind']})",
          file=sys.stderr)
    return 0


def cmd_info(args) -> int:
    from artmem.retrieval.index import open_index

    index = open_index(args.index)
    _summary(index)
    meta = {k: v for k, v in index.meta.items() if k != "history"}
    print(json.dumps(meta, indent=2, default=str))
    return 0


def cmd_compare(args) -> int:
    from artmem.retrieval.compare import compare_spaces, load_space, write_comparison

    if args.names and len(args.names) != len(args.features):
        raise ArtmemError(f"--names gives {len(args.names)} names for {len(args.features)} feature sets")
    names = args.names or [None] * len(args.features)
    spaces = [load_space(f, n) for f, n in zip(args.features, names, strict=True)]
    result = compare_spaces(spaces, k=args.k, sample=args.sample or None)
    print(result["knn_overlap"].round(3).to_string(), file=sys.stderr)
    print_written(write_comparison(result, args.out))
    return 0


def cmd_evaluate(args) -> int:
    import pandas as pd

    from artmem.io import write_table
    from artmem.retrieval.evaluate import label_precision, precision_chart

    summaries, classes = [], []
    for path in args.indexes:
        s, c = label_precision(path, args.labels, tuple(args.k), sample=args.sample or None)
        s.insert(0, "index", str(path))
        c.insert(0, "index", str(path))
        summaries.append(s)
        classes.append(c)
    summary = pd.concat(summaries, ignore_index=True)
    per_class = pd.concat(classes, ignore_index=True)
    if summary.groupby("space")["index"].nunique().max() > 1:  # same model/layer twice
        summary["space"] = summary["index"].map(lambda p: Path(p).name)
    written = write_table(summary, args.out, "precision", csv=args.csv)
    written += write_table(per_class, args.out, "precision_per_class", csv=args.csv)
    k = max(args.k)
    written.append(precision_chart(summary, Path(args.out) / f"precision_at_{k}.png", k))
    view = summary[summary["k"] == k][["space", "column", "precision", "chance", "lift"]]
    print(view.round(3).to_string(index=False), file=sys.stderr)
    print_written(written)
    return 0


def cmd_similar(args) -> int:
    from artmem.retrieval.index import open_index
    from artmem.retrieval.query import search, similar

    index = open_index(args.index, version=args.version)
    if args.out is None:
        df, written = search(index, args.query, k=args.k, filter=args.filter,
                             exclude_self=not args.include_self, device=args.device), []
    else:
        df, written = similar(index, args.query, args.out, k=args.k, filter=args.filter,
                              exclude_self=not args.include_self, device=args.device, csv=args.csv)
    cols = ["rank", "similarity", "path"] + [c for c in df.columns if c not in
                                             ("rank", "id", "path", "similarity", "distance")][:3]
    # the results are the output when nothing is written; else the written paths are (stdout contract)
    table_out = sys.stdout if args.out is None else sys.stderr
    print(f"query: {df.attrs['query']}", file=sys.stderr)
    print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}") if len(df)
          else "(no results)", file=table_out)
    print_written(written)
    return 0
