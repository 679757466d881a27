"""Similarity-search benchmark: artmem's default approximate index vs exact FAISS vs numpy.

On N x D clustered unit vectors (synthetic, but with the low intrinsic dimension and cluster
structure of real CNN features; see `artmem.retrieval.synthetic`), in one run:
  - build time of the index `artmem index build` would choose for N (kind=auto, efSearch/nprobe
    tuned for recall@10 >= target), through the same `build_index` path users run;
  - p50/p99 single-query latency and recall@10 of that index on held-out queries;
  - the same for exact FAISS search (IndexFlatIP) and for numpy brute force (X @ q + argpartition).

    .venv/bin/python bench/search.py                 # 1,000,000 x 512 (a few minutes, ~6 GB RAM)
    .venv/bin/python bench/search.py --n 100000      # quick run

With --on-disk it benchmarks the on-disk IVF-PQ index instead, never holding the N vectors in RAM:
the synthetic vectors are generated chunk by chunk into a Parquet features dataset on disk (the
exact top-k of the held-out queries is accumulated on the way), the index is built from that
dataset by `build_ondisk_index` (streamed, as `artmem index build --on-disk`), and the figures are
build time, p50/p99 single-query latency, recall@10 on held-out queries and peak RSS per phase.
The baseline is exact search streamed over the same on-disk vectors (batched ms per query).

    .venv/bin/python bench/search.py --on-disk --n 10000000 --dim 128 --workdir /tmp/x   # ~10 GB disk
    .venv/bin/python bench/search.py --on-disk --n 200000 --dim 128                      # quick
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def pct(a, q):
    return float(np.percentile(np.asarray(a) * 1e3, q))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="database vectors (default 1,000,000)")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=1000, help="held-out queries for recall/latency")
    ap.add_argument("--exact-latency-queries", type=int, default=50,
                    help="single queries timed for exact faiss and numpy (they are slow)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--kind", default="auto", choices=["auto", "flat", "hnsw", "ivf"])
    ap.add_argument("--target-recall", type=float, default=0.95)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--on-disk", action="store_true", help="benchmark the on-disk IVF-PQ index")
    ap.add_argument("--workdir", help="--on-disk: folder for the features and the index "
                    "(default a temporary folder, deleted at the end)")
    ap.add_argument("--chunk-rows", type=int, default=100_000, help="--on-disk: rows per chunk")
    ap.add_argument("--check-queries", type=int, default=100,
                    help="--on-disk: also run `index check`'s measurement with this many queries (0 = skip)")
    args = ap.parse_args(argv)
    if args.on_disk:
        return on_disk(args)

    import faiss

    from artmem.retrieval.backend_base import TUNE_QUERIES, exact_knn, recall_at_k
    from artmem.retrieval.index import build_index
    from artmem.retrieval.store import FeatureStore
    from artmem.retrieval.synthetic import clustered_vectors

    k, nq = args.k, args.queries
    load0 = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, faiss {faiss.__version__} ({faiss.omp_get_max_threads()} "
          f"threads), load average {load0[0]:.1f} at start (shared machine)", file=sys.stderr)
    t0 = time.perf_counter()
    vecs, _ = clustered_vectors(args.n + nq, args.dim, seed=args.seed)
    base, queries = vecs[: args.n], vecs[args.n :]
    del vecs
    t_gen = time.perf_counter() - t0
    print(f"generated {args.n:,} x {args.dim} clustered vectors + {nq} held-out queries in "
          f"{t_gen:.1f} s", file=sys.stderr)

    # Ground truth: exact top-k of every held-out query (batched faiss brute force).
    t0 = time.perf_counter()
    gt_sims, gt_ids = exact_knn(queries, base, k)
    t_gt = time.perf_counter() - t0

    items = pd.DataFrame({"path": [f"img/{i:08d}.jpg" for i in range(args.n)]})
    store = FeatureStore(items, base, {"model": "synthetic", "layer": "clustered"})
    results = {"n": args.n, "dim": args.dim, "k": k, "queries": nq, "load_start": load0[0]}
    with tempfile.TemporaryDirectory(prefix="artmem-bench-") as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        index = build_index(store, Path(tmp) / "index", kind=args.kind, target_recall=args.target_recall)
        t_build, c_build = time.perf_counter() - t0, time.process_time() - c0
        meta = index.meta
        tuning = meta.get("tuning") or {}
        fi = index.faiss_index
        lat, found = [], np.empty((nq, k), np.int64)
        for i in range(nq):
            q = queries[i : i + 1]
            t = time.perf_counter()
            _, ids = fi.search(q, k)
            lat.append(time.perf_counter() - t)
            found[i] = ids[0]
        api_lat = []
        for i in range(min(nq, 200)):
            t = time.perf_counter()
            index.search(queries[i : i + 1], k, raw=False)
            api_lat.append(time.perf_counter() - t)
        rec = recall_at_k(found, gt_ids)
        results["approx"] = {
            "kind": meta["kind"], "params": meta.get("params"), "tuned": {
                tuning.get("parameter"): tuning.get("value")} if tuning else {},
            "tuning_recall_on_store_sample": tuning.get("recall"),
            "build_s_total": round(t_build, 1), "build_cpu_s": round(c_build, 1), "build_s_index_and_store": meta.get("build_seconds"),
            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "api_p50_ms": pct(api_lat, 50),
            "recall_at_k": rec, "tuning": tuning,
        }
        del index, fi

    m = args.exact_latency_queries
    flat = faiss.IndexFlatIP(args.dim)
    t0 = time.perf_counter()
    flat.add(base)
    t_flat = time.perf_counter() - t0
    lat = []
    ok = 0
    for i in range(m):
        t = time.perf_counter()
        _, ids = flat.search(queries[i : i + 1], k)
        lat.append(time.perf_counter() - t)
        ok += int(set(ids[0]) == set(gt_ids[i]))
    results["exact_faiss"] = {"build_s": round(t_flat, 2), "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
                              "recall_at_k": 1.0, "batch_ms_per_query": 1e3 * t_gt / nq,
                              "agrees_with_ground_truth": ok / m}
    del flat
    lat, hits = [], []
    for i in range(m):
        q = queries[i]
        t = time.perf_counter()
        s = base @ q
        top = np.argpartition(-s, k)[:k]
        top = top[np.argsort(-s[top])]
        lat.append(time.perf_counter() - t)
        hits.append(top)
    results["numpy"] = {"p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
                        "recall_at_k": recall_at_k(np.array(hits), gt_ids[:m])}
    results["load_end"] = os.getloadavg()[0]

    a, e, npy = results["approx"], results["exact_faiss"], results["numpy"]
    print(f"\n== similarity search, {args.n:,} x {args.dim} clustered float32, k={k}, {nq} held-out "
          f"queries (single-query latency) ==")
    print(f"{'method':<34}{'build':>10}{'p50 ms':>10}{'p99 ms':>10}{'recall@' + str(k):>11}")
    name = f"artmem default ({a['kind']} {a['tuned']})"
    print(f"{name:<34}{a['build_s_total']:>9.1f}s{a['p50_ms']:>10.3f}{a['p99_ms']:>10.3f}{a['recall_at_k']:>11.3f}")
    print(f"{'exact faiss IndexFlatIP':<34}{e['build_s']:>9.1f}s{e['p50_ms']:>10.2f}{e['p99_ms']:>10.2f}{1.0:>11.3f}")
    print(f"{'numpy brute force (X @ q)':<34}{'-':>10}{npy['p50_ms']:>10.2f}{npy['p99_ms']:>10.2f}{npy['recall_at_k']:>11.3f}")
    print(f"speed-up of the default index at p50: {e['p50_ms'] / a['p50_ms']:.0f}x vs exact faiss, "
          f"{npy['p50_ms'] / a['p50_ms']:.0f}x vs numpy; through the artmem API p50 {a['api_p50_ms']:.3f} ms")
    print(f"build: {a['build_s_total']:.1f} s total (index {a['build_s_index_and_store']} s incl. "
          f"saving the store; the rest is search-breadth tuning on {TUNE_QUERIES} store queries; "
          f"{a['build_cpu_s']:.0f} CPU-seconds); "
          f"load average {results['load_start']:.1f} -> {results['load_end']:.1f} (shared machine)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0

def write_features_streaming(folder: Path, args, queries_n: int):
    """Generate N + queries clustered vectors chunk by chunk: the first `queries_n` are held out,
    the others go to folder/features.parquet (one row group per chunk) as they come.

    Returns (held-out queries, an iterator of (first id, base chunk) that writes each chunk as it
    yields it, for the exact ground truth to be accumulated on the way)."""
    import itertools

    import pyarrow as pa
    import pyarrow.parquet as pq

    from artmem.retrieval.synthetic import clustered_chunks

    folder.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("path", pa.string()), ("embedding", pa.list_(pa.float32(), args.dim))])
    gen = clustered_chunks(args.n + queries_n, args.dim, seed=args.seed, chunk=args.chunk_rows)
    first, _ = next(gen)
    queries = first[:queries_n].copy()

    def base_chunks():
        start = 0
        with pq.ParquetWriter(folder / "features.parquet", schema) as writer:
            for vecs in itertools.chain([first[queries_n:]], (x for x, _ in gen)):
                yield start, vecs
                flat = pa.array(np.ascontiguousarray(vecs, np.float32).ravel(), pa.float32())
                paths = pa.array([f"img/{i:08d}.jpg" for i in range(start, start + len(vecs))])
                writer.write_table(pa.Table.from_arrays(
                    [paths, pa.FixedSizeListArray.from_arrays(flat, args.dim)], schema=schema))
                start += len(vecs)
        (folder / "features.json").write_text(json.dumps(
            {"model": "synthetic", "layer": "clustered", "dim": args.dim, "count": start}))

    return queries, base_chunks()


def on_disk(args) -> int:
    """The on-disk IVF-PQ benchmark (see the module docstring)."""
    import shutil

    import faiss

    from artmem.batch.scale_sim import PeakRSS
    from artmem.retrieval.backend_base import exact_knn_chunks, recall_at_k
    from artmem.retrieval.index import build_ondisk_index, measure_recall, open_index
    from artmem.retrieval.stream import FeatureStream

    k, nq = args.k, args.queries
    if nq >= args.chunk_rows:
        raise SystemExit("--queries must be below --chunk-rows (they are cut from the first chunk)")
    load0 = os.getloadavg()
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="artmem-bench-ondisk-"))
    print(f"machine: {os.cpu_count()} CPUs, faiss {faiss.__version__}, load average {load0[0]:.1f} at "
          f"start (shared machine); work folder {work}", file=sys.stderr)
    res = {"n": args.n, "dim": args.dim, "k": k, "queries": nq, "load_start": load0[0],
           "chunk_rows": args.chunk_rows}
    truth_file = work / f"truth-{args.n}x{args.dim}-q{nq}-k{k}-s{args.seed}.npz"
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        if truth_file.exists():  # a rerun in the same --workdir: the dataset is already written
            saved = np.load(truth_file)
            queries, gt_ids = saved["queries"], saved["ids"]
        else:
            queries, chunks = write_features_streaming(work / "features", args, nq)
            _, gt_ids = exact_knn_chunks(queries, chunks, k)  # exact truth while writing the dataset
            np.savez(truth_file, queries=queries, ids=gt_ids)
        res["generate_and_exact_s"] = round(time.perf_counter() - t0, 1)
    res["peak_rss_gen_gb"] = rss.peak / 1e9
    print(f"wrote {args.n:,} x {args.dim} vectors to {work / 'features'} and their exact top-{k} for "
          f"{nq} held-out queries in {res['generate_and_exact_s']} s", file=sys.stderr)
    with PeakRSS() as rss:
        t0, c0 = time.perf_counter(), time.process_time()
        index = build_ondisk_index(FeatureStream(work / "features"), work / "index", args.target_recall,
                                   {"chunk_rows": args.chunk_rows})
        res["build_s"] = round(time.perf_counter() - t0, 1)
        res["build_cpu_s"] = round(time.process_time() - c0, 1)
    res["peak_rss_build_gb"] = rss.peak / 1e9
    meta = index.meta
    res["params"], res["train_s"] = meta["params"], meta["build"].get("train_seconds")
    res["tuning"] = {x: meta["tuning"].get(x) for x in ("parameter", "value", "refine", "recall")}
    del index
    with PeakRSS() as rss:
        index = open_index(work / "index")  # as a user (or the explorer) opens it
        lat, found = [], np.empty((nq, k), np.int64)
        for i in range(nq):
            t = time.perf_counter()
            _, ids = index.search(queries[i : i + 1], k)
            lat.append(time.perf_counter() - t)
            found[i] = ids[0]
        res["p50_ms"], res["p99_ms"] = pct(lat, 50), pct(lat, 99)
        res["recall_at_k"] = recall_at_k(found, gt_ids)
        t0 = time.perf_counter()
        exact_knn_chunks(queries[:50], index.iter_index_vectors(), k)
        res["exact_stream_ms_per_query"] = 1e3 * (time.perf_counter() - t0) / 50
        if args.check_queries:
            res["index_check"] = measure_recall(index, queries=args.check_queries)
    res["peak_rss_search_gb"] = rss.peak / 1e9
    sizes = {p.name: p.stat().st_size for p in (work / "index").iterdir() if p.is_file()}
    res["index_disk_gb"] = sum(sizes.values()) / 1e9
    res["vectors_disk_gb"] = sizes.get("vectors.f32", 0) / 1e9
    res["load_end"] = os.getloadavg()[0]
    print(f"\n== on-disk IVF-PQ, {args.n:,} x {args.dim} clustered float32, k={k}, {nq} held-out queries ==")
    print(f"build {res['build_s']:.0f} s ({res['build_cpu_s']:.0f} CPU-s; training {res['train_s']} s); "
          f"nlist {res['params']['nlist']}, PQ{res['params']['pq_m']}x{res['params']['pq_bits']}; tuned "
          f"nprobe {res['tuning']['value']}, refine {res['tuning']['refine']}")
    print(f"single query: p50 {res['p50_ms']:.2f} ms, p99 {res['p99_ms']:.2f} ms; recall@{k} "
          f"{res['recall_at_k']:.3f} on held-out queries")
    print(f"exact search streamed over the on-disk vectors: {res['exact_stream_ms_per_query']:.0f} ms per "
          f"query (batched) -> {res['exact_stream_ms_per_query'] / res['p50_ms']:.0f}x at p50")
    print(f"peak RSS: generate {res['peak_rss_gen_gb']:.2f} GB, build {res['peak_rss_build_gb']:.2f} GB, "
          f"search {res['peak_rss_search_gb']:.2f} GB (N x D float32 = {args.n * args.dim * 4 / 1e9:.2f} GB); "
          f"index on disk {res['index_disk_gb']:.2f} GB")
    if "index_check" in res:
        c = res["index_check"]
        print(f"`index check`: recall@{c['k']} {c['recall']:.3f}, p50 {c['p50_ms']:.2f} ms, "
              f"p99 {c['p99_ms']:.2f} ms on {c['queries']} stored vectors held out from tuning")
    print(f"load average {res['load_start']:.1f} -> {res['load_end']:.1f} (shared machine)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str) + "\n")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
