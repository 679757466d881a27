"""Scoring a collection with a trained (or registry) predictor and comparing with a score column."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch

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
                       split: str | None = None, device: str = "auto", batch_size: int = 32) -> dict:
    """Score `collection` with `model` (name or checkpoint) and compare with `score_column`.

    Writes predictions.parquet (path, score_true, score_pred), metrics.json and errors.parquet.
    `split`: only rows whose `split` column (or every split_<k> column) equals this value.
    """
    from artmem.data.collection import open_collection
    from artmem.io import ensure_out_dir, write_table
    from artmem.models.factory import create_model
    from artmem.runtime import resolve_device

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
    dev = resolve_device(device)
    net = create_model(model)
    errors = []
    from artmem.data.images import load_image
    from artmem.errors import ImageReadError
    from artmem.models.transforms import build_transform
    from artmem.runtime import autocast

    tf = build_transform(net.pretrained_cfg)
    pred = np.full(len(coll), np.nan)
    net.eval().to(dev)
    paths = coll.abs_paths()
    with torch.inference_mode():
        for s in range(0, len(coll), batch_size):
            xs, idx = [], []
            for i in range(s, min(s + batch_size, len(coll))):
                try:
                    xs.append(tf(load_image(paths[i])))
                    idx.append(i)
                except ImageReadError as exc:
                    errors.append({"path": coll.paths[i], "reason": exc.reason})
            if xs:
                with autocast(dev):
                    o = net(torch.stack(xs).to(dev)).float().cpu()
                pred[idx] = (o[:, 0] if o.ndim == 2 else o).numpy()
    ok = np.isfinite(pred)
    metrics = {"model": str(model), "n": int(ok.sum()), "spearman": spearman(pred, y),
               "pearson": float(np.corrcoef(pred[ok], y[ok])[0, 1]) if ok.sum() > 2 else float("nan"),
               "rmse": float(np.sqrt(np.mean((pred[ok] - y[ok]) ** 2))) if ok.any() else float("nan"),
               "score_column": score_column, "split": split, "unreadable": len(errors)}
    write_table(pd.DataFrame({"path": coll.paths, "score_true": y, "score_pred": pred}), out, "predictions")
    write_table(pd.DataFrame(errors, columns=["path", "reason"]), out, "errors")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
