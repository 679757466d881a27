"""`make demo` step: memorability maps (+ emphasis renderings) for a few demo images into out/maps,
and a tiny memory-game study over the demo collection into out/memgame_study."""

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
    return written + design_demo_study(collection, Path(out) / "memgame_study")


def design_demo_study(collection, study: Path) -> list[Path]:
    """A memory-game study small enough for the 22 demo images (8 targets, 4 fillers and 2
    vigilance repeats per level, delays 3-12; a 6-trial practice); play it with
    `artmem memgame serve STUDY`. An existing study is kept (its database may hold responses)."""
    from artmem.memgame.design import DesignConfig, design_study

    if (study / "study.json").exists():
        return [study / "study.json"]
    if len(collection) < 18:  # 8 targets + 6 fillers/vigilance + 4 practice images per session
        logger.info("demo: %d images are too few for a memory-game study; skipped", len(collection))
        return []
    cfg = DesignConfig(targets_per_level=8, fillers=4, vigilance=2, min_delay=3, max_delay=12,
                       vigilance_within=4, responses_per_image=3, practice_trials=6, practice_repeats=2)
    written = design_study(collection, study, cfg)
    logger.info("demo: play the memory game with `artmem memgame serve %s`", study)
    return written
