"""Benchmark: memorability map by fully convolutional evaluation vs a naive per-crop loop.

Same model (resmem by default), same image, same output grid (windows of 227 px every 32 px at
each scale): the fully convolutional ResMem (one forward pass per scale) against one forward pass
per window, looping over positions. Also times batched crops, and reports how closely the FCN
window scores agree with the per-crop scores (they differ only by what the windows see beyond
their borders: real neighbours vs zero padding). Target: FCN >= 5x faster than the loop.

    .venv/bin/python bench/memmap.py [--model resmem] [--grids 2,4] [--images 1] [--batched] [--threads N]
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
    args = ap.parse_args(argv)
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


if __name__ == "__main__":
    raise SystemExit(main())
