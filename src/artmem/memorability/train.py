"""Training and evaluating memorability predictors on any collection with a score column.

Methods (all end in a `MemorabilityScorer` checkpoint usable as `--model PATH`):

- `regression`: Euclidean loss on a frozen backbone's features (MLP head), or fine-tuning the
  backbone with `finetune=True` (MemNet's recipe);
- `kclass`: Squalli-Houssaini et al. 2018: K balanced classes from the training scores'
  quantiles, softmax, m = sum_k p(k|i) s_k;
- `fusion`: features of two models concatenated into one MLP (regression or K-class head);
- `svr`, `ridge`: scikit-learn baselines on the frozen features (SVR: RBF or linear kernel, C,
  epsilon and gamma tuned by inner cross-validation on each training part; the chosen values go
  to summary.csv and metrics.json `chosen_params`).

Evaluation: Spearman on the collection's own splits when present (LaMem's 5 splits as columns
`split_1..split_5`, or one `split` column with train/val/test), else k-fold (5). The torch
training loop is the shared `artmem.training.loop.fit`; folds come from
`artmem.data.splits.kfold_assign`.

The pieces live beside this module: `train_plan` (config, folds, LaMem splits), `features`
(frozen-backbone features and image predictions, as batch jobs), `methods` (the training
methods) and `evaluate`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from artmem.errors import ArtmemError
from artmem.memorability.evaluate import spearman
from artmem.memorability.features import compute_features, features_from_store, predict_images
from artmem.memorability.methods import fit_method, make_scorer
from artmem.memorability.train_plan import (
    FINETUNE_EPOCHS,
    HEAD_EPOCHS,
    METHODS,
    TrainConfig,
    fold_plan,
    read_lamem_splits,
)

logger = logging.getLogger(__name__)

def _features_identity(cfg: TrainConfig, proto) -> dict:
    """What the frozen features are of (features.json / job.json of RUN/features)."""
    return {"model": cfg.model, "layer": cfg.layer or proto.layer, "model2": cfg.model2,
            "layer2": (cfg.layer2 or proto.layer2) if cfg.model2 else None}


def train_predictor(collection, out: str | Path, config: TrainConfig | None = None,
                    splits_dir: str | Path | None = None) -> dict:
    """Train and evaluate a memorability predictor; writes the run folder `out`.

    Writes config.yaml, summary.csv (per fold and epoch, or one row per fold for svr/ridge),
    folds.csv (per-fold Spearman/Pearson/RMSE on the test part), metrics.json (mean, sd),
    predictions.parquet (out-of-fold predictions), errors.parquet, `<fold>/model.*` per fold,
    model.safetensors + model.json (trained on every labelled image with `refit`, else the first
    fold's model) and, for the frozen-feature methods, features/ (the backbone features as an
    `artmem extract` job folder, reused by a rerun with the same model and layer).

    Returns:
        metrics dict: spearman_mean, spearman_sd, folds, ...
    """
    import yaml

    from artmem.data.collection import open_collection
    from artmem.io import ensure_out_dir, write_table
    from artmem.memorability.heads import scorer_config
    from artmem.models.checkpoint import copy_checkpoint, save_checkpoint
    from artmem.models.preprocess import preprocess_for
    from artmem.runtime import resolve_device, seed_everything

    cfg = config or TrainConfig()
    if cfg.method not in METHODS:
        raise ArtmemError(f"unknown method {cfg.method!r}; choose one of {', '.join(METHODS)}")
    if cfg.method == "fusion" and not cfg.model2:
        raise ArtmemError("--method fusion needs a second model (--model2, e.g. magenta_style)")
    if cfg.method in ("svr", "ridge", "fusion") and cfg.finetune:
        raise ArtmemError(f"--method {cfg.method} works on frozen features; drop --finetune")
    kind = "kclass" if cfg.method == "kclass" or (cfg.method == "fusion" and cfg.head == "kclass") else "regression"
    coll = open_collection(collection)
    if splits_dir:
        coll = read_lamem_splits(splits_dir, coll)
    if cfg.score_column not in coll.table.columns:
        raise ArtmemError(f"no column {cfg.score_column!r} in the collection "
                          f"(columns: {', '.join(map(str, coll.table.columns))})")
    scores_all = pd.to_numeric(coll.table[cfg.score_column], errors="coerce")
    infinite = np.isinf(scores_all.to_numpy(np.float64))
    if infinite.any():
        i = int(np.flatnonzero(infinite)[0])
        raise ArtmemError(f"{collection}: row {i} ({coll.table['path'].iloc[i]}): {cfg.score_column!r} is "
                          f"{scores_all.iloc[i]} ({int(infinite.sum())} infinite score(s)); scores must be finite")
    coll = coll.subset(scores_all.notna().to_numpy())
    y_all = pd.to_numeric(coll.table[cfg.score_column]).to_numpy(np.float64)
    if len(coll) < 2 * max(cfg.folds, 2):
        raise ArtmemError(f"too few images with a {cfg.score_column!r} score ({len(coll)})")
    from artmem.models.registry import get_pretrained_cfg

    for attr, name in (("layer", cfg.model), ("layer2", cfg.model2)):
        if name and not getattr(cfg, attr):
            try:  # record the resolved default layer in config.yaml
                setattr(cfg, attr, get_pretrained_cfg(name).default_layer or None)
            except ArtmemError:
                pass
    if cfg.epochs is None:  # resolved here so config.yaml records it
        cfg.epochs = FINETUNE_EPOCHS if cfg.finetune else HEAD_EPOCHS
    out = ensure_out_dir(out)
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    plan = fold_plan(coll, cfg.folds, cfg.seed)
    folds_from = f"{cfg.folds}-fold" if plan[0]["name"].startswith("fold_") else \
        "split columns " + ",".join(f["name"] for f in plan)
    cfg.extra = {**cfg.extra, "n_images": len(coll), "folds_from": folds_from,
                 "kind": kind, "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    (out / "config.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(asdict(cfg))), sort_keys=False))
    logger.info("%s on %d images (%s), %d fold(s) from %s", cfg.method, len(coll), cfg.score_column,
                len(plan), cfg.extra["folds_from"])

    # frozen features, computed once (or read from an `artmem extract` folder)
    errors = pd.DataFrame(columns=["path", "reason"])
    X = None
    proto = None
    if not cfg.finetune:
        proto = make_scorer(cfg, kind, 1, 1, None)
        if cfg.features:
            if cfg.model2:
                raise ArtmemError("--features holds one model's features; fusion computes its own")
            X = features_from_store(cfg.features, coll, cfg.model, cfg.layer or proto.layer)
        else:
            t0 = time.perf_counter()
            X, errors = compute_features(proto, coll, device, cfg.batch_size, cfg.num_workers,
                                         out=out / "features", identity=_features_identity(cfg, proto))
            logger.info("features %s in %.1f s", X.shape, time.perf_counter() - t0)
        usable = np.isfinite(X).all(1)
    else:
        usable = np.ones(len(coll), bool)

    fold_rows, summaries, preds = [], [], []
    models = {}
    for f in plan:
        tr = f["train"][usable[f["train"]]]
        te = f["test"][usable[f["test"]]]
        va = f["val"][usable[f["val"]]] if f["val"] is not None else None
        fdir = out / f["name"]
        t0 = time.perf_counter()
        scorer, record = fit_method(cfg, kind, coll, X, y_all, proto, tr, va, fdir)
        summaries.append({"fold": f["name"], **record} if isinstance(record, dict)
                         else record.assign(fold=f["name"]))
        train_time = time.perf_counter() - t0
        if X is not None:
            with torch.inference_mode():
                p = scorer.eval().forward_head(torch.as_tensor(X[te])).numpy()
        else:
            p, errs = predict_images(scorer, coll, te, device, cfg.batch_size, cfg.num_workers)
            if errs:  # unreadable images are skipped in training and listed once
                errors = pd.concat([errors, pd.DataFrame(errs)], ignore_index=True).drop_duplicates("path")
        ckpt_cfg = {**scorer_config(scorer, cfg.model, cfg.model2, fold=f["name"], score_column=cfg.score_column),
                    "preprocess": preprocess_for(scorer).to_dict()}
        save_checkpoint(fdir / "model.safetensors", scorer, ckpt_cfg)
        models[f["name"]] = fdir / "model.safetensors"
        rho = spearman(p, y_all[te])
        ok = np.isfinite(p)
        fold_rows.append({
            "fold": f["name"], "n_train": len(tr), "n_val": 0 if va is None else len(va), "n_test": len(te),
            "spearman": rho, "pearson": float(np.corrcoef(p[ok], y_all[te][ok])[0, 1]) if ok.sum() > 2 else np.nan,
            "rmse": float(np.sqrt(np.nanmean((p - y_all[te]) ** 2))), "train_time_s": train_time,
        })
        preds.append(pd.DataFrame({"path": np.asarray(coll.paths)[te], "fold": f["name"],
                                   "score_true": y_all[te], "score_pred": p}))
        logger.info("%s: Spearman %.3f on %d test images", f["name"], rho, len(te))

    folds = pd.DataFrame(fold_rows)
    summary = pd.concat([s if isinstance(s, pd.DataFrame) else pd.DataFrame([s]) for s in summaries],
                        ignore_index=True)
    summary = summary[["fold", *[c for c in summary.columns if c != "fold"]]]
    summary.to_csv(out / "summary.csv", index=False)
    folds.to_csv(out / "folds.csv", index=False)
    write_table(pd.concat(preds, ignore_index=True), out, "predictions")
    write_table(errors, out, "errors")

    # the final model
    if cfg.refit:
        final, refit_info = fit_method(cfg, kind, coll, X, y_all, proto, np.flatnonzero(usable), None,
                                       out / "refit")
        save_checkpoint(out / "model.safetensors", final,
                        {**scorer_config(final, cfg.model, cfg.model2, fold="all", score_column=cfg.score_column),
                         "preprocess": preprocess_for(final).to_dict()})
    else:
        copy_checkpoint(next(iter(models.values())), out / "model.safetensors")
    metrics = {
        "method": cfg.method, "kind": kind, "model": cfg.model, "model2": cfg.model2,
        "spearman_mean": float(np.nanmean(folds["spearman"])),
        "spearman_sd": float(np.nanstd(folds["spearman"], ddof=1)) if len(folds) > 1 else 0.0,
        "pearson_mean": float(np.nanmean(folds["pearson"])), "folds": len(folds),
        "folds_from": cfg.extra["folds_from"], "n_images": int(usable.sum()),
        "unreadable": int(len(errors)), "model_path": str(out / "model.safetensors"),
    }
    if cfg.method in ("svr", "ridge"):  # the parameters the inner search chose, per fold and refit
        metrics["chosen_params"] = {f["fold"]: {k: v for k, v in f.items() if k != "fold"}
                                    for f in json.loads(summary.to_json(orient="records"))}
        if cfg.refit:
            metrics["chosen_params"]["refit"] = refit_info
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    logger.info("Spearman %.3f +- %.3f over %d folds", metrics["spearman_mean"], metrics["spearman_sd"],
                len(folds))
    return metrics

