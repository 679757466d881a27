"""`make demo`: build the demo collection from images shipped in packages, then run the main job.

The main job is a list of steps, one per capability, each `demo_step(collection, out, device)`
in `artmem.<capability>.demo_step` returning the paths it wrote.
"""

from __future__ import annotations

import importlib
import logging
import time
from pathlib import Path

logger = logging.getLogger(__name__)

DEMO_STEPS = [
    ("profile the collection", "artmem.data.demo_step"),
    ("score memorability and extract features", "artmem.batch.demo_step"),
    ("draw memorability maps", "artmem.memorability.demo_step"),
    ("train a quick classifier on `kind`", "artmem.classify.demo_step"),
    ("build a similarity index and query it", "artmem.retrieval.demo_step"),
    ("measures, statistics and the HTML report", "artmem.report.demo_step"),
]


def run_demo(collection: str | Path, out: str | Path, device: str = "auto") -> dict[str, list[Path]]:
    """Run every demo step on `collection`, writing under `out/<step>`; returns paths per step."""
    from artmem.data.collection import open_collection

    coll = open_collection(collection)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[Path]] = {}
    for title, module_name in DEMO_STEPS:
        module = importlib.import_module(module_name)
        t0 = time.perf_counter()
        logger.info("demo: %s ...", title)
        results[title] = [Path(p) for p in module.demo_step(coll, out, device)]
        logger.info("demo: %s done in %.1f s", title, time.perf_counter() - t0)
    return results
