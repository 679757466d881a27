"""Scale simulation for the batch engines: a large synthetic collection of real images, and a meter
of this process's memory.

`build_scale_collection` makes a collection of `n` distinct relative paths that are symbolic links
to a few hundred small real images (crops of the photographs and paintings bundled with the
installed packages, JPEG at 64 px), so every row decodes a real JPEG while the folder stays small;
its table stays in a Parquet file (`CollectionFile`).
`PeakRSS` samples the resident memory of this process in a thread. `simulate` scores such a
collection with `tiny_test` on a local Ray instance and reports the driver's memory and whether
every row is present exactly once; `python -m artmem.batch.scale_sim --n N` runs it in a fresh
process and prints the figures as JSON.

Used by `bench/ray_driver_memory.py` and `tests/batch/test_ray_scale.py`.
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

from artmem.errors import ArtmemError


def write_distinct_images(folder: Path, count: int = 300, size: int = 64, seed: int = 0) -> list[str]:
    """`count` JPEGs cut from the bundled real images (random crops, long side `size` px)."""
    from PIL import Image

    from artmem.data.samples import real_photos

    sources = sorted(real_photos())
    if not sources:
        raise ArtmemError("no bundled sample images found (scikit-image / scikit-learn data)")
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    opened = {}
    for i in range(count):
        src = sources[i % len(sources)]
        if src not in opened:
            with Image.open(src) as im:
                opened[src] = im.convert("RGB")
        im = opened[src]
        w, h = im.size
        cw, ch = int(w * rng.uniform(0.3, 1.0)), int(h * rng.uniform(0.3, 1.0))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        crop = im.crop((x, y, x + cw, y + ch))
        scale = size / max(crop.size)
        crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))),
                           Image.Resampling.BICUBIC)
        name = f"img_{i:04d}.jpg"
        crop.save(folder / name, quality=90)
        names.append(name)
    return names


def build_scale_collection(root: Path, n: int, distinct: int = 300, size: int = 64, per_dir: int = 1000):
    """A collection of `n` rows under `root`: `links/DDDD/NNNNNNNN.jpg` -> one of `distinct` images.

    The table is written to `root/collection.parquet` one folder of links at a time and returned
    as a `CollectionFile`, so neither building nor scoring holds the `n` paths in this process.

    Returns:
        artmem.batch.plan.CollectionFile named "scale-sim" (paths in sorted order).
    """
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from artmem.batch.plan import CollectionFile
    from artmem.data.collection import META_KEY

    root = Path(root).resolve()
    images = write_distinct_images(root / "images", distinct, size)
    info = json.dumps({"root": str(root), "name": "scale-sim", "meta": {"format": "scale-sim", "n": n}})
    schema = pa.schema([("path", pa.string())], metadata={META_KEY: info})
    with pq.ParquetWriter(root / "collection.parquet", schema) as writer:
        for start in range(0, n, per_dir):
            folder = root / "links" / f"{start // per_dir:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            paths = []
            for i in range(start, min(start + per_dir, n)):
                link = folder / f"{i:08d}.jpg"
                if not link.is_symlink():
                    os.symlink(root / "images" / images[i % len(images)], link)
                paths.append(f"links/{i // per_dir:04d}/{i:08d}.jpg")
            writer.write_table(pa.table({"path": pa.array(paths, pa.string())}, schema=schema))
    return CollectionFile(root / "collection.parquet")


class PeakRSS:
    """Memory of this process, sampled every `interval` s in a daemon thread (a context manager).

    `peak` is the highest resident set size (RSS); `peak_private` the highest RSS less its shared
    pages, i.e. this process's own heap: Ray maps its shared-memory object store into the driver,
    and the pages of it the driver touches count in RSS though they belong to the object store.
    """

    def __init__(self, interval: float = 0.05):
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self.peak = self.peak_private = 0
        self.sample()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def sample(self) -> tuple[int, int]:
        """(RSS, private RSS) now; updates the peaks."""
        info = self._proc.memory_info()
        rss, private = int(info.rss), int(info.rss - getattr(info, "shared", 0))
        self.peak = max(self.peak, rss)
        self.peak_private = max(self.peak_private, private)
        return rss, private

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def exactly_once(out: Path, kind: str, collection) -> dict:
    """Every image of `collection` exactly once across the job's shard files (results + errors),
    read back as one pyarrow dataset; the merged table too where the job wrote one."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    shard_dir = Path(out) / "shards"
    files = sorted(str(f) for f in shard_dir.glob(f"{kind}-*.parquet"))
    seen = ds.dataset(files, format="parquet").to_table(columns=["path"]).column("path")
    wanted = pq.read_table(collection.file, columns=["path"]).column("path")
    distinct = pc.count_distinct(seen).as_py()
    covered = pc.all(pc.is_in(wanted, value_set=pa.chunked_array(seen.chunks, seen.type).combine_chunks())).as_py()
    check = {"shard_files": sum(1 for f in files if not f.endswith(".errors.parquet")),
             "rows_in_shards": len(seen), "distinct_paths": distinct, "duplicates": len(seen) - distinct,
             "all_collection_paths_present": bool(covered),
             "leftover_parts": [p.name for p in shard_dir.iterdir() if p.name.startswith(".parts")]}
    ok = len(seen) == distinct == len(wanted) and covered
    merged = Path(out) / f"{kind}.parquet"
    if merged.exists():  # the merged table and errors.parquet: each image once as well
        rows = pa.concat_arrays([pq.read_table(f, columns=["path"]).column("path").combine_chunks()
                                 for f in (merged, Path(out) / "errors.parquet")])
        check["merged_rows"] = len(rows)
        ok = ok and len(rows) == pc.count_distinct(rows).as_py() == len(wanted)
    check["exactly_once"] = bool(ok)
    return check


