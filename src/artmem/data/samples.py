"""Real photographs and paintings that ship inside installed packages (no downloads).

- unraphael: 11 photos of Raphael's Bridgewater Madonna and its copies (paintings).
- scikit-image: the photographs bundled in its wheel (astronaut, coffee, chelsea, rocket, ...).
- scikit-learn: china.jpg and flower.jpg.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

# Colour photographs bundled in the scikit-image wheel, with a subject for the demo table.
SKIMAGE_PHOTOS = {
    "astronaut.png": "person",
    "coffee.png": "object",
    "chelsea.png": "animal",
    "rocket.jpg": "object",
    "motorcycle_left.png": "object",
    "hubble_deep_field.jpg": "scene",
    "retina.jpg": "scene",
    "color.png": "object",
    "ihc.png": "scene",
    "immunohistochemistry.png": "scene",
}
SKLEARN_PHOTOS = {"china.jpg": "scene", "flower.jpg": "plant"}


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def raphael_paintings() -> list[Path]:
    """The 11 Bridgewater Madonna photos from `unraphael` (empty if it is not installed)."""
    pkg = _package_dir("unraphael")
    if pkg is None:
        return []
    return sorted((pkg / "data" / "images").glob("*.jpg"))


def skimage_photos() -> dict[Path, str]:
    pkg = _package_dir("skimage")
    if pkg is None:
        return {}
    data = pkg / "data"
    return {data / f: subject for f, subject in SKIMAGE_PHOTOS.items() if (data / f).exists()}


def sklearn_photos() -> dict[Path, str]:
    pkg = _package_dir("sklearn")
    if pkg is None:
        return {}
    data = pkg / "datasets" / "images"
    return {data / f: subject for f, subject in SKLEARN_PHOTOS.items() if (data / f).exists()}


def real_photos() -> dict[Path, str]:
    """Every bundled real image -> subject ('madonna' for the Raphael copies)."""
    out = {p: "madonna" for p in raphael_paintings()}
    out.update(skimage_photos())
    out.update(sklearn_photos())
    return out
