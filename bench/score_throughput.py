"""Throughput of `artmem score` against the resmem README loop, on the same real JPEGs.

Baseline (a), the loop from the resmem README: for each image, open it, convert to RGB, apply the
package's `transformer`, call `model(x.view(-1, 3, 227, 227))` (one forward per image, in eval mode).
Ours (b): `artmem score` (local engine: DataLoader decode workers, batched ONNX Runtime or torch
forward, sharded Parquet output). Also printed: the pure-forward throughput on pre-decoded batched
tensors for torch and ONNX Runtime, so the end-to-end figure can be compared with the compute limit.

    .venv/bin/python bench/score_throughput.py                 # 64 JPEGs, defaults
    .venv/bin/python bench/score_throughput.py --n 128 --batch-size 16 --workers 1

Images are made from the bundled photos and paintings (random crops and resizes saved as JPEG),
so every run uses the same 64+ real JPEGs (seeded). Model loading and the one-off ONNX export are
excluded from the throughput of both (a) and (b) and reported separately.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path


def cpu_seconds() -> float:
    """User+system CPU time of this process and its finished children (decode workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def make_jpegs(out: Path, n: int, seed: int = 0) -> list[Path]:
    """`n` JPEGs (crops/resizes of the bundled real images, long side 400-900 px)."""
    from PIL import Image

    from artmem.data.samples import real_photos

    sources = sorted(real_photos())
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        src = sources[i % len(sources)]
        img = Image.open(src).convert("RGB")
        w, h = img.size
        f = rng.uniform(0.6, 1.0)
        cw, ch = max(32, int(w * f)), max(32, int(h * f))
        left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
        img = img.crop((left, top, left + cw, top + ch))
        side = rng.randint(400, 900)
        s = side / max(img.size)
        img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.BICUBIC)
        p = out / f"img_{i:04d}.jpg"
        img.save(p, quality=90)
        paths.append(p)
    return paths