def simulate(work: Path, n: int, *, kind: str = "scores", shard_size: int = 4000, batch_size: int = 256,
             distinct: int = 300, num_cpus: int = 2, object_store_mb: int = 512, merge: bool | None = None) -> dict:
    """Build a scale collection of `n` rows in `work`, score it with `tiny_test` on a local Ray
    instance, and measure this process's (the driver's) memory; run it in a fresh process.

    Returns the figures: `setup_*` after the collection is built and Ray started, `pipeline_peak_*`
    until the last shard is written (the driver plans and counts; workers write), `overall_peak_*`
    including `finalize`, each as RSS and private RSS in MB (see `PeakRSS`), and the `exactly_once`
    check. `merge` is the job's (`JobSpec.merge`): with True (and None up to 1 M rows) `finalize`
    merges every shard into one table in this process (O(N)); with False the shards stay a dataset
    and `finalize` checks them against the collection file out of core (O(number of shards)).
    """
    import sys

    from artmem.batch.engines.ray import init_ray, run_job, shutdown
    from artmem.batch.job import JobSpec
    from artmem.batch.processors import ModelProcessor

    mb = 1024 * 1024
    work = Path(work)
    t0 = time.perf_counter()
    coll = build_scale_collection(work / "coll", n, distinct=distinct)
    build_s = time.perf_counter() - t0
    init_ray(num_cpus=num_cpus, object_store_memory=object_store_mb * mb)
    try:
        spec = JobSpec(coll, ModelProcessor("tiny_test", kind=kind, backend="torch"), work / "out",
                       shard_size=shard_size, device="cpu", merge=merge)
        pipeline_peak = [(0, 0)]
        with PeakRSS() as meter:
            setup = meter.sample()

            def on_shard(_res) -> None:  # the last call is the end of the pipeline
                meter.sample()
                pipeline_peak[0] = (meter.peak, meter.peak_private)

            res = run_job(spec, batch_size=batch_size, progress=False, on_shard_done=on_shard)
    finally:
        shutdown()
    check = exactly_once(work / "out", kind, coll)
    return {"n": n, "kind": kind, "merge": merge, "shard_size": shard_size, "batch_size": batch_size, "num_cpus": num_cpus,
            "collection_build_s": round(build_s, 1), "seconds": round(res.seconds, 1),
            "pipeline_s": round(res.ray["pipeline_s"], 1),
            "images_per_s": round(n / max(res.ray["pipeline_s"], 1e-9), 1),
            "workers": res.ray["workers"],
            "setup_rss_mb": round(setup[0] / mb, 1), "setup_private_mb": round(setup[1] / mb, 1),
            "pipeline_peak_mb": round(pipeline_peak[0][0] / mb, 1),
            "pipeline_peak_private_mb": round(pipeline_peak[0][1] / mb, 1),
            "overall_peak_mb": round(meter.peak / mb, 1), "overall_peak_private_mb": round(meter.peak_private / mb, 1),
            "driver_imported_torch": "torch" in sys.modules, **check}


def main(argv: list[str] | None = None) -> int:
    """`python -m artmem.batch.scale_sim --n N [...]`: one `simulate` run, its figures as one JSON
    line on stdout (run each size in its own process so that peaks do not carry over)."""
    import argparse
    import json
    import shutil
    import tempfile

    ap = argparse.ArgumentParser(description="one Ray scale-simulation run (driver memory)")
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--kind", choices=["scores", "features"], default="scores")
    ap.add_argument("--shard-size", type=int, default=4000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--distinct", type=int, default=300)
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--object-store-mb", type=int, default=512)
    ap.add_argument("--tmp", default=None, help="parent folder of the work folder (default: $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep the collection and outputs")
    ap.add_argument("--no-merge", action="store_true",
                    help="leave the results as a shard dataset (default: merged up to 1 M rows)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="artmem-scalesim-", dir=args.tmp))
    try:
        row = simulate(work, args.n, kind=args.kind, shard_size=args.shard_size, batch_size=args.batch_size,
                       distinct=args.distinct, num_cpus=args.num_cpus, object_store_mb=args.object_store_mb,
                       merge=False if args.no_merge else None)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
