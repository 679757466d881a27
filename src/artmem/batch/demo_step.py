"""Demo step: ResMem memorability scores (out/scores) and fc7 features (out/features).

Both come from one forward pass per image (fc7 and the score are outputs of the same network), then
are written in the standard analysis-folder layout read by the report and the web explorer.
"""

from __future__ import annotations

import logging
from pathlib import Path

from artmem.batch.results import write_errors, write_scores

logger = logging.getLogger(__name__)


def demo_step(collection, out: Path, device: str = "auto", model: str = "resmem",
              layer: str | None = "fc7") -> list[Path]:
    """Score `collection` with resmem and extract its fc7 features; returns the written paths."""
    from artmem.batch.api import run_job
    from artmem.batch.processors import ModelProcessor

    out = Path(out)
    feat_dir, score_dir = out / "features", out / "scores"
    processor = ModelProcessor(model, "features", layer=layer, with_score=True)
    result = run_job(collection, processor, feat_dir, device=device, batch_size=8, progress=False)
    written = [p for p in result.written if p.name != "scores.parquet"]
    # scores.parquet belongs in out/scores (analysis-folder layout), with its own errors table
    (feat_dir / "scores.parquet").unlink(missing_ok=True)
    written += write_scores(score_dir, result.table[["path", "score"]])
    written += write_errors(score_dir, result.errors)
    if len(result.errors):
        logger.warning("demo: %d image(s) could not be read (see %s)", len(result.errors), score_dir / "errors.parquet")
    return written
