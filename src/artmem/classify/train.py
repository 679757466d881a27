"""`train_classifier`: one classification run (split, cache, scenario, training, test evaluation).

Run folder (`-o RUN`):

    config.yaml              resolved settings (defaults < --config file < flags)
    split.parquet            path, label, target, split of every image used
    summary.csv              one row per epoch: loss, train/val accuracy, lr, epoch and wall time
    best.*, last.*           checkpoints: .safetensors weights, .json config and class names,
                             last.training.pt optimizer/scheduler state (`artmem.models.checkpoint`)
    metrics.json             test accuracy, macro F1, per-class accuracy, training time, ...
    per_class.csv, confusion_matrix.csv, confusion_matrix.png, curves.png
    test_predictions.parquet path, label, pred, prob, correct
    errors.parquet           images that could not be read (path, reason)
    head/ or search/trial_NN/, finetune/   stages of a frozen-feature run (resumable)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn

from artmem.classify.config import TrainConfig, write_config
from artmem.classify.data import (
    default_cache_size,
    feature_loader,
    input_crop,
    make_dataset,
    make_loader,
    open_image_cache,
    prepare_split,
)
from artmem.errors import ArtmemError
from artmem.io import ensure_out_dir
from artmem.models.checkpoint import (
    copy_checkpoint,
    load_checkpoint,
    load_run,
    refuse_legacy,
    save_checkpoint,
)
from artmem.models.preprocess import Preprocess
from artmem.runtime import resolve_device, seed_everything
from artmem.training.loop import accuracy_metrics, fit

logger = logging.getLogger(__name__)

# Settings that may change when a run is resumed (they do not change what is computed).
RESUMABLE_CHANGES = {"epochs", "device", "num_workers", "finetune_epochs", "cache_dir"}


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict
    history: pd.DataFrame
    written: list[Path]


def _fit_settings(cfg: TrainConfig) -> dict:
    keys = ("epochs", "optimizer", "lr", "momentum", "weight_decay", "schedule", "step_size",
            "gamma", "seed", "device", "amp", "monitor")
    return {k: getattr(cfg, k) for k in keys}


def _check_run_folder(run_dir: Path, cfg: TrainConfig, resume: bool) -> None:
    from artmem.classify.config import read_run_config

    cfg_file = run_dir / "config.yaml"
    refuse_legacy(run_dir)
    started = (run_dir / "last.safetensors").exists() or (run_dir / "metrics.json").exists() or \
        (run_dir / "head").exists() or (run_dir / "search").exists()
    if not resume:
        if started:
            raise ArtmemError(f"{run_dir} already holds a training run; use --resume to continue "
                              "it or choose another -o folder")
        return
    if cfg_file.exists():
        saved = read_run_config(run_dir).to_dict()
        now = cfg.to_dict()
        diff = [k for k in now if k not in RESUMABLE_CHANGES and now[k] != saved.get(k)]
        if diff:
            raise ArtmemError(f"--resume: settings differ from the run's config.yaml: "
                              f"{', '.join(f'{k}={now[k]!r} (was {saved.get(k)!r})' for k in diff)}")


def _test_probabilities(model: nn.Module, test_part: pd.DataFrame, collection, cache, names: list[str],
                        device, batch_size: int) -> np.ndarray:
    """Softmax of `model` on the cached centre crops of the test images (a batch job), in
    `test_part` order."""
    from artmem.batch.api import run_job
    from artmem.classify.processors import CachedProbabilities, probability_columns

    crop = min(input_crop(model), cache.size)
    proc = CachedProbabilities(model, cache, crop, {"model": "run under evaluation"}, probability_columns(names))
    part = collection.subset(collection.table["path"].isin(set(test_part["path"])).to_numpy())
    result = run_job(part, proc, None, device=device, batch_size=batch_size, num_workers=0, progress=False)
    return result.table.set_index("path").loc[test_part["path"], proc.columns].to_numpy(np.float32)


def train_classifier(collection, out: str | Path, config: TrainConfig, resume: bool = False,
                     on_epoch_end=None) -> TrainResult:
    """Train and evaluate a classifier on `config.label` of `collection`; writes the run folder.

    Args:
        collection: a Collection, collection file or image folder.
        out: the run folder.
        config: resolved settings (`resolve_config`).
        resume: continue an interrupted run in `out` (finished stages are not redone).
        on_epoch_end: optional callback with each epoch's summary row.

    Returns:
        TrainResult with the test metrics and the per-epoch history.
    """
    if config.label is None:
        from artmem.data.collection import open_collection

        columns = open_collection(collection).label_columns
        raise ArtmemError("which column holds the classes? give --label COLUMN (label columns of this "
                          f"collection: {', '.join(columns) or 'none'})")
    from artmem.classify.evaluate import plot_curves, write_evaluation
    from artmem.classify.model import build_classifier
    from artmem.data.collection import open_collection
    from artmem.models.scenarios import apply_scenario, trainable_parameter_count

    cfg = config.validate()
    if cfg.search > 0 and cfg.head != "mlp":
        logger.info("--search tunes an MLP head: using head=mlp")
        cfg.head = "mlp"
    run_dir = ensure_out_dir(out)
    _check_run_folder(run_dir, cfg, resume)
    written = [write_config(cfg, run_dir / "config.yaml")]
    seed_everything(cfg.seed)

    coll = open_collection(collection)
    split = prepare_split(coll, cfg.label, cfg.split, cfg.seed, cfg.min_count, cfg.max_per_class)
    names = split.class_names
    model, ckpt = build_classifier(cfg.model, len(names), cfg.init, cfg.seed, cfg.head,
                                   cfg.head_width, cfg.dropout)
    crop = input_crop(model)
    cache_size = cfg.cache_size or default_cache_size(crop)
    # the run's evaluation preprocessing is what training fed the network (the cache's centre crop)
    preprocess = Preprocess.for_cache(cache_size, crop, model.pretrained_cfg.mean, model.pretrained_cfg.std)
    ckpt.update(label=cfg.label, run_config=cfg.to_dict(), preprocess=preprocess.to_dict())
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else run_dir / "cache"
    cache = open_image_cache(split.collection, cache_dir, cache_size)
    device = resolve_device(cfg.device)

    ds = {name: make_dataset(cache, split.part(name), model, train=name == "train", augment=cfg.augment)
          for name in ("train", "val", "test") if len(split.part(name))}
    skipped = pd.concat([d.skipped for d in ds.values()], ignore_index=True)
    skipped.to_parquet(run_dir / "errors.parquet", index=False)
    written.append(run_dir / "errors.parquet")
    if len(skipped):
        logger.warning("%d images could not be read and were left out (errors.parquet)", len(skipped))
    kept = set().union(*(d.paths for d in ds.values()))
    table = split.table[split.table["path"].isin(kept)].reset_index(drop=True)
    table.to_parquet(run_dir / "split.parquet", index=False)
    written.append(run_dir / "split.parquet")
    counts = table["split"].value_counts().to_dict()
    logger.info("%s: %d classes, train %d / val %d / test %d images", cfg.label, len(names),
                counts.get("train", 0), counts.get("val", 0), counts.get("test", 0))

    def loader(name, train=False):
        if name not in ds:
            return None
        return make_loader(ds[name], cfg.batch_size, shuffle=train, num_workers=cfg.num_workers,
                           device=device)

    loss_fn = nn.CrossEntropyLoss()
    extra: dict = {}
    if cfg.uses_frozen_features():
        history, train_time, extra = _train_frozen(cfg, model, ckpt, names, cache, table, ds, loader,
                                                   run_dir, resume, device, on_epoch_end, split.collection)
    else:
        trained = apply_scenario(model, cfg.scenario)
        logger.info("scenario %s: training %s (%d parameters)", cfg.scenario, ", ".join(trained),
                    trainable_parameter_count(model))
        extra["trainable_params"] = trainable_parameter_count(model)
        res = fit(model, loader("train", True), loader("val"), loss_fn, _fit_settings(cfg), run_dir,
                  accuracy_metrics, resume=resume, checkpoint_config=ckpt, class_names=names,
                  on_epoch_end=on_epoch_end)
        history, train_time = res.history, res.train_time_s
        extra.update(best_epoch=res.best_epoch)
    written += [run_dir / "summary.csv", run_dir / "best.safetensors", run_dir / "best.json",
                run_dir / "last.safetensors", run_dir / "last.json"]

    best = load_run(run_dir / "best.safetensors")
    test_part = table[table["split"] == "test"].reset_index(drop=True)
    probs = _test_probabilities(best, test_part, split.collection, cache, names, device, cfg.batch_size) \
        if "test" in ds else np.zeros((0, len(names)))
    val_acc = history["val_acc"].max() if "val_acc" in history else float("nan")
    extra.update(train_time_s=round(float(train_time), 3), best_val_accuracy=float(val_acc),
                 epochs_run=int(len(history)), n_train=int(counts.get("train", 0)),
                 n_val=int(counts.get("val", 0)), label=cfg.label, model=cfg.model, init=cfg.init,
                 scenario=cfg.scenario, device=str(device))
    written += write_evaluation(run_dir, names, test_part, probs, extra)
    written.append(plot_curves(history, run_dir / "curves.png",
                               f"{cfg.label}: {cfg.model} ({cfg.init}), scenario {cfg.scenario}"))
    import json

    metrics = json.loads((run_dir / "metrics.json").read_text())
    logger.info("test accuracy %.3f, macro F1 %.3f (majority baseline %.3f), training %.1f s",
                metrics["test_accuracy"], metrics["test_macro_f1"], metrics["majority_baseline"],
                train_time)
    return TrainResult(run_dir, metrics, history, written)


def _val_at(history: pd.DataFrame, epoch: int) -> tuple[float, float]:
    """(val_acc, val_loss) of `epoch` (1-based) of a fit history; NaN where not recorded."""
    row = history[history["epoch"] == epoch]
    return tuple(float(row[c].iloc[0]) if c in row and len(row) else float("nan")
                 for c in ("val_acc", "val_loss"))


def _finetune_wins(ft: tuple[float, float], head: tuple[float, float]) -> bool:
    """Keep the fine-tuned model only when validation says it is better: higher accuracy, or the
    same accuracy and a lower loss. A full tie (or no validation) keeps the head-only model,
    the simpler one with fewer trained parameters."""
    (fa, fl), (ha, hl) = ft, head
    if np.isnan(fa) or np.isnan(ha):
        return False
    if fa != ha:
        return fa > ha
    return bool(fl < hl)


def _train_frozen(cfg, model, ckpt, names, cache, table, ds, loader, run_dir: Path, resume, device,
                  on_epoch_end, collection):
    """Frozen backbone: cached features -> head (optionally searched) -> optional last-block finetune."""
    from artmem.classify.frozen import HeadOnly, cached_features, feature_key, sample_trials
    from artmem.classify.model import build_classifier
    from artmem.models.scenarios import (
        apply_scenario,
        finetune_last_module,
        trainable_parameter_count,
    )

    crop = min(input_crop(model), cache.size)
    key = feature_key(cfg.model, cfg.init, cfg.seed, cache.size, crop)
    cache_root = Path(cfg.cache_dir) if cfg.cache_dir else run_dir / "cache"
    apply_scenario(model, "only_last")
    head_params = trainable_parameter_count(model)
    identity = {"model": cfg.model, "init": cfg.init, "seed": cfg.seed, "cache_size": cache.size, "crop": crop}
    kept = collection.subset(collection.table["path"].isin(set(table["path"])).to_numpy())
    feats, feat_time = cached_features(model, kept, cache, crop, cache_root / "features" / key, identity,
                                       device=cfg.device, batch_size=max(cfg.batch_size, 64))
    pos = {p: i for i, p in enumerate(kept.paths)}
    part_idx = {s: np.array([pos[p] for p in table.loc[table["split"] == s, "path"]], dtype=int)
                for s in ("train", "val")}
    targets = table["target"].to_numpy()
    floaders = {s: feature_loader(feats[idx], targets[idx], cfg.batch_size, shuffle=s == "train")
                for s, idx in part_idx.items() if len(idx)}
    loss_fn = nn.CrossEntropyLoss()
    trials = sample_trials(cfg.search, cfg.seed, cfg.lr, cfg.head_width, cfg.dropout) \
        if cfg.search > 0 else [{"head_width": cfg.head_width, "dropout": cfg.dropout, "lr": cfg.lr}]
    results = []
    for t, trial in enumerate(trials):
        tdir = run_dir / "head" if cfg.search <= 0 else run_dir / "search" / f"trial_{t:02d}"
        tmodel, tckpt = (model, ckpt) if cfg.search <= 0 else build_classifier(
            cfg.model, len(names), cfg.init, cfg.seed, cfg.head, trial["head_width"], trial["dropout"])
        apply_scenario(tmodel, "only_last")
        fitcfg = {**_fit_settings(cfg), "lr": trial["lr"]}
        res = fit(HeadOnly(tmodel), floaders["train"], floaders.get("val"), loss_fn, fitcfg, tdir,
                  accuracy_metrics, resume=True if tdir.exists() and resume else False,
                  checkpoint_config={**tckpt, "head_only": True}, class_names=names,
                  on_epoch_end=on_epoch_end)
        h = res.history
        best_acc = float(h["val_acc"].max()) if "val_acc" in h else float("nan")
        best_loss = float(h["val_loss"].min()) if "val_loss" in h else float(h["train_loss"].min())
        results.append({"trial": t, **trial, "best_val_acc": best_acc, "best_val_loss": best_loss,
                        "best_epoch": res.best_epoch, "train_time_s": res.train_time_s,
                        "dir": str(tdir.relative_to(run_dir)), "_res": res, "_ckpt": tckpt})
    order = sorted(results, key=lambda r: (-np.nan_to_num(r["best_val_acc"], nan=-1), r["best_val_loss"], r["trial"]))
    chosen = order[0]
    extra = {"feature_time_s": round(feat_time, 3), "frozen_features": True, "trainable_params": head_params}
    if cfg.search > 0:
        table_s = pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in results])
        table_s["chosen"] = table_s["trial"] == chosen["trial"]
        table_s.to_csv(run_dir / "search.csv", index=False)
        extra["search"] = {k: chosen[k] for k in ("trial", "head_width", "dropout", "lr")}
        run_record = {k: ckpt[k] for k in ("label", "run_config", "preprocess")}
        model, ckpt = build_classifier(cfg.model, len(names), cfg.init, cfg.seed, cfg.head,
                                       chosen["head_width"], chosen["dropout"])
        ckpt.update(run_record)
    res = chosen["_res"]
    head = HeadOnly(model)
    head.load_state_dict(load_checkpoint(res.best_path)["model"])
    save_checkpoint(run_dir / "best.safetensors", model, ckpt, epoch=res.best_epoch, class_names=names)
    history = res.history.assign(stage="head")
    train_time = float(res.train_time_s) + feat_time
    if cfg.finetune_last:
        label = finetune_last_module(model)
        logger.info("finetuning the last module (%s) and the head from the trained head at lr %g",
                    label, cfg.finetune_lr)
        ftcfg = {**_fit_settings(cfg), "optimizer": cfg.finetune_optimizer, "lr": cfg.finetune_lr,
                 "schedule": "constant", "epochs": cfg.finetune_epochs}
        # the head was trained on centre-crop features: the fine-tuning images are the same
        # centre crops (no augmentation), so its first step starts where the head stopped
        train_part = table[table["split"] == "train"].reset_index(drop=True)
        ft_train = make_loader(make_dataset(cache, train_part, model, train=False), cfg.batch_size, shuffle=True,
                               num_workers=cfg.num_workers, device=device)
        ft = fit(model, ft_train, loader("val"), loss_fn, ftcfg, run_dir / "finetune",
                 accuracy_metrics, resume=resume, checkpoint_config=ckpt, class_names=names,
                 on_epoch_end=on_epoch_end)
        history = pd.concat([history, ft.history.assign(stage="finetune")], ignore_index=True)
        train_time += ft.train_time_s
        head_at = _val_at(res.history, res.best_epoch)
        ft_at = _val_at(ft.history, ft.best_epoch)
        use_ft = _finetune_wins(ft_at, head_at)
        extra["finetune"] = {"best_val_acc": ft_at[0], "best_val_loss": ft_at[1],
                             "head_best_val_acc": head_at[0], "head_best_val_loss": head_at[1],
                             "used": use_ft, "last_module": label, "trainable_params": trainable_parameter_count(model),
                             "rule": "higher val accuracy; on a tie lower val loss; on a tie the head"}
        if use_ft:
            copy_checkpoint(ft.best_path, run_dir / "best.safetensors")
        copy_checkpoint(ft.last_path, run_dir / "last.safetensors")
    else:
        head.load_state_dict(load_checkpoint(res.last_path)["model"])
        save_checkpoint(run_dir / "last.safetensors", model, ckpt, epoch=len(res.history), class_names=names)
    history["epoch_index"] = np.arange(1, len(history) + 1)
    history.to_csv(run_dir / "summary.csv", index=False)
    return history, train_time, extra
