"""Colour measures: the 12-bin hue histogram of Cetinic et al. (2019) and simple colour statistics.

Hue histogram: the image is converted to HSV (hue in degrees). The 12 bins are 30 degrees wide and
centred on the 12 hues of the HSV colour wheel (red 0, orange 30, yellow 60, chartreuse 90,
green 120, spring green 150, cyan 180, azure 210, blue 240, violet 270, magenta 300, rose 330), so
bin k holds hues in [30k - 15, 30k + 15). Two modes (`hue_mode`):

- "chromatic" (default): hue is undefined on the grey axis, so pixels whose chroma
  C = max(R, G, B) - min(R, G, B) is below `min_chroma` (default 0.05, about 13 of 255 grey
  levels) are left out and the histogram is normalised over the rest. Chroma, unlike HSV
  saturation C / V, does not grow as a pixel darkens, so the dark reds and browns of Old Master
  paintings count while near-black noise and greys do not. Their share of the image is
  `chromatic_fraction`; an image with no chromatic pixel gets NaN in every hue bin, so it drops
  out of the hue correlations instead of counting as "all red".
- "paper": the plain normalised 12-bin histogram of every pixel's hue as the paper describes it
  (greys get hue 0, i.e. count as red, as in the usual RGB->HSV conversions).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

HUE_NAMES = (
    "red", "orange", "yellow", "chartreuse", "green", "spring_green",
    "cyan", "azure", "blue", "violet", "magenta", "rose",
)
HUE_CENTERS_DEG = tuple(30.0 * k for k in range(12))
HUE_COLUMNS = tuple(f"hue_{n}" for n in HUE_NAMES)
DEFAULT_MIN_CHROMA = 0.05
HUE_MODES = ("chromatic", "paper")
DEFAULT_MAX_SIDE = 256


def to_rgb_array(img: Image.Image | np.ndarray, max_side: int | None = DEFAULT_MAX_SIDE) -> np.ndarray:
    """RGB float array (H, W, 3) in [0, 1], downscaled so the longer side is at most `max_side`."""
    if isinstance(img, np.ndarray):
        arr = np.asarray(img, dtype=np.float64)
        if arr.ndim != 3 or arr.shape[2] < 3:
            raise ValueError(f"expected an (H, W, 3) RGB array, got shape {arr.shape}")
        arr = arr[..., :3]
        return arr / 255.0 if arr.max(initial=0) > 1.0 else arr
    img = img.convert("RGB")
    if max_side is not None and max(img.size) > max_side:
        scale = max_side / max(img.size)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(img, dtype=np.float64) / 255.0


def rgb_to_hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in degrees [0, 360), saturation and value in [0, 1] (hue 0 where undefined)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(axis=-1)
    c = v - rgb.min(axis=-1)
    s = np.where(v > 0, c / np.where(v > 0, v, 1), 0.0)
    safe = np.where(c > 0, c, 1.0)
    h = np.zeros_like(v)
    h = np.where(v == r, ((g - b) / safe) % 6.0, h)
    h = np.where((v == g) & (v != r), (b - r) / safe + 2.0, h)
    h = np.where((v == b) & (v != r) & (v != g), (r - g) / safe + 4.0, h)
    h = np.where(c > 0, (h * 60.0) % 360.0, 0.0)
    return h, s, v


def hue_bin(hue_deg: np.ndarray) -> np.ndarray:
    """Index (0-11) of the 30-degree bin centred on 0, 30, ... 330 degrees for each hue."""
    return (np.floor(((np.asarray(hue_deg) + 15.0) % 360.0) / 30.0).astype(int)) % 12


def hue_histogram(
    img: Image.Image | np.ndarray,
    min_chroma: float = DEFAULT_MIN_CHROMA,
    max_side: int | None = DEFAULT_MAX_SIDE,
    mode: str = "chromatic",
) -> tuple[np.ndarray, float]:
    """Normalised 12-bin hue histogram, and the share of the image's pixels it counts.

    Returns:
        (hist (12,) summing to 1, or all NaN when no pixel counts; counted fraction: the
        chromatic share in "chromatic" mode, 1 in "paper" mode).
    """
    if mode not in HUE_MODES:
        raise ValueError(f"hue mode must be one of {', '.join(HUE_MODES)} (got {mode!r})")
    rgb = to_rgb_array(img, max_side)
    h, _, _ = rgb_to_hsv(rgb)
    if mode == "paper":
        keep = np.ones(h.shape, dtype=bool)
    else:
        keep = (rgb.max(axis=-1) - rgb.min(axis=-1)) >= min_chroma
    n = int(keep.sum())
    frac = n / keep.size if keep.size else 0.0
    if n == 0:
        return np.full(12, np.nan), frac
    counts = np.bincount(hue_bin(h[keep]), minlength=12).astype(np.float64)
    return counts / n, frac


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003) colourfulness M3 on [0, 1] RGB (about 0 grey, 0.3+ vivid)."""
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def color_measures(
    img: Image.Image | np.ndarray,
    min_chroma: float = DEFAULT_MIN_CHROMA,
    max_side: int | None = DEFAULT_MAX_SIDE,
    hue_mode: str = "chromatic",
) -> dict[str, float]:
    """Hue histogram columns (`hue_red` ... `hue_rose`), `chromatic_fraction`, mean saturation,
    mean value (brightness) and colourfulness of one image."""
    rgb = to_rgb_array(img, max_side)
    hist, frac = hue_histogram(rgb, min_chroma, max_side=None, mode=hue_mode)
    _, s, v = rgb_to_hsv(rgb)
    out = {col: float(x) for col, x in zip(HUE_COLUMNS, hist, strict=True)}
    out["chromatic_fraction"] = float(frac)
    out["saturation_mean"] = float(s.mean())
    out["brightness_mean"] = float(v.mean())
    out["colorfulness"] = colorfulness(rgb)
    return out