def readme_model():
    """`model = ResMem(pretrained=True); model.eval()` as in the README; returns (model, seconds)."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from resmem import ResMem

        model = ResMem(pretrained=True)
    model.eval()
    return model, time.perf_counter() - t0


def readme_loop(paths: list[Path], model) -> tuple[dict[str, float], float, float]:
    """The resmem README loop; returns ({name: score}, seconds, CPU seconds)."""
    from PIL import Image
    from resmem import transformer

    scores = {}
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    for p in paths:
        img = Image.open(p)
        img = img.convert("RGB")
        image_x = transformer(img)
        prediction = model(image_x.view(-1, 3, 227, 227))
        scores[p.name] = float(prediction.detach()[0, 0])
    return scores, time.perf_counter() - t0, cpu_seconds() - c0


def artmem_processor(backend: str):
    """The processor `artmem score --model resmem` uses, set up (model load / ONNX session)."""
    from artmem.batch.processors import ModelProcessor

    proc = ModelProcessor("resmem", "scores", backend=backend)
    t0 = time.perf_counter()
    proc.setup("cpu")  # model load (+ ONNX export on first use, cached afterwards)
    return proc, time.perf_counter() - t0


def artmem_job(proc, root: Path, out: Path, batch_size: int, workers: int | None):
    """`artmem score` through the library (the CLI calls the same function); fresh output folder."""
    from artmem.batch.engines.local import run_local
    from artmem.batch.job import JobSpec
    from artmem.data.collection import open_collection

    coll = open_collection(str(root))
    spec = JobSpec(coll, proc, out, device="cpu")
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    result = run_local(spec, resume=False, batch_size=batch_size, num_workers=workers, progress=False)
    secs = time.perf_counter() - t0
    cpu = cpu_seconds() - c0
    scores = {Path(p).name: float(s) for p, s in zip(result.table["path"], result.table["score"], strict=True)}
    return scores, secs, cpu


def pure_forward(paths: list[Path], batch_size: int, n_batches: int = 2) -> dict[str, float]:
    """img/s of the forward alone on pre-decoded (B, 3, 227, 227) tensors, torch and ONNX Runtime."""
    import numpy as np
    import torch
    from PIL import Image

    from artmem.batch.processors import ModelProcessor
    from artmem.models.transforms import build_transform

    out = {}
    for backend in ("torch", "onnx"):
        proc = ModelProcessor("resmem", "scores", backend=backend)
        proc.setup("cpu")
        tf = build_transform(proc.cfg)
        x = torch.stack([tf(Image.open(p).convert("RGB")) for p in paths[:batch_size]])
        proc.forward(x)  # warm-up
        t0 = time.perf_counter()
        for _ in range(n_batches):
            proc.forward(x)
        out[backend] = n_batches * len(x) / (time.perf_counter() - t0)
        del proc
        np.zeros(1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=64, help="number of JPEGs (default 64)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=None, help="decode workers for artmem (default: auto)")
    ap.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"))
    ap.add_argument("--rounds", type=int, default=2,
                    help="alternate (a) and (b) this many times (a,b then b,a ...) and sum, so that a "
                    "change in machine load hits both alike (default 2)")
    ap.add_argument("--skip-forward", action="store_true", help="skip the pure-forward measurement")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    import torch

    with tempfile.TemporaryDirectory(prefix="artmem-bench-") as tmp:
        tmp = Path(tmp)
        paths = make_jpegs(tmp / "images", args.n)
        print(f"{len(paths)} JPEGs, {os.cpu_count()} CPU(s), torch {torch.__version__}, "
              f"threads {torch.get_num_threads()}, load avg {os.getloadavg()[0]:.1f}", file=sys.stderr)
        model, load_s = readme_model()
        proc, setup_s = artmem_processor(args.backend)
        backend = proc.active_backend
        base_s = ours_s = base_cpu = ours_cpu = 0.0
        n_done = 0
        for r in range(args.rounds):
            order = ("a", "b") if r % 2 == 0 else ("b", "a")
            for which in order:
                if which == "a":
                    base, secs, cpu = readme_loop(paths, model)
                    base_s, base_cpu = base_s + secs, base_cpu + cpu
                else:
                    ours, secs, cpu = artmem_job(proc, tmp / "images", tmp / f"out{r}", args.batch_size,
                                                 args.workers)
                    ours_s, ours_cpu = ours_s + secs, ours_cpu + cpu
                print(f"round {r + 1} ({which}): {len(paths) / secs:.2f} img/s, "
                      f"load avg {os.getloadavg()[0]:.1f}", file=sys.stderr)
            n_done += len(paths)
        del model
        fwd = {} if args.skip_forward else pure_forward(paths, args.batch_size)
    diff = max(abs(base[k] - ours[k]) for k in base)
    fig = {
        "images": len(paths),
        "rounds": args.rounds,
        "readme_img_s": n_done / base_s,
        "artmem_img_s": n_done / ours_s,
        "ratio": base_s / ours_s,
        "max_abs_score_diff": diff,
        "artmem_backend": backend,
        "batch_size": args.batch_size,
        "pure_forward_img_s": fwd,
        "readme_cpu_s_per_img": base_cpu / n_done,
        "artmem_cpu_s_per_img": ours_cpu / n_done,
        "readme_model_load_s": load_s,
        "artmem_setup_s": setup_s,
        "load_avg_1min_end": os.getloadavg()[0],
        "cpus": os.cpu_count(),
    }
    print(f"images                      {len(paths)} x {args.rounds} round(s), alternating (a)/(b)")
    print(f"(a) resmem README loop      {fig['readme_img_s']:.2f} img/s   (model load {load_s:.1f} s, excluded)")
    print(f"(b) artmem score            {fig['artmem_img_s']:.2f} img/s   [{backend}, batch {args.batch_size}; "
          f"setup {setup_s:.1f} s excluded]")
    print(f"ratio (b)/(a)               {fig['ratio']:.2f}x")
    print(f"CPU-seconds per image       (a) {fig['readme_cpu_s_per_img']:.2f}   (b) {fig['artmem_cpu_s_per_img']:.2f}"
          f"   (user+sys incl. decode workers; robust to other load)")
    print(f"max |score difference|      {diff:.2e}")
    for k, v in fwd.items():
        print(f"pure forward, {k:<6}        {v:.2f} img/s   (pre-decoded batch of {args.batch_size})")
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
