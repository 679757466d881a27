"""Scale simulation (issue 16), scaled down for CI: the Ray driver's peak memory does not grow with
the number of rows, and every row is written exactly once.

Two collections of N_SMALL and N_LARGE rows (symbolic links to 120 real 64 px JPEGs, the table in
a Parquet file) are scored with `tiny_test` on a local 2-CPU Ray instance, each in a fresh process
(`python -m artmem.batch.scale_sim`), shards of SHARD_SIZE images. The full-size run (100 k vs
1 M rows) is `bench/ray_driver_memory.py --n 100000,1000000`; figures in bench/README.md.

The bound: before the driver planned out of core it grew by ~0.3 KB per added image (its lists of
paths) plus the collection table (~75 bytes per image), i.e. ~20 MB over the 50 k images added
here; the test allows 8 MB of growth of the driver's private memory at the pipeline's peak, room
for sampling noise (a few MB between runs of the same size) but not for a per-image cost of more
than ~0.17 KB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("ray")
pytest.importorskip("duckdb")

N_SMALL, N_LARGE = 10_000, 60_000
SHARD_SIZE = 2_000
MAX_GROWTH_MB = 8.0


def _simulate(n: int, tmp_path) -> dict:
    cmd = [sys.executable, "-m", "artmem.batch.scale_sim", "--n", str(n), "--shard-size", str(SHARD_SIZE),
           "--distinct", "120", "--num-cpus", "2", "--object-store-mb", "256", "--tmp", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.ray
@pytest.mark.slow  # ~70 k images through Ray on 2 CPUs: a few minutes
@pytest.mark.timeout(1800)
def test_driver_memory_flat_in_rows_and_every_row_once(tmp_path):
    small = _simulate(N_SMALL, tmp_path)
    large = _simulate(N_LARGE, tmp_path)
    for r, n in ((small, N_SMALL), (large, N_LARGE)):
        assert r["exactly_once"], r
        assert r["distinct_paths"] == r["rows_in_shards"] == n and r["duplicates"] == 0
        assert r["all_collection_paths_present"] and not r["leftover_parts"]
        assert r["shard_files"] == -(-n // SHARD_SIZE)
        assert sum(w["images"] for w in r["workers"].values()) == n  # every row went through an actor
    growth = large["pipeline_peak_private_mb"] - small["pipeline_peak_private_mb"]
    assert growth < MAX_GROWTH_MB, (
        f"driver private memory at the pipeline's peak grew by {growth:.1f} MB from {N_SMALL:,} to "
        f"{N_LARGE:,} rows ({small['pipeline_peak_private_mb']} -> {large['pipeline_peak_private_mb']} MB)")
