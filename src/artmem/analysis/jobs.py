"""`run_measures`: the measures job over a whole collection, in parallel, sharded and resumable.

Output folder layout (the same as the score/extract jobs):

    OUT/measures.parquet   path + one column per measure (+ attributes), collection order
    OUT/measures.json      config, column groups, counts
    OUT/errors.parquet     path, reason (unreadable images)
    OUT/job.json           the job spec; a rerun with the same spec resumes
    OUT/shards/measures-NNNNN.parquet (+ .errors.parquet)   finished shards

The job runs through the batch engines of `artmem.batch` (`MeasuresProcessor` follows their
Processor protocol), so `--engine ray` works as for scoring.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from artmem.analysis.measures import (
    MeasureConfig,
    MeasuresProcessor,
    add_attributes,
    empty_measures,
    measure_groups,
    sort_like,
)
from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)

KIND = "measures"


def run_measures(
    collection,
    out: str | Path | None = None,
    config: MeasureConfig | None = None,
    predictions: list[str | Path] | tuple = (),
    *,
    device: str = "cpu",
    batch_size: int = 8,
    num_workers: int | None = None,
    shard_size: int = 256,
    resume: bool = True,
    csv: bool = False,
    engine: str = "local",
    progress: bool = True,
    precision: str = "fp32",
    **engine_opts,
) -> tuple[pd.DataFrame, pd.DataFrame, list[Path]]:
    """Compute the measures of every image of a collection with a batch engine of `artmem.batch`.

    Args:
        collection: a Collection, collection file or image folder.
        out: output folder (None: a temporary folder, nothing kept).
        config: which measures and their parameters.
        predictions: predictions tables / run folders whose `p_<class>` columns are joined.
        device: where the symmetry convolutions run ("cpu", "cuda", "auto").
        batch_size: images per symmetry forward pass.
        num_workers: decoding processes, which also compute the pixel measures (engine default).
        shard_size: images per shard (the unit of resume).
        resume: skip images finished by an earlier run with the same settings.
        csv: also write CSV copies.
        engine: "local", "serial" or "ray" (engine_opts: `address`, `actors`, ... for Ray).
        precision: of the symmetry network on CPU: "fp32" (default), "int8" (calibrated on a
            sample of the collection) or "auto" (see `artmem.models.quantize`).

    Returns:
        (measures table in collection order, errors table, written paths).
    """
    from artmem.batch.api import run_job
    from artmem.batch.results import atomic_write_parquet, write_json
    from artmem.data.collection import open_collection

    coll = open_collection(collection)
    if len(coll) == 0:
        raise ArtmemError("the collection is empty")
    config = config or MeasureConfig()
    processor = MeasuresProcessor(config, precision=precision,
                                  calibration=coll.abs_paths() if precision != "fp32" and config.symmetry else None,
                                  calibration_name=f"collection {coll.name}")
    result = run_job(coll, processor, out, device=device, batch_size=batch_size, num_workers=num_workers,
                     resume=resume, csv=csv, engine=engine, shard_size=shard_size, progress=progress,
                     **engine_opts)
    table = result.table if len(result.table) else empty_measures(config)
    table = sort_like(table, coll.paths)
    table, added = add_attributes(table, coll.table, predictions)
    errors = result.errors
    if len(errors):
        logger.warning("%d unreadable image(s) skipped (see errors.parquet), e.g. %s: %s",
                       len(errors), errors["path"].iloc[0], errors["reason"].iloc[0])
    written = list(result.written)
    if out is not None:
        out_dir = Path(out)
        atomic_write_parquet(table, out_dir / f"{KIND}.parquet")
        if csv:
            table.to_csv(out_dir / f"{KIND}.csv", index=False)
        info = {
            "config": config.to_dict(),
            "groups": measure_groups([c for c in table.columns if c != "path"], added),
            "count": len(table),
            "errors": len(errors),
            "predictions": [str(p) for p in predictions],
            "engine": engine,
            "images_per_second": round(result.images_per_second, 3) if result.n_processed else None,
        }
        written.append(write_json(info, out_dir / f"{KIND}.json"))
    return table, errors, written


def read_measures(file_or_dir: str | Path) -> tuple[pd.DataFrame, dict]:
    """The measures table and its measures.json (column groups) from a folder or a table file."""
    from artmem.io import find_table, read_table

    p = find_table(file_or_dir, KIND, "no measures.parquet (run `artmem measures` first)")
    df = read_table(p)
    if "path" not in df.columns:
        raise ArtmemError(f"{p}: a measures table needs a 'path' column")
    df["path"] = df["path"].astype(str)
    meta_file = p.parent / f"{KIND}.json"
    info = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    if "groups" not in info:
        info["groups"] = measure_groups([c for c in df.columns if c != "path"])
    return df, info
