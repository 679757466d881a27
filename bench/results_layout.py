"""Finishing a feature job: one merged features.parquet (baseline) vs the shard dataset (--no-merge).

Writes N synthetic feature rows (D float32 each) as finished shards of a job folder, then runs
`finalize` on it twice, each in a fresh process: with `merge=True` (what every job did before) and
with `merge=False`. Prints each one's wall time and peak RSS, and the ratio of the two. Then
streams the dataset with `iter_feature_batches` and reads it whole with `read_features`, to show
what a reader pays in each layout.

    .venv/bin/python bench/results_layout.py                          # 200,000 x 512 (400 MB)
    .venv/bin/python bench/results_layout.py --n 20000 --dim 256      # quick
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _write_shards(out: Path, n: int, dim: int, shard_size: int) -> None:
    import numpy as np
    import pandas as pd

    from artmem.batch.job import write_shard_files

    rng = np.random.default_rng(0)
    for sid, start in enumerate(range(0, n, shard_size)):
        rows = range(start, min(start + shard_size, n))
        vec = rng.random((len(rows), dim), dtype=np.float32)
        frame = pd.DataFrame({"path": [f"img/{i:08d}.jpg" for i in rows], "embedding": list(vec)})
        write_shard_files(out, "features", sid, frame, [])


def _child(out: str, n: int, mode: str) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    import pandas as pd

    from artmem.batch.processors import BaseProcessor
    from artmem.data.collection import Collection

    class Features(BaseProcessor):
        kind = "features"

    t0 = time.perf_counter()
    if mode in ("merge", "dataset"):
        from artmem.batch.finalize import finalize
        from artmem.batch.job import JobSpec

        coll = Collection(pd.DataFrame({"path": [f"img/{i:08d}.jpg" for i in range(n)]}), out, "bench")
        result = finalize(JobSpec(coll, Features(), out, merge=(mode == "merge")))
        rows = result.n_rows
    elif mode == "stream":
        from artmem.batch.results import iter_feature_batches

        rows = sum(len(p) for p, _ in iter_feature_batches(out, batch_rows=16384))
    else:
        from artmem.batch.results import read_features

        rows = len(read_features(out))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"mode": mode, "seconds": time.perf_counter() - t0, "peak_mb": peak, "rows": rows}))


def _run(out: Path, n: int, mode: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", mode, "--out", str(out), "--n", str(n)],
                          check=True, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000, help="feature rows (default 200,000)")
    ap.add_argument("--dim", type=int, default=512, help="vector length (default 512)")
    ap.add_argument("--shard-size", type=int, default=2048, help="rows per shard (default 2048)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.out, args.n, args.child)
        return
    with tempfile.TemporaryDirectory(prefix="artmem-layout-") as tmp:
        merged, dataset = Path(tmp) / "merged", Path(tmp) / "dataset"
        for out in (merged, dataset):
            _write_shards(out, args.n, args.dim, args.shard_size)
        print(f"{args.n:,} rows x {args.dim} float32 ({args.n * args.dim * 4 / 2**20:,.0f} MB of vectors), "
              f"shards of {args.shard_size}")
        a, b = _run(merged, args.n, "merge"), _run(dataset, args.n, "dataset")
        for r in (a, b):
            print(f"  finalize {r['mode']:8s} {r['seconds']:7.2f} s  peak RSS {r['peak_mb']:7.0f} MB")
        print(f"  merged / dataset: time {a['seconds'] / b['seconds']:.1f}x, peak RSS {a['peak_mb'] / b['peak_mb']:.1f}x")
        for mode in ("stream", "read"):
            r = _run(dataset, args.n, mode)
            what = "iter_feature_batches (16,384 rows)" if mode == "stream" else "read_features (whole)"
            print(f"  dataset {what:36s} {r['seconds']:7.2f} s  peak RSS {r['peak_mb']:7.0f} MB")


if __name__ == "__main__":
    main()
