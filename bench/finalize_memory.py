"""`finalize` alone: the driver's memory at the end of a job that leaves a shard dataset, against
the number of images (issue 16).

A collection of N paths in its Parquet file (`CollectionFile`, what the Ray driver gets) and
finished shards of `--shard-size` scores (written here, no model, no Ray) are finalized with
`merge=False`; the process's private RSS (RSS less shared pages, `scale_sim.PeakRSS`, sampled
every 50 ms) is measured from just before `finalize` to its end, and the peak RSS of the child
process that checks the shards out of core (bounded by DuckDB's memory limit, returned when it
exits) is reported beside it. Each size runs in a fresh process.
Baseline: the same command on the code before finalize checked the shards out of core (commit
64bffcd), where finalize held every path of the collection in the driver.

    .venv/bin/python bench/finalize_memory.py                       # N = 100,000 and 500,000 (seconds)
    .venv/bin/python bench/finalize_memory.py --n 1000000 --shard-size 4000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(n: int, shard_size: int, work: Path) -> dict:
    """Write the collection and the shards under `work`, then finalize them under the meter."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from artmem.batch.job import JobSpec, write_shard_files
    from artmem.batch.processors import BaseProcessor

    rng = np.random.default_rng(0)
    with pq.ParquetWriter(work / "collection.parquet", pa.schema([("path", pa.string())])) as writer:
        for sid, start in enumerate(range(0, n, shard_size)):
            paths = [f"links/{i // 1000:04d}/{i:08d}.jpg" for i in range(start, min(start + shard_size, n))]
            writer.write_table(pa.table({"path": pa.array(paths, pa.string())}))
            write_shard_files(work / "out", "scores", sid, pd.DataFrame({"path": paths, "score": rng.random(len(paths))}),
                              [])
    del paths
    import gc

    gc.collect()
    from artmem.batch.finalize import finalize
    from artmem.batch.plan import CollectionFile
    from artmem.batch.scale_sim import PeakRSS

    class Scores(BaseProcessor):
        kind = "scores"

    spec = JobSpec(CollectionFile(work / "collection.parquet"), Scores(), work / "out", shard_size=shard_size,
                   merge=False)
    mb = 1024 * 1024
    with PeakRSS() as meter:
        before = meter.sample()[1]
        t0 = time.perf_counter()
        res = finalize(spec)
        seconds = time.perf_counter() - t0
    assert res.n_total == res.n_rows == n and not res.merged
    import resource

    # the largest child this process waited for: finalize's DuckDB check (0 before it had one)
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"child_peak_rss_mb": round(child_kb / 1024, 1), "n": n, "shard_size": shard_size, "shards": -(-n // shard_size), "seconds": round(seconds, 2),
            "private_before_mb": round(before / mb, 1), "private_peak_mb": round(meter.peak_private / mb, 1),
            "growth_mb": round((meter.peak_private - before) / mb, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=lambda s: [int(x) for x in s.split(",")], nargs="+", default=[[100000, 500000]],
                    help="collection sizes (space- or comma-separated)")
    ap.add_argument("--shard-size", type=int, default=4000)
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # a size, in this process
    args = ap.parse_args()
    if args.one is not None:
        with tempfile.TemporaryDirectory(prefix="artmem-finalize-bench-") as tmp:
            print(json.dumps(measure(args.one, args.shard_size, Path(tmp))))
        return 0
    for n in [n for group in args.n for n in group]:
        proc = subprocess.run([sys.executable, __file__, "--one", str(n), "--shard-size", str(args.shard_size)],
                              capture_output=True, text=True, env=os.environ.copy())
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-4000:])
            return proc.returncode
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"N={n:>9,} ({r['shards']} shards): finalize {r['seconds']:.2f} s, private RSS {r['private_before_mb']:.0f} "
              f"-> peak {r['private_peak_mb']:.0f} MB (+{r['growth_mb']:.1f} MB); largest child process "
              f"{r['child_peak_rss_mb']:.0f} MB RSS", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
