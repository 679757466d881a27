"""Local engine vs Ray engine on the same job: images/s of each, their ratio, Ray's start-up cost.

Baseline: the local engine (`artmem.batch.engines.local.run_local`, DataLoader decode workers + one model
process). Candidate: `artmem.batch.engines.ray.run_job` on a local Ray instance limited to
`--num-cpus` CPUs (2 by default). Both score the same JPEGs (made from the photographs and paintings
bundled with the installed packages, random crops resized to ~`--size` px) into fresh folders.

    .venv/bin/python bench/engines.py                      # 64 images, resmem, 2 CPUs
    .venv/bin/python bench/engines.py --model tiny_test    # quick plumbing run
    .venv/bin/python bench/engines.py --images 512 --kind features --actors 2 --json out/engines.json

Reported: end-to-end seconds and images/s per engine (model loading included on both sides, Ray's
`ray.init` excluded and reported separately), the Ray/local ratio, the per-actor compute rate
(images / seconds inside `processor.process`) and the single-core decode rate, which
`docs/scaling.md` uses to estimate cluster throughput.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

logger = logging.getLogger("bench.engines")


def make_images(root: Path, n: int, size: int, seed: int = 0) -> list[str]:
    """`n` JPEGs cut from the bundled real images (random crops, resized so the long side is `size`)."""
    from PIL import Image

    from artmem.data.samples import real_photos

    sources = sorted(real_photos())
    if not sources:
        raise SystemExit("no bundled sample images found (run `make setup`)")
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        src = sources[i % len(sources)]
        with Image.open(src) as im:
            im = im.convert("RGB")
            w, h = im.size
            cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            crop = im.crop((x, y, x + cw, y + ch))
            scale = size / max(crop.size)
            crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))),
                               Image.Resampling.BICUBIC)
            name = f"img_{i:05d}.jpg"
            crop.save(root / name, quality=90)
            names.append(name)
    return names


def decode_rate(processor, paths: list[str], limit: int = 16) -> float:
    """Images/s of `processor.load` (decode + preprocess) on one core, in this process."""
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    for p in paths[:limit]:
        processor.load(p)
    return min(limit, len(paths)) / (time.perf_counter() - t0)


def _r(x, nd: int = 2):
    return None if x is None else round(float(x), nd)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--size", type=int, default=512, help="long side of the JPEGs in px")
    ap.add_argument("--model", default="resmem")
    ap.add_argument("--kind", choices=["scores", "features"], default="scores")
    ap.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray instance")
    ap.add_argument("--actors", type=int, default=None, help="Ray model actors (default: as many as fit)")
    ap.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto",
                    help="model backend for both engines (auto: ONNX Runtime on CPU where supported)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--shard-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None, help="local engine decode workers")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: temporary)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    from artmem.batch.engines import ray as ray_engine
    from artmem.batch.engines.local import run_local
    from artmem.batch.job import JobSpec
    from artmem.batch.processors import ModelProcessor
    from artmem.data.collection import Collection

    work = args.keep or Path(tempfile.mkdtemp(prefix="artmem-bench-engines-"))
    try:
        names = make_images(work / "images", args.images, args.size)
        coll = Collection(pd.DataFrame({"path": names}), str(work / "images"), "bench")

        def spec(out: str) -> JobSpec:
            proc = ModelProcessor(args.model, kind=args.kind, backend=args.backend)
            return JobSpec(coll, proc, work / out, shard_size=args.shard_size, device="cpu")

        warm = ModelProcessor(args.model, kind=args.kind, backend=args.backend)
        warm.setup("cpu")  # one-off costs (ONNX export to the cache) stay out of both timings
        dec = decode_rate(warm, coll.abs_paths())
        del warm
        shutil.rmtree(work / "local", ignore_errors=True)
        local = run_local(spec("local"), resume=False, batch_size=args.batch_size,
                          num_workers=args.workers, progress=False)

        t0 = time.perf_counter()
        session = ray_engine.init_ray(num_cpus=args.num_cpus, object_store_memory=512 * 1024**2)
        startup = time.perf_counter() - t0
        try:
            ray = ray_engine.run_job(spec("ray"), actors=args.actors, resume=False,
                                     batch_size=args.batch_size, progress=False)
        finally:
            ray_engine.shutdown()
        workers = ray.ray["workers"]
        busy = sum(w["seconds"] for w in workers.values())
        per_actor = sum(w["images"] for w in workers.values()) / busy if busy else float("nan")
        from artmem.batch.results import read_errors

        same = ray.table["path"].tolist() == local.table["path"].tolist()
        figures = {
            "model": args.model, "kind": args.kind, "images": args.images, "size": args.size,
            "cpus_visible": os.cpu_count(), "ray_num_cpus": args.num_cpus,
            "ray_plan": ray.ray["plan"].describe(),
            "local_seconds": round(local.seconds, 2),
            "local_images_per_s": round(args.images / local.seconds, 2),
            "ray_seconds": round(ray.seconds, 2),
            "ray_images_per_s": round(args.images / ray.seconds, 2),
            "ray_over_local": round(local.seconds / ray.seconds, 3),
            "ray_init_seconds": round(startup, 2),
            "ray_actor_compute_images_per_s": round(per_actor, 2),
            "ray_first_output_s": _r(ray.ray["first_output_s"]),
            "decode_images_per_s_one_core": round(dec, 2),
            "same_paths": same,
            "errors_local": len(read_errors(work / "local")), "errors_ray": len(read_errors(work / "ray")),
            "load_average_1min": round(os.getloadavg()[0], 1),
        }
        del session
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)

    print(f"engines: {args.images} JPEGs (~{args.size} px), {args.model} {args.kind}, "
          f"{os.cpu_count()} visible CPU(s), load average {figures['load_average_1min']}")
    print(f"  local engine  {figures['local_seconds']:8.2f} s  {figures['local_images_per_s']:7.2f} img/s  (baseline)")
    print(f"  ray engine    {figures['ray_seconds']:8.2f} s  {figures['ray_images_per_s']:7.2f} img/s  "
          f"[{figures['ray_plan']}]")
    print(f"  ray / local throughput ratio: {figures['ray_over_local']:.3f}")
    print(f"  ray start-up (ray.init, not in the ray figure): {figures['ray_init_seconds']:.2f} s")
    print(f"  ray pipeline: first results after {figures['ray_first_output_s']} s "
          "(worker processes start, each actor loads the model, first batch)")
    print(f"  per-actor compute rate: {figures['ray_actor_compute_images_per_s']:.2f} img/s; "
          f"decode+preprocess on one core: {figures['decode_images_per_s_one_core']:.2f} img/s")
    print(f"  same rows from both engines: {same}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(args.json)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
