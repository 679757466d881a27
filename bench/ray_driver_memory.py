"""Ray engine at scale: the driver's peak memory must not grow with the number of images.

A synthetic collection of N distinct paths (symbolic links to a few hundred real 64 px JPEGs cut
from the bundled photographs and paintings, so decoding is real) is scored with the `tiny_test`
model on a local Ray instance. Each size runs in a fresh process; the driver's resident memory
(psutil, sampled every 50 ms in a thread) is reported as:

- `setup`: after the collection is built and Ray started (the collection table is O(N) paths);
- `pipeline peak`: the peak until the last shard is written (the workers write the shards; the
  driver only counts images per shard) -- the figure that must stay flat as N grows;
- `overall peak`: including `finalize`, which still merges every shard into one
  `scores.parquet` in the driver (O(N); "results as datasets" of issue 16 removes it).

Baseline: the smallest N. The check: every image present exactly once across the shard files
(results + errors) and in the merged table.

    .venv/bin/python bench/ray_driver_memory.py --n 20000 100000          # this machine
    .venv/bin/python bench/ray_driver_memory.py --n 100000 1000000 --num-cpus 16   # full size
    .venv/bin/python bench/ray_driver_memory.py --n 2000 --shard-size 500   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

MB = 1024 * 1024


def exactly_once(out: Path, kind: str, paths: list[str]) -> dict:
    """Count every image across the shard files (results and errors) and the merged table."""
    import pyarrow.parquet as pq

    seen: Counter = Counter()
    shard_dir = out / "shards"
    n_files = 0
    for f in sorted(shard_dir.glob(f"{kind}-*.parquet")):
        seen.update(pq.read_table(f, columns=["path"]).column("path").to_pylist())
        n_files += 1
    merged = pq.read_table(out / f"{kind}.parquet", columns=["path"]).column("path").to_pylist()
    errors = pq.read_table(out / "errors.parquet", columns=["path"]).column("path").to_pylist()
    dup = sum(1 for c in seen.values() if c > 1)
    ok = (dup == 0 and set(seen) == set(paths) and len(seen) == len(paths)
          and sorted(merged + errors) == sorted(paths))
    leftovers = [p.name for p in shard_dir.iterdir() if p.name.startswith(".parts")]
    return {"shard_files": n_files, "rows_in_shards": sum(seen.values()), "duplicates": dup,
            "merged_rows": len(merged), "errors": len(errors), "exactly_once": ok,
            "leftover_parts": leftovers}


def run_one(args) -> dict:
    from artmem.batch.engines.ray import init_ray, run_job, shutdown
    from artmem.batch.job import JobSpec
    from artmem.batch.processors import ModelProcessor
    from artmem.batch.scale_sim import PeakRSS, build_scale_collection

    work = Path(tempfile.mkdtemp(prefix="artmem-raymem-", dir=args.tmp))
    try:
        t0 = time.perf_counter()
        coll = build_scale_collection(work / "coll", args.one, distinct=args.distinct)
        build_s = time.perf_counter() - t0
        init_ray(num_cpus=args.num_cpus, object_store_memory=args.object_store_mb * MB)
        spec = JobSpec(coll, ModelProcessor("tiny_test", kind=args.kind, backend="torch"), work / "out",
                       shard_size=args.shard_size, device="cpu")
        pipeline_peak = [(0, 0)]
        with PeakRSS() as meter:
            setup = meter.sample()

            def on_shard(_res) -> None:  # the last call is the end of the pipeline
                meter.sample()
                pipeline_peak[0] = (meter.peak, meter.peak_private)

            res = run_job(spec, batch_size=args.batch_size, progress=False, on_shard_done=on_shard)
        check = exactly_once(work / "out", args.kind, sorted(coll.paths))
        shutdown()
        return {"n": args.one, "kind": args.kind, "shard_size": args.shard_size, "batch_size": args.batch_size,
                "collection_build_s": round(build_s, 1), "seconds": round(res.seconds, 1),
                "pipeline_s": round(res.ray["pipeline_s"], 1),
                "images_per_s": round(args.one / max(res.ray["pipeline_s"], 1e-9), 1),
                "setup_rss_mb": round(setup[0] / MB, 1), "setup_private_mb": round(setup[1] / MB, 1),
                "pipeline_peak_mb": round(pipeline_peak[0][0] / MB, 1),
                "pipeline_peak_private_mb": round(pipeline_peak[0][1] / MB, 1),
                "overall_peak_mb": round(meter.peak / MB, 1),
                "overall_peak_private_mb": round(meter.peak_private / MB, 1),
                "driver_imported_torch": "torch" in sys.modules, **check}
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[20000, 100000], help="collection sizes")
    ap.add_argument("--kind", choices=["scores", "features"], default="scores")
    ap.add_argument("--shard-size", type=int, default=4000)
    ap.add_argument("--batch-size", type=int, default=256, help="images per actor batch")
    ap.add_argument("--distinct", type=int, default=300, help="distinct real images behind the paths")
    ap.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray instance")
    ap.add_argument("--object-store-mb", type=int, default=512)
    ap.add_argument("--tmp", default=None, help="folder for the collection and outputs (default: $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep the collection and outputs")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # internal: one size
    args = ap.parse_args()

    if args.one is not None:
        print(json.dumps(run_one(args)))
        return 0

    rows = []
    for n in args.n:  # one fresh process per size: peaks do not carry over, Ray starts clean
        cmd = [sys.executable, __file__, "--one", str(n)] + [
            a for a in sys.argv[1:] if a not in [str(x) for x in args.n] and a != "--n"]
        if args.json is not None:
            cmd = [c for c in cmd if c not in ("--json", str(args.json))]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-4000:])
            return proc.returncode
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"N={n:>9,}: {r['pipeline_s']:7.1f} s pipeline ({r['images_per_s']:.0f} img/s); driver RSS "
              f"(private) setup {r['setup_rss_mb']:.0f} ({r['setup_private_mb']:.0f}) MB, pipeline peak "
              f"{r['pipeline_peak_mb']:.0f} ({r['pipeline_peak_private_mb']:.0f}) MB, overall peak "
              f"{r['overall_peak_mb']:.0f} ({r['overall_peak_private_mb']:.0f}) MB; {r['shard_files']} shards, "
              f"exactly once: {r['exactly_once']}", flush=True)
    base = rows[0]
    for r in rows[1:]:
        print(f"N x{r['n'] / base['n']:.0f} ({base['n']:,} -> {r['n']:,}), RSS (private) in MB: setup "
              f"{base['setup_rss_mb']:.0f} -> {r['setup_rss_mb']:.0f} ({base['setup_private_mb']:.0f} -> "
              f"{r['setup_private_mb']:.0f}); pipeline peak {base['pipeline_peak_mb']:.0f} -> "
              f"{r['pipeline_peak_mb']:.0f} ({base['pipeline_peak_private_mb']:.0f} -> "
              f"{r['pipeline_peak_private_mb']:.0f}), ratio x{r['pipeline_peak_mb'] / base['pipeline_peak_mb']:.2f}; "
              f"overall peak {base['overall_peak_mb']:.0f} -> {r['overall_peak_mb']:.0f} "
              f"({base['overall_peak_private_mb']:.0f} -> {r['overall_peak_private_mb']:.0f})")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    return 0 if all(r["exactly_once"] and not r["leftover_parts"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
