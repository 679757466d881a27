"""`make demo` step: measures, statistics and the HTML report of the demo collection.

Runs `analyze` on the demo collection with `kind` and `subject` as categories into the demo out
folder, reusing out/scores and out/features of the scale demo step (and out/maps of the
memorability demo step) when they are there.
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def demo_step(collection, out: Path, device: str = "auto") -> list[Path]:
    """Write out/measures, out/maps (top/bottom images) and out/report; returns the written paths."""
    from artmem.report.analyze import analyze
    from artmem.report.data import ReportOptions

    cats = [c for c in ("kind", "subject") if c in collection.table.columns] or None
    options = ReportOptions(categories=cats, title="Memorability of the artmem demo collection")
    written = analyze(
        collection, Path(out), model="resmem", device=device, options=options,
        # the memorability demo step's map settings, so its maps are reused; maps cost seconds per
        # image on a CPU, so only the most and the least memorable image get one in the demo
        map_grids=(3,), map_renderings=True, map_top=1,
        command="artmem demo run (report step: artmem analyze DEMO -o OUT --categories kind,subject)",
    )
    logger.info("demo: report at %s", Path(out) / "report" / "report.html")
    return written
