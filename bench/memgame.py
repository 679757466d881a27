"""Benchmark: vectorised memory-game scoring vs a straightforward per-response Python loop.

Simulates N responses over M images (default 5,000,000 over 60,000, LaMem's size), scores them
with `artmem.memorability.memgame.score_images` (hit rate, FA-corrected, delay-corrected m_T with
the eq. 5/6 alternating updates), and times `score_images_loop` (one Python loop over responses
per update) on a subsample, extrapolated per response to N (said so in the output). Prints the
ratio; targets: >= 50x, vectorised under 10 s.

    .venv/bin/python bench/memgame.py [--responses 5000000] [--images 60000] [--loop-sample 200000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None) -> int:
    from artmem.memorability.memgame import score_images, score_images_loop, simulate_memory_game

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--responses", type=int, default=5_000_000)
    ap.add_argument("--images", type=int, default=60_000)
    ap.add_argument("--loop-sample", type=int, default=200_000,
                    help="responses timed with the Python loop (extrapolated per response)")
    ap.add_argument("--T", type=float, default=80.0)
    args = ap.parse_args(argv)

    per_image = max(1, -(-args.responses // args.images))  # ceil: at least --responses
    t0 = time.perf_counter()
    responses, truth = simulate_memory_game(n_images=args.images, responses_per_image=per_image,
                                            alpha=-0.08, T=args.T, seed=0)
    t_sim = time.perf_counter() - t0
    n = len(responses)
    print(f"simulated {n:,} responses over {args.images:,} images in {t_sim:.1f} s")

    t0 = time.perf_counter()
    table, fit = score_images(responses, T=args.T)
    t_vec = time.perf_counter() - t0
    print(f"vectorised: {t_vec:.2f} s  (alpha={fit.alpha:.5f}, {fit.iterations} iterations, "
          f"converged={fit.converged})")

    # Baseline on a subsample of whole images (so each image keeps all its responses).
    frac = min(1.0, args.loop_sample / n)
    keep_images = truth["image"].to_numpy()[: max(1, int(round(args.images * frac)))]
    sub = responses[responses["image"].isin(keep_images)]
    t0 = time.perf_counter()
    ref, alpha_loop, it_loop = score_images_loop(sub, T=args.T)
    t_loop_sub = time.perf_counter() - t0
    per_resp = t_loop_sub / len(sub)
    t_loop = per_resp * n
    extrap = len(sub) < n
    # Same maths: check the vectorised result on the subsample against the loop.
    sub_table, sub_fit = score_images(sub, T=args.T)
    got = sub_table.set_index("image")["m_T"]
    diff = max(abs(got[k] - v[3]) for k, v in ref.items())
    print(f"python loop: {t_loop_sub:.2f} s on {len(sub):,} responses ({it_loop} iterations), "
          f"{per_resp * 1e6:.2f} us/response"
          + (f" -> extrapolated to {n:,}: {t_loop:.1f} s" if extrap else ""))
    print(f"check on the subsample: |alpha diff| = {abs(alpha_loop - sub_fit.alpha):.2e}, "
          f"max |m_T diff| = {diff:.2e}")
    ratio = t_loop / t_vec
    print(f"RATIO vectorised vs loop: {ratio:.0f}x (target >= 50x); vectorised {t_vec:.2f} s "
          f"(target < 10 s){' [loop time extrapolated]' if extrap else ''}")
    corr = np.corrcoef(table.set_index("image").loc[truth["image"], "m_T"], truth["true_m_T"])[0, 1]
    print(f"sanity: Pearson(m_T, true m_T) = {corr:.3f}; true alpha -0.08, estimated {fit.alpha:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
