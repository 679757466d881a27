"""The demo collection: real paintings and photos that ship inside installed packages.

`build_demo_collection(out)` copies the 11 Raphael (Bridgewater Madonna) photos from `unraphael`
(kind=painting, subject=madonna), the scikit-image colour photos and scikit-learn's two photos
(kind=photo) to `out/images/<kind>/<name>` and writes `out/collection.parquet` (root `.`, so the
folder can be moved) with columns path, kind, subject, title, source_package, licence.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pandas as pd

from artmem.data import samples
from artmem.data.collection import Collection
from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)

LICENCES = {
    "unraphael": "photo of a public-domain painting (Raphael, Bridgewater Madonna and copies); "
                 "shipped in the unraphael package (MIT)",
    "astronaut.png": "NASA Great Images, public domain",
    "coffee.png": "CC0, Rachel Michetti (scikit-image)",
    "chelsea.png": "CC0, Stefan van der Walt (scikit-image)",
    "rocket.jpg": "SpaceX, public domain",
    "hubble_deep_field.jpg": "NASA, public domain",
    "retina.jpg": "CC0 1.0 (Hakkinen et al., via scikit-image)",
    "ihc.png": "no known copyright restrictions (scikit-image)",
    "immunohistochemistry.png": "no known copyright restrictions (scikit-image)",
    "motorcycle_left.png": "Middlebury stereo data set (scikit-image), research use",
    "color.png": "scikit-image test image (BSD-3-Clause)",
    "china.jpg": "CC BY 2.0, danielbuechele on Flickr (scikit-learn)",
    "flower.jpg": "CC BY 2.0, vultilion on Flickr (scikit-learn)",
}


def build_demo_collection(out: str | Path, min_images: int = 10) -> list[Path]:
    """Assemble the demo collection in `out`; returns the written paths (collection files first)."""
    out = Path(out)
    rows = []
    items = [(p, "painting", "madonna", "unraphael") for p in samples.raphael_paintings()]
    items += [(p, "photo", s, "scikit-image") for p, s in samples.skimage_photos().items()]
    items += [(p, "photo", s, "scikit-learn") for p, s in samples.sklearn_photos().items()]
    if len(items) < min_images:
        raise ArtmemError(f"only {len(items)} bundled images found; install unraphael, scikit-image and "
                          "scikit-learn (`make setup`)")
    copied = []
    for src, kind, subject, package in items:
        rel = f"images/{kind}/{src.name}"
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists() or dst.stat().st_size != src.stat().st_size:
            shutil.copyfile(src, dst)
        copied.append(dst)
        rows.append({
            "path": rel, "kind": kind, "subject": subject, "title": src.stem,
            "source_package": package,
            "licence": LICENCES.get("unraphael" if package == "unraphael" else src.name, "see the package"),
        })
    coll = Collection(pd.DataFrame(rows), ".", "demo", {"format": "demo", "source": "bundled package images"})
    written = coll.save(out, csv=True)
    logger.info("demo collection: %d paintings, %d photos in %s",
                sum(r["kind"] == "painting" for r in rows), sum(r["kind"] == "photo" for r in rows), out)
    return written + copied
