"""`predict`: top-k labels and class probabilities of a trained classifier on any collection.

Writes `OUT/predictions.parquet` (path, pred, prob, top1_label, top1_prob, ..., topK_label,
topK_prob, and `true`/`correct` when the collection has the run's label column) and
`OUT/probabilities.parquet` (path + one `p_<class>` column per class), which can be joined to a
collection as image attributes (e.g. the positive-sentiment probability of a user-trained
sentiment classifier), plus `OUT/classes.txt` and `OUT/errors.parquet`.

The probabilities are a batch job (`ClassProbabilities` run by `run_job`): sharded, resumable,
with decoding workers and unreadable images listed in errors.parquet. Images get exactly the
run's evaluation preprocessing, saved with the run (`artmem.models.preprocess`): the training
cache's decode and resize, the centre crop, the model's mean/std.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.classify.processors import ClassProbabilities
from artmem.errors import ArtmemError

__all__ = ["predict", "top_k_table"]

logger = logging.getLogger(__name__)


def top_k_table(probabilities: pd.DataFrame, columns: list[str], names: list[str], topk: int) -> pd.DataFrame:
    """path, pred, prob, top<k>_label, top<k>_prob from a probabilities table."""
    probs = probabilities[columns].to_numpy(np.float32)
    topk = max(1, min(int(topk), len(names)))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :topk]
    rows = np.arange(len(probs))
    pred = pd.DataFrame({"path": probabilities["path"].to_numpy()})
    pred["pred"] = [names[r[0]] for r in order]
    pred["prob"] = probs[rows, order[:, 0]] if len(probs) else np.zeros(0, np.float32)
    for k in range(topk):
        pred[f"top{k + 1}_label"] = [names[r[k]] for r in order]
        pred[f"top{k + 1}_prob"] = probs[rows, order[:, k]] if len(probs) else np.zeros(0, np.float32)
    return pred


def predict(collection, run: str | Path, out: str | Path | None = None, topk: int = 3,
            device: str = "auto", batch_size: int = 64, num_workers: int | None = None,
            csv: bool = False, resume: bool = True, engine: str = "local",
            progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, list[Path]]:
    """Classify every image of `collection` with the trained run (or checkpoint) `run`.

    Returns:
        (predictions, probabilities, written paths); nothing is kept when `out` is None.
    """
    from artmem.batch.api import run_job
    from artmem.data.collection import open_collection
    from artmem.io import write_table

    coll = open_collection(collection)
    if len(coll) == 0:
        raise ArtmemError("the collection is empty")
    proc = ClassProbabilities(run)
    result = run_job(coll, proc, out, device=device, batch_size=batch_size, num_workers=num_workers,
                     resume=resume, csv=csv, engine=engine, progress=progress)
    prob_table = result.table[["path", *proc.columns]].reset_index(drop=True) if len(result.table) else \
        pd.DataFrame({"path": pd.Series([], dtype="str"), **{c: pd.Series([], dtype="float32") for c in proc.columns}})
    pred = top_k_table(prob_table, proc.columns, proc.class_names, topk)
    label = proc.label
    if label and label in coll.table.columns:
        truth = coll.table.set_index("path")[label]
        pred["true"] = pred["path"].map(truth).astype("str")
        known = pred["true"].isin(proc.class_names)
        pred["correct"] = pred["pred"] == pred["true"]
        if known.any():
            logger.info("accuracy on the %d images labelled with a known %s: %.3f", int(known.sum()),
                        label, float(pred.loc[known, "correct"].mean()))
    if len(result.errors):
        logger.warning("%d of %d images could not be read (errors.parquet)", len(result.errors), len(coll))
    written: list[Path] = []
    if out is not None:
        written += write_table(pred, out, "predictions", csv=csv)
        written += result.written
    return pred, prob_table, written
