"""Scoring a collection with a trained (or registry) predictor and comparing with a score column."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.errors import ArtmemError


def spearman(a, b) -> float:
    """Spearman rho over the pairs where both are finite; NaN for fewer than 3 or a constant side."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return float("nan")
    return float(spearmanr(a[ok], b[ok])[0])


def evaluate_predictor(model: str | Path, collection, out: str | Path, score_column: str = "score",
                       split: str | None = None, device: str = "auto", batch_size: int = 32,
                       num_workers: int | None = None) -> dict:
    """Score `collection` with `model` (name or checkpoint) and compare with `score_column`.

    The scores are an `artmem score` job in OUT/scores (resumed when interrupted, redone for
    another model; its errors.parquet lists the unreadable images); writes predictions.parquet (path, score_true, score_pred), metrics.json and
    errors.parquet.
    `split`: only rows whose `split` column (or every split_<k> column) equals this value.
    """
    from artmem.batch.api import run_job
    from artmem.batch.processors import ModelProcessor
    from artmem.batch.results import read_job_record
    from artmem.data.collection import open_collection
    from artmem.io import ensure_out_dir, write_table

    coll = open_collection(collection)
    if score_column not in coll.table.columns:
        raise ArtmemError(f"no column {score_column!r} in the collection")
    if split:
        cols = [c for c in coll.table.columns if c == "split" or re.fullmatch(r"split_?\d+", str(c))]
        if not cols:
            raise ArtmemError("--split given but the collection has no split column")
        coll = coll.subset((coll.table[cols[0]].astype(str) == split).to_numpy())
    y = pd.to_numeric(coll.table[score_column], errors="coerce").to_numpy(np.float64)
    coll = coll.subset(np.isfinite(y))
    y = y[np.isfinite(y)]
    out = ensure_out_dir(out)
    proc = ModelProcessor(model, "scores")
    old = read_job_record(out / "scores")
    job = run_job(coll, proc, out / "scores", device=device, batch_size=batch_size, num_workers=num_workers,
                  resume=old is None or old.processor == proc.spec())  # another model's scores: redone
    pred = job.table.set_index("path")["score"].reindex(coll.paths).to_numpy(np.float64)
    errors = job.errors
    ok = np.isfinite(pred)
    metrics = {"model": str(model), "n": int(ok.sum()), "spearman": spearman(pred, y),
               "pearson": float(np.corrcoef(pred[ok], y[ok])[0, 1]) if ok.sum() > 2 else float("nan"),
               "rmse": float(np.sqrt(np.mean((pred[ok] - y[ok]) ** 2))) if ok.any() else float("nan"),
               "score_column": score_column, "split": split, "unreadable": len(errors)}
    write_table(pd.DataFrame({"path": coll.paths, "score_true": y, "score_pred": pred}), out, "predictions")
    write_table(errors, out, "errors")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
