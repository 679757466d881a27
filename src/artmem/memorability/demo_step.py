"""`make demo` step: memorability maps (+ emphasis renderings) for a few demo images into out/maps."""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

N_IMAGES = 3


def demo_step(collection, out: Path, device: str = "auto") -> list[Path]:
    """Maps for the first few images of the demo collection with resmem (tiny_test if absent),
    written in the analysis-folder layout: out/maps/maps.parquet with map_npy/overlay_png."""
    from artmem.memorability.maps import MapConfig, map_images
    from artmem.models.registry import list_models

    model = "resmem" if "resmem" in list_models() else "tiny_test"
    table = collection.table
    # one image per value of the first label column when there is one, for variety
    labels = collection.label_columns
    if labels:
        picked = table.groupby(labels[0], sort=True, dropna=False).head(1).index[:N_IMAGES].tolist()
    else:
        picked = []
    picked += [i for i in table.index if i not in picked][: N_IMAGES - len(picked)]
    items = [(table.at[i, "path"], collection.abs_path(table.at[i, "path"])) for i in picked]
    written, _ = map_images(items, Path(out) / "maps", model=model, device=device,
                            config=MapConfig(grids=(3,)), renderings=True)
    return written
