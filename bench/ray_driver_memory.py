"""Ray engine at scale: the driver's peak memory must not grow with the number of images.

A synthetic collection of N distinct paths (symbolic links to a few hundred real 64 px JPEGs cut
from the bundled photographs and paintings, so decoding is real; the table stays in a Parquet
file) is scored with the `tiny_test` model on a local Ray instance
(`artmem.batch.scale_sim.simulate`). Each size runs in a fresh process; the driver's resident
memory (psutil, sampled every 50 ms in a thread) is reported as:

- `setup`: after the collection is built and Ray started;
- `pipeline peak`: the peak until the last shard is written (the driver plans the shards out of
  core with DuckDB and counts images per shard; the workers write the shards) -- the figure that
  must stay flat as N grows;
- `overall peak`: including `finalize`. By default (up to 1 M rows) it merges every shard into
  one `scores.parquet` in the driver (O(N)); with `--no-merge` the shards stay a dataset and
  `finalize` checks them against the collection file out of core (DuckDB in a child process), so
  the driver holds O(number of shards) to the end.

Baseline: the smallest N. The check: every image present exactly once across the shard files
(results + errors, read as one pyarrow dataset) and in the merged table where there is one. Exit
status 1 if a check fails.

    .venv/bin/python bench/ray_driver_memory.py --n 100000 1000000      # full size (~1 h on 2 cores)
    .venv/bin/python bench/ray_driver_memory.py --n 20000 100000
    .venv/bin/python bench/ray_driver_memory.py --n 2000 10000 --shard-size 1000   # quick
    .venv/bin/python bench/ray_driver_memory.py --n 2000 10000 --shard-size 1000 --no-merge
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path


def run_size(n: int, args) -> dict:
    """One size in a fresh process (peaks do not carry over, Ray starts clean)."""
    cmd = [sys.executable, "-m", "artmem.batch.scale_sim", "--n", str(n), "--kind", args.kind,
           "--shard-size", str(args.shard_size), "--batch-size", str(args.batch_size),
           "--distinct", str(args.distinct), "--num-cpus", str(args.num_cpus),
           "--object-store-mb", str(args.object_store_mb)]
    if args.tmp:
        cmd += ["--tmp", args.tmp]
    if args.keep:
        cmd.append("--keep")
    if args.no_merge:
        cmd.append("--no-merge")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(proc.returncode)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=lambda s: [int(x) for x in s.split(",")], nargs="+", default=[[20000, 100000]],
                    help="collection sizes (space- or comma-separated)")
    ap.add_argument("--kind", choices=["scores", "features"], default="scores")
    ap.add_argument("--shard-size", type=int, default=4000)
    ap.add_argument("--batch-size", type=int, default=256, help="images per actor batch")
    ap.add_argument("--distinct", type=int, default=300, help="distinct real images behind the paths")
    ap.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray instance")
    ap.add_argument("--object-store-mb", type=int, default=512)
    ap.add_argument("--tmp", default=None, help="folder for the collection and outputs (default: $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep the collection and outputs")
    ap.add_argument("--no-merge", action="store_true",
                    help="the job leaves a shard dataset (finalize out of core), not a merged table")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    sizes = [n for group in args.n for n in group]

    rows = []
    for n in sizes:
        r = run_size(n, args)
        rows.append(r)
        print(f"N={n:>9,}: {r['pipeline_s']:7.1f} s pipeline ({r['images_per_s']:.0f} img/s); driver RSS "
              f"(private) setup {r['setup_rss_mb']:.0f} ({r['setup_private_mb']:.0f}) MB, pipeline peak "
              f"{r['pipeline_peak_mb']:.0f} ({r['pipeline_peak_private_mb']:.0f}) MB, overall peak "
              f"{r['overall_peak_mb']:.0f} ({r['overall_peak_private_mb']:.0f}) MB; {r['shard_files']} shards, "
              f"{r['distinct_paths']:,} distinct paths, exactly once: {r['exactly_once']}", flush=True)
        for worker, w in sorted(r["workers"].items()):
            print(f"    actor {worker}: {w['images']:,} images, {w['images'] / max(w['seconds'], 1e-9):.0f} img/s "
                  "inside process()")
    base = rows[0]
    for r in rows[1:]:
        grow = r["pipeline_peak_private_mb"] - base["pipeline_peak_private_mb"]
        print(f"N x{r['n'] / base['n']:.0f} ({base['n']:,} -> {r['n']:,}), RSS (private) in MB: setup "
              f"{base['setup_rss_mb']:.0f} -> {r['setup_rss_mb']:.0f} ({base['setup_private_mb']:.0f} -> "
              f"{r['setup_private_mb']:.0f}); pipeline peak {base['pipeline_peak_mb']:.0f} -> "
              f"{r['pipeline_peak_mb']:.0f} ({base['pipeline_peak_private_mb']:.0f} -> "
              f"{r['pipeline_peak_private_mb']:.0f}, {grow * 1024 * 1024 / (r['n'] - base['n']):+.1f} bytes per "
              f"added image); overall peak {base['overall_peak_mb']:.0f} -> {r['overall_peak_mb']:.0f} "
              f"({base['overall_peak_private_mb']:.0f} -> {r['overall_peak_private_mb']:.0f})")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    return 0 if all(r["exactly_once"] and not r["leftover_parts"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
