"""Memory-game scoring: hit rates, false-alarm correction and Khosla et al.'s delay correction.

Input is one row per observed target repeat: `participant, image, delay, hit` (+ optional
`false_alarm`, 1 when the participant pressed on the first showing of that image). Everything is
vectorised over responses with per-image sufficient statistics, so 5 million responses over
60,000 images take seconds.

Delay correction (Khosla et al. 2015, eq. 2-6): the expected hit rate of image i at delay t is
m_t(i) = m_T(i) + alpha * log(t / T), with one decay alpha shared by all images. The paper's
alternating updates (eq. 5 for alpha, eq. 6 for every m_T(i)), started from the hit rate, are run
to a tolerance; each is the exact minimiser of the per-image-normalised squared error
E = sum_i 1/n_i sum_j (x_ij - m_T(i) - alpha log(t_ij / T))^2 with the other held fixed.

Scores with false alarms (Khosla Table 1 "with FA", after Isola et al.): `fa_corrected` =
(hits - false alarms) / n; `m_T_fa` applies both corrections, m_T(i) - FA(i) / n_i. The decay
alpha is fitted on the hits only: a false alarm happens at the first showing, before the delay,
so it carries no information about forgetting over the delay; subtracting the image's false-alarm
rate from its delay-corrected hit rate is then eq. 6 with x_ij = hit_ij - fa_ij at that alpha.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)

REQUIRED = ("participant", "image", "delay", "hit")


# ----------------------------------------------------------------------------- input


def validate_responses(df: pd.DataFrame, source: str | Path = "responses") -> pd.DataFrame:
    """Check a response table and return it with clean dtypes (hit int8, delay float64).

    Raises:
        ArtmemError: a missing column, a hit or false_alarm outside {0, 1}, a missing value, or a
            delay that is not positive (the model uses log(delay)); the message names `source`.
    """
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ArtmemError(
            f"{source}: missing column(s) {missing}; a response table needs "
            f"{list(REQUIRED)} (+ optional false_alarm); found {list(df.columns)}"
        )
    if len(df) == 0:
        raise ArtmemError(f"{source}: the response table is empty")
    out = pd.DataFrame({"participant": df["participant"].reset_index(drop=True),
                        "image": df["image"].reset_index(drop=True)})
    for col in ("participant", "image"):
        if df[col].isna().any():
            raise ArtmemError(f"{source}: {int(df[col].isna().sum())} row(s) with an empty {col!r}")
    for col in ("hit", "false_alarm"):
        if col not in df.columns:
            continue
        vals = pd.to_numeric(df[col], errors="coerce")
        bad = vals.isna() | ~vals.isin([0, 1])
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise ArtmemError(
                f"{source}: column {col!r} must be 0 or 1; {int(bad.sum())} bad value(s), "
                f"first at row {i}: {df[col].iloc[i]}"
            )
        out[col] = vals.to_numpy().astype(np.int8)
    delay = pd.to_numeric(df["delay"], errors="coerce")
    if delay.isna().any():
        i = int(np.flatnonzero(delay.isna().to_numpy())[0])
        raise ArtmemError(f"{source}: column 'delay' must be numeric; bad value at row {i}: {df['delay'].iloc[i]}")
    if (delay < 0).any():
        i = int(np.flatnonzero((delay < 0).to_numpy())[0])
        raise ArtmemError(f"{source}: negative delay {delay.iloc[i]} at row {i}")
    if (delay == 0).any():
        raise ArtmemError(
            f"{source}: {int((delay == 0).sum())} delay(s) of 0; delays must be positive "
            "(number of intervening images or seconds) because the model uses log(delay)"
        )
    out["delay"] = delay.to_numpy(dtype=np.float64)
    return out


def read_responses(path: str | Path) -> pd.DataFrame:
    """Read and validate a response table (CSV, TSV or Parquet)."""
    from artmem.io import read_table

    return validate_responses(read_table(path), source=path)


# ----------------------------------------------------------------------------- scoring


@dataclass
class DelayFit:
    """Result of the alternating updates (eq. 5-6)."""

    alpha: float
    T: float
    iterations: int
    converged: bool
    objective: float
    m_T: np.ndarray = field(repr=False)
    alpha_path: list[float] = field(default_factory=list, repr=False)


def _image_stats(codes: np.ndarray, n_images: int, hit: np.ndarray, logd: np.ndarray) -> dict:
    """Per-image sufficient statistics (bincounts over responses)."""
    bc = np.bincount
    return {
        "n": bc(codes, minlength=n_images).astype(np.float64),
        "sx": bc(codes, weights=hit, minlength=n_images),
        "sl": bc(codes, weights=logd, minlength=n_images),
        "slx": bc(codes, weights=logd * hit, minlength=n_images),
        "sll": bc(codes, weights=logd * logd, minlength=n_images),
    }


def fit_delay_model(stats: dict, T: float, tol: float = 1e-8, max_iter: int = 1000) -> DelayFit:
    """Khosla eq. 5/6 alternating updates on per-image statistics whose log-delays are log(t/T).

    Starts from the plain hit rate (alpha unset); stops when alpha and every m_T move by less
    than `tol`.
    """
    n, sx, sl, slx, sll = (stats[k] for k in ("n", "sx", "sl", "slx", "sll"))
    keep = n > 0
    n, sx, sl, slx, sll = n[keep], sx[keep], sl[keep], slx[keep], sll[keep]
    inv_n = 1.0 / n
    den = float(np.sum(inv_n * sll))
    m = sx / n  # initial m_T: the hit rate ignoring delays
    alpha = 0.0
    path = []
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 (it is reported after the loop)
        new_alpha = float(np.sum(inv_n * (slx - m * sl)) / den) if den > 0 else 0.0  # eq. 5
        new_m = (sx - new_alpha * sl) * inv_n  # eq. 6
        delta = max(abs(new_alpha - alpha), float(np.max(np.abs(new_m - m))))
        alpha, m = new_alpha, new_m
        path.append(alpha)
        if delta < tol:
            converged = True
            break
    # E = sum_i 1/n_i sum_j (x - m - a L)^2 from sufficient statistics (x^2 = x).
    err = sx - 2 * m * sx - 2 * alpha * slx + n * m * m + 2 * m * alpha * sl + alpha * alpha * sll
    full_m = np.full(keep.shape, np.nan)
    full_m[keep] = m
    return DelayFit(alpha, float(T), it, converged, float(np.sum(inv_n * err)), full_m, path)


def closed_form_alpha(stats: dict) -> float:
    """The fixed point of eq. 5-6 in closed form (used to check the iterations)."""
    n, sx, sl, slx, sll = (stats[k] for k in ("n", "sx", "sl", "slx", "sll"))
    keep = n > 0
    n, sx, sl, slx, sll = n[keep], sx[keep], sl[keep], slx[keep], sll[keep]
    num = np.sum((slx - sx * sl / n) / n)
    den = np.sum((sll - sl * sl / n) / n)
    return float(num / den)


def _encode(responses: pd.DataFrame, images: pd.Index | None = None) -> tuple[np.ndarray, pd.Index]:
    if images is None:
        codes, uniques = pd.factorize(responses["image"], sort=True)
        return codes.astype(np.int64), pd.Index(uniques, name="image")
    return images.get_indexer(responses["image"]).astype(np.int64), images


def score_images(
    responses: pd.DataFrame,
    T: float | None = None,
    tol: float = 1e-8,
    max_iter: int = 1000,
    images: pd.Index | None = None,
) -> tuple[pd.DataFrame, DelayFit]:
    """Score every image of a validated response table.

    Args:
        responses: output of `validate_responses`.
        T: reference delay of the delay-corrected score (default: the median delay).
        tol, max_iter: stopping rule of the alternating updates.
        images: score these images in this order (absent ones get n = 0 and NaN scores).

    Returns:
        (table with columns image, n, hits, hit_rate, [false_alarms, fa_corrected], mean_delay,
        m_T, [m_T_fa]; the DelayFit with alpha, iterations, convergence).
    """
    codes, index = _encode(responses, images)
    n_images = len(index)
    hit = responses["hit"].to_numpy(dtype=np.float64)
    delay = responses["delay"].to_numpy(dtype=np.float64)
    if T is None:
        T = float(np.median(delay))
    if T <= 0:
        raise ArtmemError(f"reference delay T must be positive, got {T}")
    valid = codes >= 0
    if not valid.all():
        codes, hit, delay = codes[valid], hit[valid], delay[valid]
    logd = np.log(delay / T)
    stats = _image_stats(codes, n_images, hit, logd)
    fit = fit_delay_model(stats, T, tol=tol, max_iter=max_iter)
    n = stats["n"]
    with np.errstate(invalid="ignore", divide="ignore"):
        table = pd.DataFrame({
            "image": index.to_numpy(),
            "n": n.astype(np.int64),
            "hits": stats["sx"].astype(np.int64),
            "hit_rate": stats["sx"] / n,
        })
        if "false_alarm" in responses.columns:
            fa = np.bincount(codes, weights=responses["false_alarm"].to_numpy(np.float64)[valid],
                             minlength=n_images)
            table["false_alarms"] = fa.astype(np.int64)
            table["fa_corrected"] = (stats["sx"] - fa) / n
        table["mean_delay"] = np.bincount(codes, weights=delay, minlength=n_images) / n
        table["m_T"] = fit.m_T
        if "false_alarm" in responses.columns:
            table["m_T_fa"] = fit.m_T - fa / n  # both corrections (Khosla Table 1 "with FA")
    if not fit.converged:
        logger.warning("delay model did not converge in %d iterations (tol %g)", max_iter, tol)
    return table, fit


# ----------------------------------------------------------------------------- consistency


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import rankdata

    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    ra, rb = rankdata(a[ok]), rankdata(b[ok])
    ra -= ra.mean()
    rb -= rb.mean()
    den = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def _half_scores(codes, n_images, hit, logd, fa, mask, tol, max_iter, T):
    c, h, lg = codes[mask], hit[mask], logd[mask]
    stats = _image_stats(c, n_images, h, lg)
    fit = fit_delay_model(stats, T, tol=tol, max_iter=max_iter)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"hit_rate": stats["sx"] / stats["n"], "delay_corrected": fit.m_T}
        if fa is not None:
            fas = np.bincount(c, weights=fa[mask], minlength=n_images)
            out["fa_corrected"] = (stats["sx"] - fas) / stats["n"]
            out["delay_fa_corrected"] = fit.m_T - fas / stats["n"]
    return out, fit.alpha


def _adversarial_mask(codes: np.ndarray, delay: np.ndarray, rng: np.random.Generator, n_images: int) -> np.ndarray:
    """True = split A. Per image, the lower-delay half of its responses goes to one split and the
    higher-delay half to the other, which one chosen by a coin flip per image (Khosla sec. 2.3)."""
    tie = rng.random(len(codes))
    order = np.lexsort((tie, delay, codes))
    sorted_codes = codes[order]
    counts = np.bincount(codes, minlength=n_images)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(codes)) - starts[sorted_codes]
    low = np.empty(len(codes), dtype=bool)
    low[order] = rank < counts[sorted_codes] // 2
    flip = rng.random(n_images) < 0.5
    return low ^ flip[codes]


def human_consistency(
    responses: pd.DataFrame,
    splits: int = 25,
    adversarial: bool = False,
    T: float | None = None,
    seed: int = 0,
    tol: float = 1e-8,
    max_iter: int = 1000,
    min_responses: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split-half human consistency (Spearman between the scores of two halves).

    Random splits put each participant's responses in one half (participants split at random);
    the adversarial split puts each image's low-delay responses in one half and its high-delay
    ones in the other. The delay model (alpha included) is fitted separately in every half.

    Returns:
        (per-split table: split, kind, method, spearman, n_images, alpha_a, alpha_b;
         summary: kind, method, mean, sd, splits, alpha_mean, alpha_sd).
    """
    codes, index = _encode(responses)
    n_images = len(index)
    hit = responses["hit"].to_numpy(dtype=np.float64)
    delay = responses["delay"].to_numpy(dtype=np.float64)
    T = float(np.median(delay)) if T is None else float(T)
    logd = np.log(delay / T)
    fa = responses["false_alarm"].to_numpy(np.float64) if "false_alarm" in responses.columns else None
    pcodes, puniq = pd.factorize(responses["participant"])
    if not adversarial and len(puniq) < 2:
        raise ArtmemError("split-half consistency needs at least 2 participants")
    rng = np.random.default_rng(seed)
    rows = []
    kind = "adversarial" if adversarial else "random"
    for r in range(splits):
        if adversarial:
            mask = _adversarial_mask(codes, delay, rng, n_images)
        else:
            half = rng.permutation(len(puniq)) < len(puniq) // 2
            mask = half[pcodes]
        a, alpha_a = _half_scores(codes, n_images, hit, logd, fa, mask, tol, max_iter, T)
        b, alpha_b = _half_scores(codes, n_images, hit, logd, fa, ~mask, tol, max_iter, T)
        na = np.bincount(codes[mask], minlength=n_images)
        nb = np.bincount(codes[~mask], minlength=n_images)
        ok = (na >= min_responses) & (nb >= min_responses)
        for method in a:
            rows.append({
                "split": r, "kind": kind, "method": method,
                "spearman": _spearman(a[method][ok], b[method][ok]),
                "n_images": int(ok.sum()), "alpha_a": alpha_a, "alpha_b": alpha_b,
            })
    per_split = pd.DataFrame(rows)
    alphas = np.concatenate([per_split.drop_duplicates("split")[["alpha_a", "alpha_b"]].to_numpy().ravel()])
    summary = (
        per_split.groupby(["kind", "method"], sort=False)["spearman"]
        .agg(mean="mean", sd=lambda s: float(np.std(s, ddof=1)) if len(s) > 1 else 0.0, splits="count")
        .reset_index()
    )
    summary["alpha_mean"] = float(np.mean(alphas))
    summary["alpha_sd"] = float(np.std(alphas, ddof=1)) if len(alphas) > 1 else 0.0
    summary["T"] = T
    return per_split, summary


