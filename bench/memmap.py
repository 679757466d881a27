"""Benchmark: memorability map by fully convolutional evaluation vs a naive per-crop loop, and
seconds per image before/after the fast path (torch FCN -> ONNX Runtime fp32 -> int8).

Same model (resmem by default), same image, same output grid (windows of 227 px every 32 px at
each scale): the fully convolutional ResMem (one forward pass per scale) against one forward pass
per window, looping over positions. Also times batched crops, and reports how closely the FCN
window scores agree with the per-crop scores (they differ only by what the windows see beyond
their borders: real neighbours vs zero padding). Target: FCN >= 5x faster than the loop.

With `--precision` (e.g. `--precision fp32,int8 --grids 3,5,8 --skip-naive`) it prints seconds per
image for the torch FCN (before: what `artmem memorability map` ran until issue 18) and for the ONNX
Runtime fp32 / int8 sessions (after), with the agreement of each map with the torch map.

    .venv/bin/python bench/memmap.py [--model resmem] [--grids 2,4] [--images 1] [--batched] [--threads N]
    .venv/bin/python bench/memmap.py --grids 3,5,8 --precision fp32,int8 --skip-naive --images 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None) -> int:
    import torch

    from artmem.data.images import load_image
    from artmem.data.samples import real_photos
    from artmem.memorability.maps import MapConfig, MapModel, memorability_map
    from artmem.models.factory import create_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resmem")
    ap.add_argument("--grids", default="2,4", help="windows along the shorter side per scale")
    ap.add_argument("--batched", action="store_true", help="also time batched crops (exact per-crop scores)")
    ap.add_argument("--images", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--precision", default=None,
                    help="comma list of fp32,int8: time the ONNX Runtime fast path against the torch FCN")
    ap.add_argument("--skip-naive", action="store_true", help="skip the (slow) naive per-crop loop")
    args = ap.parse_args(argv)
    if args.precision:
        return fast_path(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    grids = tuple(int(g) for g in args.grids.split(","))
    model = create_model(args.model)
    fcn = MapModel(model, method="auto")
    crops = MapModel(model, method="crops", stride=fcn.stride)
    print(f"model {args.model}: {fcn.method} (window {fcn.window}, stride {fcn.stride}); grids {grids}; "
          f"{torch.get_num_threads()} threads")
    cfg = MapConfig(grids=grids, map_size=128)
    photos = list(real_photos())[: args.images]
    t_fcn = t_crop = t_naive = 0.0
    corr = []
    for p in photos:
        img = load_image(p)
        memorability_map(fcn, img.resize((64, 64)), MapConfig(grids=(1,)))  # warm-up
        t0 = time.perf_counter()
        m_fcn = memorability_map(fcn, img, cfg)
        t_fcn += time.perf_counter() - t0
        t0 = time.perf_counter()
        m_naive = memorability_map(crops, img, cfg, naive=True)
        t_naive += time.perf_counter() - t0
        if args.batched:
            t0 = time.perf_counter()
            m_crop = memorability_map(crops, img, cfg)
            t_crop += time.perf_counter() - t0
            assert np.allclose(m_crop, m_naive, atol=1e-4), "batched crops must equal the naive loop"
        corr.append(np.corrcoef(m_fcn.ravel(), m_naive.ravel())[0, 1])
        print(f"  {p.name}: fcn {t_fcn:.1f} s, naive loop {t_naive:.1f} s"
              + (f", batched crops {t_crop:.1f} s" if args.batched else "")
              + f" (cumulative); Pearson(fcn map, per-crop map) = {corr[-1]:.2f}")
    windows = sum(g * g for g in grids)
    print(f"per image: fcn {t_fcn / len(photos):.2f} s, naive per-crop loop {t_naive / len(photos):.2f} s "
          f"(>= {windows} windows)" + (f", batched crops {t_crop / len(photos):.2f} s" if args.batched else ""))
    print(f"RATIO fcn vs naive loop: {t_naive / t_fcn:.1f}x (target >= 5x); map agreement r = {np.mean(corr):.2f}"
          + (f"; batched crops vs naive: {t_naive / t_crop:.1f}x" if args.batched else ""))
    return 0


def fast_path(args) -> int:
    """Seconds per image at the given grids: torch FCN (before) vs ONNX Runtime fp32/int8 (after)."""
    import torch

    from artmem.data.images import load_image
    from artmem.data.samples import real_photos
    from artmem.memorability.maps import MapConfig, MapModel, memorability_map
    from artmem.models.factory import create_model

    if args.threads:
        torch.set_num_threads(args.threads)
    grids = tuple(int(g) for g in args.grids.split(","))
    model = create_model(args.model)
    photos = sorted(real_photos())
    calib = [str(p) for p in photos[: len(photos) // 2]]  # calibrate on one half, time the other
    timed = photos[len(photos) // 2:][: args.images]
    runners = {"torch fcn (before)": MapModel(model, onnx=False)}
    for precision in args.precision.split(","):
        t0 = time.perf_counter()
        runners[f"onnx {precision}"] = MapModel(model, precision=precision, calibration=calib, grids=grids,
                                                threads=args.threads)
        print(f"onnx {precision}: session ready in {time.perf_counter() - t0:.1f} s (export/calibration cached)")
    cfg = MapConfig(grids=grids, map_size=128)
    imgs = [load_image(p) for p in timed]
    print(f"model {args.model}; grids {grids}; {len(imgs)} image(s); {torch.get_num_threads()} threads")
    ref = None
    base = None
    for name, mm in runners.items():
        memorability_map(mm, imgs[0].resize((64, 64)), MapConfig(grids=(1,)))  # warm-up
        t0 = time.perf_counter()
        maps = [memorability_map(mm, im, cfg) for im in imgs]
        sec = (time.perf_counter() - t0) / len(imgs)
        base = base or sec
        if ref is None:
            ref = maps
        diff = max(float(np.abs(a - b).max()) for a, b in zip(maps, ref, strict=True))
        r = np.mean([np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(maps, ref, strict=True)])
        print(f"  {name:<20} {sec:6.2f} s/image  ({base / sec:.2f}x)   vs torch map: max |diff| {diff:.4f}, r {r:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
