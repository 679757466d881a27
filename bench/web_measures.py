"""The explorer's measures of a large collection: memory and time to load them, and one uncached
grid page sorted by a measure.

Writes a collection of --rows rows (`web_rows.write_rows_collection`) and a measures table of the
same rows (shuffled, 8 float columns, 2 % of the rows missing), then, each in a fresh process
(the machine's other load shifts the times, not the RSS):
baseline = ExplorerData without measures, first = with measures (first start), restart = again.
RSS growth is the process's RSS after ExplorerData minus before it, compared with the baseline's.

    .venv/bin/python bench/web_measures.py --rows 1000000 --dir /tmp/measures1m
    PYTHONPATH=<a checkout of main>/src .venv/bin/python bench/web_measures.py ...   # before
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MEASURES = ["edge_density", "symmetry", "colorfulness", "brightness", "contrast", "entropy",
            "saturation", "hue_spread"]


def write_measures(coll: Path, results: Path, seed: int = 1) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = pq.read_metadata(coll).num_rows
    rng = np.random.default_rng(seed)
    keep = rng.permutation(n)[: int(n * 0.98)]
    ids = np.char.zfill(keep.astype(str), 8)
    cols = {"path": pa.array(np.char.add(np.char.add("img/", ids), ".jpg"))}
    cols.update({m: pa.array(rng.random(len(keep))) for m in MEASURES})
    (results / "measures").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), results / "measures" / "measures.parquet", row_group_size=1 << 20)


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1e6


def measure(coll: str, results: str) -> dict:
    """One ExplorerData in this process: RSS growth and time; one uncached page by a measure."""
    from artmem.web.data import ExplorerData

    before = rss_mb()
    t0 = time.perf_counter()
    data = ExplorerData(coll, results)
    t_open = time.perf_counter() - t0
    out = {"open_s": round(t_open, 3), "rss_growth_mb": round(rss_mb() - before, 1),
           "measures": data.artefacts.get("measures")}
    if data.measures is not None:
        t0 = time.perf_counter()
        total, ids = data.page({"style": "style_03"}, sort="measure:symmetry", order="desc", offset=480, limit=48)
        out["page_ms"] = round(1e3 * (time.perf_counter() - t0), 1)
        out["page_rss_growth_mb"] = round(rss_mb() - before, 1)
        t0 = time.perf_counter()
        data.measures_of(int(ids[0]))
        out["measures_of_ms"] = round(1e3 * (time.perf_counter() - t0), 2)
        data.store.orderings.wait()  # the page started a background sort: the next run must not share the CPU
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/artmem_web_measures"))
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child)))
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from web_rows import write_rows_collection

    coll, results = args.dir / "collection.parquet", args.dir / "results"
    if not coll.is_file():
        coll, results = write_rows_collection(args.dir, args.rows, n_real=0)
        shutil.rmtree(results / "scores")  # scores are another bench's subject
        write_measures(coll, results)
    bare = args.dir / "bare"  # the same collection without measures: the baseline

    def child(res: Path) -> dict:
        got = subprocess.run([sys.executable, __file__, "--child", str(coll), str(res)],
                             capture_output=True, text=True, check=True)
        return json.loads(got.stdout.strip().splitlines()[-1])

    if not bare.is_dir():  # writes the memory-mapped copy once, shared by the runs below
        bare.mkdir()
        child(bare)
        (results / ".explorer").mkdir(exist_ok=True)
        for f in (bare / ".explorer").glob("collection-*.arrow"):
            shutil.copy(f, results / ".explorer" / f.name)
    print("baseline (no measures):", child(bare))
    for f in (results / ".explorer").glob("measures-*"):
        f.unlink()
    print("first start (measures):", child(results))
    print("restart (measures):   ", child(results))


if __name__ == "__main__":
    main()
