"""Procedurally painted synthetic collections with visually distinct "styles" and "genres".

Styles differ in palette, stroke texture (length, width, orientation spread) and background;
genres differ in composition (a central blob, horizontal bands, a diagonal, a grid of marks).
Classifiers therefore have something real to learn, and tests can assert accuracy above chance.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

from artmem.data.collection import Collection

GENRES = ("portrait", "landscape", "diagonal", "pattern")


def _style_params(k: int, n_styles: int) -> dict:
    rng = np.random.default_rng(1000 + k)
    base_hue = k / max(n_styles, 1)
    palette = []
    for j in range(4):
        h = (base_hue + 0.06 * (j - 1.5)) % 1.0
        s = 0.35 + 0.6 * ((k + j) % 3) / 2
        v = 0.45 + 0.5 * ((k * 2 + j) % 4) / 3
        palette.append(tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h, s, v)))
    # light background, dark composition region: the genre (composition) stays visible as a
    # brightness pattern whatever the style's palette
    return {
        "palette": palette,
        "background": tuple(int(255 * c) for c in colorsys.hsv_to_rgb((base_hue + 0.5) % 1, 0.15 + 0.3 * (k % 2), 0.92 - 0.1 * (k % 3))),
        "fill": tuple(int(255 * c) for c in colorsys.hsv_to_rgb(base_hue, 0.6, 0.16 + 0.06 * (k % 3))),
        "stroke_len": 0.05 + 0.25 * ((k * 7) % n_styles) / max(n_styles - 1, 1),
        "stroke_width": 1 + int(6 * ((k * 3) % n_styles) / max(n_styles - 1, 1)),
        "angle": float(rng.uniform(0, np.pi)),
        "angle_spread": 0.15 + 1.2 * (k % 3) / 2,
        "blur": 0.0 if k % 2 == 0 else 1.2,
        "n_strokes": 60 + 40 * (k % 4),
    }


def _composition_mask(genre: str, size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    if genre == "portrait":
        cx, cy = 0.5 + rng.normal(0, 0.05), 0.42 + rng.normal(0, 0.05)
        return ((xx - cx) ** 2 / 0.05 + (yy - cy) ** 2 / 0.09) < 1
    if genre == "landscape":
        horizon = 0.55 + rng.normal(0, 0.05)
        return yy > horizon + 0.03 * np.sin(xx * 12 + rng.uniform(0, 6))
    if genre == "diagonal":
        return (yy - xx + rng.normal(0, 0.05)) > 0
    return ((np.floor(xx * 4) + np.floor(yy * 4)) % 2) == 0


def paint_image(style: int, genre: str, n_styles: int, size: int, rng: np.random.Generator) -> Image.Image:
    """Paint one image of `style` (index) and `genre` (name)."""
    p = _style_params(style, n_styles)
    img = Image.new("RGB", (size, size), p["background"])
    mask = _composition_mask(genre, size, rng)
    region = Image.fromarray((mask * 255).astype(np.uint8))
    fill = Image.new("RGB", (size, size), p["fill"])
    img.paste(fill, (0, 0), region)
    draw = ImageDraw.Draw(img)
    length = p["stroke_len"] * size
    for _ in range(p["n_strokes"]):
        x, y = rng.uniform(0, size, 2)
        a = p["angle"] + rng.normal(0, p["angle_spread"])
        dx, dy = np.cos(a) * length / 2, np.sin(a) * length / 2
        inside = mask[int(min(y, size - 1)), int(min(x, size - 1))]
        color = p["palette"][1 + int(inside) + int(rng.integers(0, 2))] if len(p["palette"]) > 3 else p["palette"][1]
        jitter = rng.integers(-18, 19, 3)
        color = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(color, jitter, strict=False))
        draw.line([(x - dx, y - dy), (x + dx, y + dy)], fill=color, width=p["stroke_width"])
    if p["blur"]:
        img = img.filter(ImageFilter.GaussianBlur(p["blur"] * size / 128))
    return img


def make_synthetic_collection(
    out: str | Path,
    n_styles: int = 3,
    n_genres: int = 2,
    per_class: int = 10,
    size: int = 64,
    seed: int = 0,
    fmt: str = "jpg",
) -> Collection:
    """Write `n_styles * n_genres * per_class` painted images under `out/<style>/` and return them.

    Columns: path, style (style_0..), genre (portrait/landscape/...), artist (two per style),
    year (numeric), and `true_memorability`, a smooth function of the image (for regression tests).
    The collection table is saved as out/collection.parquet.
    """
    if not 1 <= n_genres <= len(GENRES):
        raise ValueError(f"n_genres must be 1..{len(GENRES)}")
    out = Path(out)
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_styles):
        folder = out / f"style_{s}"
        folder.mkdir(parents=True, exist_ok=True)
        for g in GENRES[:n_genres]:
            for i in range(per_class):
                img = paint_image(s, g, n_styles, size, rng)
                rel = f"style_{s}/{g}_{i:03d}.{fmt}"
                img.save(out / rel, quality=92) if fmt == "jpg" else img.save(out / rel)
                arr = np.asarray(img, dtype=np.float32) / 255.0
                contrast = float(arr.std())
                rows.append({
                    "path": rel,
                    "style": f"style_{s}",
                    "genre": g,
                    "artist": f"artist_{s}_{i % 2}",
                    "year": 1800 + 50 * s + int(rng.integers(0, 50)),
                    "true_memorability": float(np.clip(0.45 + 1.2 * contrast + 0.05 * (s % 2), 0, 1)),
                })
    coll = Collection(pd.DataFrame(rows), str(out.resolve()), "synthetic",
                      {"format": "synthetic", "seed": seed, "n_styles": n_styles, "n_genres": n_genres})
    coll.save(out)
    return coll