# ----------------------------------------------------------------------------- simulator


def simulate_memory_game(
    n_images: int = 1000,
    responses_per_image: int = 80,
    targets_per_participant: int = 66,
    alpha: float = -0.08,
    T: float = 80.0,
    mean_memorability: float = 0.757,
    sd_memorability: float = 0.124,
    delay_range: tuple[float, float] = (35, 150),
    log_uniform_delays: bool = True,
    participant_sd: float = 0.05,
    fa_rate: float = 0.05,
    image_delay_spread: float = 0.0,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate a memory game under the log-linear model of Khosla eq. 2.

    P(hit) = clip(m_T(i) + alpha log(t / T) + u_p, 0, 1), with m_T(i) drawn from a Beta with the
    given mean/sd (LaMem: 0.757, 0.124), u_p a participant offset, delays (integer numbers of
    intervening images) drawn from `delay_range` (log-uniform by default), and false alarms on
    first showings at a per-image rate around `fa_rate`. `image_delay_spread` > 0 gives each image
    its own typical delay (mixing delay with image, which the correction must undo).

    Returns:
        (responses: participant, image, delay, hit, false_alarm; truth: image, true_m_T, true_fa).
    """
    rng = np.random.default_rng(seed)
    mu, sd = mean_memorability, sd_memorability
    k = mu * (1 - mu) / sd**2 - 1
    true_m = rng.beta(mu * k, (1 - mu) * k, n_images)
    true_fa = np.clip(rng.gamma(2.0, fa_rate / 2.0, n_images), 0, 0.5) if fa_rate > 0 else np.zeros(n_images)
    # Each "round" shows every image once in a random order; rounds are chunked into participants.
    total = n_images * responses_per_image
    image = np.concatenate([rng.permutation(n_images) for _ in range(responses_per_image)])
    participant = np.arange(total) // targets_per_participant
    n_part = int(participant[-1]) + 1
    lo, hi = np.log(delay_range[0]), np.log(delay_range[1])
    if log_uniform_delays:
        u = rng.random(total)
    else:
        u = (rng.uniform(delay_range[0], delay_range[1], total) - delay_range[0]) / (delay_range[1] - delay_range[0])
        u = (np.log(delay_range[0] + u * (delay_range[1] - delay_range[0])) - lo) / (hi - lo)
    if image_delay_spread > 0:
        centre = rng.random(n_images)
        u = np.clip(centre[image] + image_delay_spread * (u - 0.5), 0, 1)
    delay = np.round(np.exp(lo + u * (hi - lo)))
    u_p = rng.normal(0, participant_sd, n_part) if participant_sd > 0 else np.zeros(n_part)
    p = np.clip(true_m[image] + alpha * np.log(delay / T) + u_p[participant], 0, 1)
    hit = (rng.random(total) < p).astype(np.int8)
    fa = (rng.random(total) < true_fa[image]).astype(np.int8)
    names = np.char.add("img_", np.char.zfill(np.arange(n_images).astype(str), 6))
    responses = pd.DataFrame({
        "participant": participant.astype(np.int64),
        "image": names[image],
        "delay": delay.astype(np.int64),
        "hit": hit,
        "false_alarm": fa,
    })
    truth = pd.DataFrame({"image": names, "true_m_T": true_m, "true_fa": true_fa})
    truth.attrs.update({"alpha": alpha, "T": T})
    return responses, truth


# ----------------------------------------------------------------------------- reference


def score_images_loop(responses: pd.DataFrame, T: float, tol: float = 1e-8, max_iter: int = 1000):
    """A straightforward per-response Python loop (the benchmark baseline; same maths).

    Returns:
        ({image: (n, hit_rate, fa_corrected, m_T)}, alpha, iterations).
    """
    import math

    recs = list(zip(responses["image"].tolist(), responses["delay"].tolist(), responses["hit"].tolist(),
                    responses["false_alarm"].tolist() if "false_alarm" in responses.columns
                    else [0] * len(responses), strict=True))
    n: dict = {}
    hits: dict = {}
    fas: dict = {}
    for img, _d, h, f in recs:
        n[img] = n.get(img, 0) + 1
        hits[img] = hits.get(img, 0) + h
        fas[img] = fas.get(img, 0) + f
    m = {img: hits[img] / n[img] for img in n}
    alpha = 0.0
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 (it is reported after the loop)
        num: dict = {}
        den: dict = {}
        for img, d, h, _f in recs:
            lg = math.log(d / T)
            num[img] = num.get(img, 0.0) + lg * (h - m[img])
            den[img] = den.get(img, 0.0) + lg * lg
        new_alpha = sum(num[i] / n[i] for i in n) / sum(den[i] / n[i] for i in n)
        acc: dict = {}
        for img, d, h, _f in recs:
            acc[img] = acc.get(img, 0.0) + h - new_alpha * math.log(d / T)
        new_m = {img: acc[img] / n[img] for img in n}
        delta = max(abs(new_alpha - alpha), max(abs(new_m[i] - m[i]) for i in n))
        alpha, m = new_alpha, new_m
        if delta < tol:
            break
    out = {img: (n[img], hits[img] / n[img], (hits[img] - fas[img]) / n[img], m[img]) for img in n}
    return out, alpha, it
