"""Throughput of `artmem score` (fp32 and int8) against the resmem README loop, on the same real JPEGs.

Baseline (a), the loop from the resmem README: for each image, open it, convert to RGB, apply the
package's `transformer`, call `model(x.view(-1, 3, 227, 227))` (one forward per image, in eval mode).
(b) `artmem score` in fp32 (local engine: DataLoader decode workers, batched ONNX Runtime or torch
forward, sharded Parquet output) and (c) `artmem score --precision int8` (the same job on the int8
model, calibrated once on a sample of the bench images, as a user's job calibrates on theirs).
Also printed: the pure-forward throughput on pre-decoded batched tensors (torch, ONNX fp32, ONNX
int8), and the fidelity of int8 against fp32 on the same images: Spearman/Pearson/max |diff| of the
scores, and mean cosine / top-10 neighbour overlap of the fc7 features (`--no-features` skips them).
Targets (issue 18): (c) >= 1.7x (b) and >= 3.5x (a); Spearman >= 0.99; fc7 cosine >= 0.99.

    .venv/bin/python bench/score_throughput.py                 # 64 JPEGs, defaults
    .venv/bin/python bench/score_throughput.py --n 24 --rounds 1   # small (shared machine)

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


def artmem_processor(backend: str, precision: str = "fp32", root: Path | None = None):
    """The processor `artmem score --model resmem [--precision int8]` uses over the images in
    `root`, set up (model load / ONNX export / int8 calibration, all cached after the first run)."""
    from artmem.batch.api import model_processor
    from artmem.data.collection import open_collection

    proc = model_processor(open_collection(str(root)), "resmem", "scores", backend=backend, precision=precision)
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


def pure_forward(paths: list[Path], procs: dict, batch_size: int, n_batches: int = 2) -> dict[str, float]:
    """img/s of the forward alone on one pre-decoded (B, 3, 227, 227) batch, for each set-up processor."""
    import torch
    from PIL import Image

    from artmem.models.transforms import build_transform

    out = {}
    for name, proc in procs.items():
        tf = build_transform(proc.cfg)
        x = torch.stack([tf(Image.open(p).convert("RGB")) for p in paths[:batch_size]])
        proc.forward(x)  # warm-up
        t0 = time.perf_counter()
        for _ in range(n_batches):
            proc.forward(x)
        out[name] = n_batches * len(x) / (time.perf_counter() - t0)
    return out


def feature_fidelity(root: Path, layer: str = "fc7") -> dict:
    """int8 vs fp32 `layer` vectors of every bench image (one fp32 and one int8 ONNX pass)."""
    import numpy as np

    from artmem.batch.api import model_processor
    from artmem.data.collection import open_collection
    from artmem.models.quantize import feature_fidelity as fidelity
    from artmem.models.quantize import image_batches

    coll = open_collection(str(root))
    vecs = []
    for precision in ("fp32", "int8"):
        proc = model_processor(coll, "resmem", "features", layer=layer, backend="onnx", precision=precision)
        proc.setup("cpu")
        batches = image_batches(coll.abs_paths(), lambda p, pr=proc: pr.load(p).numpy(), 16)
        vecs.append(np.concatenate([proc.forward(b)[0] for b in batches]))
    return {"layer": layer, **fidelity(vecs[0], vecs[1], k=10)}


def cpu_info() -> str:
    """CPU model and the SIMD flags that decide int8 speed (VNNI: int8 dot products in one step)."""
    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown CPU":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return f"{model} [{' '.join(simd) or 'no avx2'}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=64, help="number of JPEGs (default 64)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=None, help="decode workers for artmem (default: auto)")
    ap.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"))
    ap.add_argument("--rounds", type=int, default=2,
                    help="run (a), (b), (c) this many times, rotating their order each round, and sum, so "
                    "that a change in machine load hits all alike (default 2)")
    ap.add_argument("--skip-forward", action="store_true", help="skip the pure-forward measurement")
    ap.add_argument("--no-features", dest="features", action="store_false",
                    help="skip the fc7 feature fidelity (saves one export and one calibration)")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    import torch

    from artmem.models.quantize import score_fidelity

    with tempfile.TemporaryDirectory(prefix="artmem-bench-") as tmp:
        tmp = Path(tmp)
        paths = make_jpegs(tmp / "images", args.n)
        print(f"{len(paths)} JPEGs, {cpu_info()}, {os.cpu_count()} CPU(s), torch {torch.__version__}, "
              f"threads {torch.get_num_threads()}, load avg {os.getloadavg()[0]:.1f}", file=sys.stderr)
        model, load_s = readme_model()
        procs, setup = {}, {}
        for precision in ("fp32", "int8"):
            procs[precision], setup[precision] = artmem_processor(args.backend, precision, tmp / "images")
        secs = {"a": 0.0, "b": 0.0, "c": 0.0}
        cpu = dict.fromkeys(secs, 0.0)
        scores: dict[str, dict] = {}
        n_done = 0
        for r in range(args.rounds):
            order = ("a", "b", "c")[r % 3:] + ("a", "b", "c")[:r % 3]
            for which in order:
                if which == "a":
                    scores[which], t, c = readme_loop(paths, model)
                else:
                    proc = procs["fp32" if which == "b" else "int8"]
                    scores[which], t, c = artmem_job(proc, tmp / "images", tmp / f"out-{which}{r}",
                                                     args.batch_size, args.workers)
                secs[which] += t
                cpu[which] += c
                print(f"round {r + 1} ({which}): {len(paths) / t:.2f} img/s, "
                      f"load avg {os.getloadavg()[0]:.1f}", file=sys.stderr)
            n_done += len(paths)
        del model
        fwd = {} if args.skip_forward else pure_forward(paths, procs, args.batch_size)
        feats = feature_fidelity(tmp / "images") if args.features else {}
    names = sorted(scores["a"])
    fid = score_fidelity([scores["b"][k] for k in names], [scores["c"][k] for k in names])
    held_out = procs["int8"]._resolved and _held_out_fidelity(procs["int8"])
    rate = {k: n_done / v for k, v in secs.items()}
    fig = {
        "images": len(paths),
        "rounds": args.rounds,
        "cpu": cpu_info(),
        "readme_img_s": rate["a"],
        "artmem_fp32_img_s": rate["b"],
        "artmem_int8_img_s": rate["c"],
        "int8_vs_fp32": rate["c"] / rate["b"],
        "int8_vs_readme": rate["c"] / rate["a"],
        "fp32_vs_readme": rate["b"] / rate["a"],
        "max_abs_score_diff_fp32_vs_readme": max(abs(scores["a"][k] - scores["b"][k]) for k in names),
        "int8_fidelity": fid,
        "int8_fidelity_held_out": held_out,
        "fc7_fidelity": feats,
        "artmem_backend": procs["fp32"].active_backend,
        "batch_size": args.batch_size,
        "pure_forward_img_s": fwd,
        "cpu_s_per_img": {k: v / n_done for k, v in cpu.items()},
        "readme_model_load_s": load_s,
        "artmem_setup_s": setup,
        "load_avg_1min_end": os.getloadavg()[0],
        "cpus": os.cpu_count(),
    }
    print(f"hardware                    {fig['cpu']}, {os.cpu_count()} CPU(s)")
    print(f"images                      {len(paths)} x {args.rounds} round(s), order rotated each round")
    print(f"(a) resmem README loop      {rate['a']:.2f} img/s   (model load {load_s:.1f} s, excluded)")
    print(f"(b) artmem score fp32       {rate['b']:.2f} img/s   [{procs['fp32'].active_backend}, batch "
          f"{args.batch_size}; setup {setup['fp32']:.1f} s excluded]")
    print(f"(c) artmem score int8       {rate['c']:.2f} img/s   [{procs['int8'].active_backend}; setup "
          f"{setup['int8']:.1f} s excluded (calibration, cached after the first run)]")
    print(f"ratios                      (c)/(b) {fig['int8_vs_fp32']:.2f}x (target >= 1.7)   "
          f"(c)/(a) {fig['int8_vs_readme']:.2f}x (target >= 3.5)   (b)/(a) {fig['fp32_vs_readme']:.2f}x")
    print("CPU-seconds per image       " + "   ".join(f"({k}) {v / n_done:.2f}" for k, v in cpu.items())
          + "   (user+sys incl. decode workers; robust to other load)")
    print(f"max |score diff| fp32-README {fig['max_abs_score_diff_fp32_vs_readme']:.2e}")
    print(f"int8 vs fp32 scores         Spearman {fid['spearman']:.4f} (target >= 0.99), Pearson {fid['pearson']:.4f}, "
          f"max |diff| {fid['max_abs_diff']:.4f}, mean |diff| {fid['mean_abs_diff']:.4f}  ({fid['n']} images)")
    if held_out:
        print(f"  held-out (not calibrated) Spearman {held_out.get('spearman', float('nan')):.4f} "
              f"on {held_out.get('n')} images")
    if feats:
        print(f"int8 vs fp32 {feats['layer']} features  mean cosine {feats['mean_cosine']:.4f} (target >= 0.99), "
              f"min {feats['min_cosine']:.4f}, top-10 neighbour overlap {feats['top10_overlap']:.3f}")
    for k, v in fwd.items():
        print(f"pure forward, {k:<6}        {v:.2f} img/s   (pre-decoded batch of {args.batch_size})")
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2, default=float))
    return 0


def _held_out_fidelity(proc) -> dict:
    """The fidelity recorded beside the int8 file (measured on images not used for calibration)."""
    from artmem.models.quantize import read_record

    fid = read_record(proc._resolved[0]).get("fidelity", {})
    return fid.get("score", {})


if __name__ == "__main__":
    sys.exit(main())
