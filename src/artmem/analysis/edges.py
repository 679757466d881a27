"""Composition measures from Sobel gradients: horizontal and vertical edge ratios (Cetinic 2019).

Definition (documented in docs/report.md):

1. The image is converted to greyscale in [0, 1] (ITU-R 601 luma) and, when its longer side is
   above `max_side`, downscaled so that it is `max_side` (never upscaled), so that the ratios do not
   depend on the scan resolution of the painting.
2. Sobel derivatives gx (along x) and gy (along y) are taken with reflected borders and divided by
   4, so that an intensity step of height h gives a gradient magnitude of h.
3. An *edge pixel* has magnitude sqrt(gx^2 + gy^2) >= `threshold` (default 0.1: a local step of
   10 % of the full intensity range).
4. A *vertical edge pixel* is an edge pixel whose gradient points within `tolerance` degrees
   (default 22.5) of the x axis (the intensity changes left-right, so the edge runs up-down);
   a *horizontal edge pixel* one whose gradient is within `tolerance` of the y axis. Diagonal
   edges count as neither.
5. `vertical_edge_ratio` / `horizontal_edge_ratio` = number of vertical / horizontal edge pixels
   divided by the number of pixels of the image; `edge_density` = edge pixels / pixels.

With ratios of the whole image (not of the edge pixels) the two measures are not complements of
each other, which is what Cetinic et al. need to find a correlation for one and not the other.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

DEFAULT_THRESHOLD = 0.1
DEFAULT_TOLERANCE_DEG = 22.5
DEFAULT_MAX_SIDE = 512


def to_gray(img: Image.Image | np.ndarray, max_side: int | None = DEFAULT_MAX_SIDE) -> np.ndarray:
    """Greyscale float64 array in [0, 1], downscaled so the longer side is at most `max_side`."""
    if isinstance(img, np.ndarray):
        arr = np.asarray(img, dtype=np.float64)
        if arr.ndim == 3:
            arr = arr[..., :3] @ np.array([0.299, 0.587, 0.114])
        if arr.max(initial=0) > 1.0:
            arr = arr / 255.0
        if max_side is None or max(arr.shape) <= max_side:
            return arr
        img = Image.fromarray(arr.astype(np.float32), mode="F")
    if img.mode != "F":
        img = img.convert("L")
    if max_side is not None and max(img.size) > max_side:
        scale = max_side / max(img.size)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    arr = np.asarray(img, dtype=np.float64)
    return arr if img.mode == "F" else arr / 255.0


def sobel_gradients(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gx, gy) Sobel derivatives scaled so that a step of height h has magnitude h."""
    from scipy import ndimage

    gx = ndimage.sobel(gray, axis=1, mode="reflect") / 4.0
    gy = ndimage.sobel(gray, axis=0, mode="reflect") / 4.0
    return gx, gy


def edge_ratios(
    img: Image.Image | np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    tolerance_deg: float = DEFAULT_TOLERANCE_DEG,
    max_side: int | None = DEFAULT_MAX_SIDE,
) -> dict[str, float]:
    """Edge density and vertical/horizontal edge ratios of one image (see the module docstring).

    Args:
        img: a PIL image or an array (H, W[, 3]) in [0, 1] or [0, 255].
        threshold: minimum gradient magnitude of an edge pixel, in intensity units (0-1).
        tolerance_deg: how far from an axis (degrees, < 45) a gradient may point and still count.
        max_side: downscale limit for the longer side (None keeps the image as it is).

    Returns:
        {"edge_density", "vertical_edge_ratio", "horizontal_edge_ratio"}.
    """
    if not 0 < tolerance_deg <= 45:
        raise ValueError(f"tolerance_deg must be in (0, 45], got {tolerance_deg}")
    gray = to_gray(img, max_side)
    gx, gy = sobel_gradients(gray)
    mag = np.hypot(gx, gy)
    edge = mag >= threshold
    tan = np.tan(np.deg2rad(tolerance_deg))
    ax, ay = np.abs(gx), np.abs(gy)
    # a tolerance of exactly 45 degrees puts diagonal ties on the vertical side, so the two
    # classes still partition the edge pixels
    vertical = edge & (ay <= tan * ax)
    horizontal = edge & (ax <= tan * ay) & ~vertical
    n = gray.size
    return {
        "edge_density": float(edge.sum() / n),
        "vertical_edge_ratio": float(vertical.sum() / n),
        "horizontal_edge_ratio": float(horizontal.sum() / n),
    }
