"""Throughput of `artmem measures` (edges, colour, CNN symmetry) before and after the fast path.

Before: the symmetry branch (ResMem's AlexNet-like conv1..conv5 at 512 px, image + mirror image) in
PyTorch, as `artmem measures` ran it until issue 18. After: the same branch through ONNX Runtime in
fp32 (the CPU default now) and in int8 (`--precision int8`, calibrated on a sample of the images).
Prints img/s of the whole measures job for each, and how far the int8 symmetry values are from fp32.

    .venv/bin/python bench/measures.py --n 16          # small (shared machine)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def run(coll, out: Path, precision: str, torch_branch: bool, batch_size: int):
    """One measures job (local engine, decoding in the main process); (table, seconds)."""
    from artmem.analysis.measures import MeasureConfig, MeasuresProcessor
    from artmem.batch.api import run_job

    proc = MeasuresProcessor(MeasureConfig(), precision=precision,
                             calibration=coll.abs_paths() if precision != "fp32" else None)
    if torch_branch:
        proc._resolved = (None, "fp32")  # the PyTorch branch: what ran before the fast path
    proc.resolved_precision("cpu")  # export/calibration (cached) outside the timing
    t0 = time.perf_counter()
    result = run_job(coll, proc, out, device="cpu", batch_size=batch_size, num_workers=0, resume=False,
                     progress=False)
    return result.table.sort_values("path").reset_index(drop=True), time.perf_counter() - t0


def main(argv=None) -> int:
    import numpy as np
    from scipy.stats import spearmanr

    sys.path.insert(0, str(Path(__file__).parent))
    from score_throughput import cpu_info, make_jpegs

    from artmem.analysis.measures import SYMMETRY_COLUMNS
    from artmem.data.collection import open_collection

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32, help="JPEGs (crops of the bundled real images)")
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="artmem-bench-") as tmp:
        tmp = Path(tmp)
        make_jpegs(tmp / "images", args.n)
        coll = open_collection(str(tmp / "images"))
        print(f"{len(coll)} JPEGs; {cpu_info()}")
        runs = {}
        for name, precision, torch_branch in (("torch fp32 (before)", "fp32", True), ("onnx fp32", "fp32", False),
                                              ("onnx int8", "int8", False)):
            runs[name] = run(coll, tmp / name.replace(" ", "_"), precision, torch_branch, args.batch_size)
        base_t = runs["torch fp32 (before)"][1]
        ref = runs["torch fp32 (before)"][0]
        for name, (table, secs) in runs.items():
            diffs = [float(np.abs(table[c] - ref[c]).max()) for c in SYMMETRY_COLUMNS]
            rho = [float(spearmanr(table[c], ref[c]).statistic) for c in SYMMETRY_COLUMNS]
            print(f"  {name:<20} {len(table) / secs:6.2f} img/s ({base_t / secs:.2f}x)   symmetry vs before: "
                  f"max |diff| {max(diffs):.4f}, Spearman conv1 {rho[0]:.4f} conv5 {rho[1]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
