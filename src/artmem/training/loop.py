"""A generic, resumable training loop: `fit(model, train_loader, val_loader, loss_fn, config, run_dir)`.

Independent of classification: any model, any loss (cross-entropy, MSE for memorability
regression...), any metrics function. It writes into `run_dir`:

    summary.csv   one row per epoch: epoch, lr, train_loss, train_<metric>..., val_loss,
                  val_<metric>..., epoch_time_s, wall_time_s
    last.*        after every epoch (last.safetensors + last.json + last.training.pt): model,
                  optimizer, scheduler, grad scaler, epoch, RNG-free (each epoch reseeds from
                  (seed, epoch), so a resumed run is bit-identical on CPU)
    best.*        the epoch with the best monitored validation metric

Checkpoints are written with `artmem.models.checkpoint.save_checkpoint`, so `create_model(run_dir)`
rebuilds the trained model anywhere a model name is accepted.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from artmem.models.checkpoint import (
    copy_checkpoint,
    load_checkpoint,
    refuse_legacy,
    save_checkpoint,
)
from artmem.models.scenarios import set_train_mode
from artmem.runtime import autocast, resolve_device, seed_everything

logger = logging.getLogger(__name__)

FIT_DEFAULTS = {
    "epochs": 10, "optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "weight_decay": 5e-4,
    "schedule": "step", "step_size": 5, "gamma": 0.1, "seed": 0, "device": "auto", "amp": True,
    "monitor": "val_loss", "monitor_mode": None, "grad_clip": None,
}


@dataclass
class FitResult:
    """What `fit` returns.

    Attributes:
        history: the summary table (one row per epoch).
        best_epoch: epoch (1-based) of the best checkpoint; best_value: its monitored metric.
        train_time_s: summed epoch times (over resumed sessions too).
        best_path, last_path: the checkpoints' weights files (`best.safetensors`, `last.safetensors`).
    """

    history: pd.DataFrame
    best_epoch: int
    best_value: float
    train_time_s: float
    best_path: Path
    last_path: Path


def accuracy_metrics(outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Classification accuracy of logits (B, C) against integer targets (B,)."""
    return {"acc": float((outputs.argmax(1) == targets).float().mean()) if len(targets) else float("nan")}


def build_optimizer(params, cfg: Mapping) -> torch.optim.Optimizer:
    """SGD with momentum and L2 weight decay (Cetinic 2018) or Adam."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: every parameter is frozen")
    if cfg["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    return torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"],
                           weight_decay=cfg["weight_decay"])


def build_scheduler(optimizer, cfg: Mapping):
    """Step decay (lr x gamma every step_size epochs) or a constant learning rate."""
    if cfg["schedule"] == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg["step_size"], gamma=cfg["gamma"])
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def _batch_to(batch, device):
    x, y = batch[0], batch[1]
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def _use_fp16(device) -> bool:
    return device.type == "cuda" and not torch.cuda.is_bf16_supported()


def run_epoch(model, loader, loss_fn, device, optimizer=None, scaler=None, amp=True,
              grad_clip=None, desc="") -> tuple[float, torch.Tensor, torch.Tensor]:
    """One pass over `loader`; trains when `optimizer` is given. Returns (mean loss, outputs, targets)."""
    from tqdm.auto import tqdm

    training = optimizer is not None
    total, count = 0.0, 0
    outs, tgts = [], []
    ctx = torch.enable_grad() if training else torch.inference_mode()
    with ctx:
        bar = tqdm(loader, desc=desc, unit="batch", leave=False, disable=None)
        for batch in bar:
            x, y = _batch_to(batch, device)
            with autocast(device) if amp else _null():
                out = model(x)
                loss = loss_fn(out, y)
            if training:
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None and scaler.is_enabled():
                    scaler.scale(loss).backward()
                    if grad_clip:
                        scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    if grad_clip:
                        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                    optimizer.step()
            n = len(y)
            total += float(loss.detach()) * n
            count += n
            outs.append(out.detach().float().cpu())
            tgts.append(y.detach().cpu())
    if count == 0:
        return float("nan"), torch.empty(0), torch.empty(0)
    return total / count, torch.cat(outs), torch.cat(tgts)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_MAXIMIZED = ("acc", "f1", "auc", "rho", "corr", "spearman", "pearson", "r2", "precision", "recall")


def _minimize(monitor: str, mode: str | None = None) -> bool:
    """Whether a lower monitored value is better: `mode` min/max, else guessed from the name."""
    if mode in ("min", "max"):
        return mode == "min"
    return not any(s in monitor.lower() for s in _MAXIMIZED)


def _better(value: float, best: float, minimize: bool) -> bool:
    if math.isnan(value):
        return False
    if math.isnan(best):
        return True
    return value < best if minimize else value > best


def fit(
    model: nn.Module,
    train_loader,
    val_loader,
    loss_fn: Callable,
    config: Mapping,
    run_dir: str | Path,
    metrics_fn: Callable[[torch.Tensor, torch.Tensor], dict] | None = None,
    resume: bool = False,
    checkpoint_config: Mapping | None = None,
    class_names: list[str] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    on_epoch_end: Callable[[dict], None] | None = None,
) -> FitResult:
    """Train `model` for `config['epochs']` epochs, checkpointing every epoch; resumable.

    Args:
        model: trains the parameters with `requires_grad` (apply a scenario first to freeze groups;
            frozen groups stay in eval mode).
        train_loader, val_loader: iterables of (inputs, targets, ...) batches; `val_loader` may be None.
        loss_fn: loss(outputs, targets) -> scalar tensor.
        config: epochs, optimizer (sgd|adam), lr, momentum, weight_decay, schedule (step|constant),
            step_size, gamma, seed, device, amp, monitor ("val_loss", "val_acc", "val_<metric>"),
            monitor_mode ("min"/"max"; default: max for accuracy/F1/correlation-like names, else
            min), grad_clip; missing keys take `FIT_DEFAULTS`.
        run_dir: folder for summary.csv and the last and best checkpoints.
        metrics_fn: metrics(outputs, targets) -> {name: value}, reported for train and val.
        resume: continue from the run_dir's last checkpoint (a finished run is returned as is).
        checkpoint_config: the `config` saved in checkpoints (needs `base_model`; default `config`).
        class_names: saved in checkpoints.
        optimizer: use this optimizer instead of building one from the config.
        on_epoch_end: called with each summary row (e.g. for progress reports).
    """
    cfg = {**FIT_DEFAULTS, **{k: v for k, v in dict(config).items() if v is not None}}
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg["device"])
    amp = bool(cfg["amp"]) and device.type == "cuda"
    model.to(device)
    optimizer = optimizer or build_optimizer(model.parameters(), cfg)
    scheduler = build_scheduler(optimizer, cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and _use_fp16(device))
    ckpt_cfg = dict(checkpoint_config or config)
    monitor = cfg["monitor"]
    minimize = _minimize(monitor, cfg.get("monitor_mode"))
    summary_path = run_dir / "summary.csv"
    last_path, best_path = run_dir / "last.safetensors", run_dir / "best.safetensors"

    rows: list[dict] = []
    start_epoch, best_value, best_epoch = 1, float("nan"), 0
    if resume:
        refuse_legacy(run_dir)
    if resume and last_path.exists():
        state = load_checkpoint(last_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch = int(state["epoch"]) + 1
        best_value = float(state.get("best_value", float("nan")))
        best_epoch = int(state.get("best_epoch", 0))
        if summary_path.exists():
            prev = pd.read_csv(summary_path)
            rows = prev[prev["epoch"] < start_epoch].to_dict("records")
        logger.info("resuming %s at epoch %d", run_dir, start_epoch)
    elif resume:
        logger.info("nothing to resume in %s; starting fresh", run_dir)

    wall0 = time.perf_counter() - (rows[-1]["wall_time_s"] if rows else 0.0)
    for epoch in range(start_epoch, int(cfg["epochs"]) + 1):
        # Every epoch draws its shuffling, augmentation and dropout from (seed, epoch), so a run
        # resumed after epoch k continues exactly as the uninterrupted run would have.
        seed_everything(int(cfg["seed"]) * 1000 + epoch)
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        set_train_mode(model, True)
        tr_loss, tr_out, tr_y = run_epoch(model, train_loader, loss_fn, device, optimizer, scaler,
                                          amp, cfg.get("grad_clip"), desc=f"epoch {epoch} train")
        row = {"epoch": epoch, "lr": lr, "train_loss": tr_loss}
        if metrics_fn is not None and len(tr_y):
            row.update({f"train_{k}": v for k, v in metrics_fn(tr_out, tr_y).items()})
        if val_loader is not None:
            set_train_mode(model, False)
            va_loss, va_out, va_y = run_epoch(model, val_loader, loss_fn, device, amp=amp,
                                              desc=f"epoch {epoch} val")
            row["val_loss"] = va_loss
            if metrics_fn is not None and len(va_y):
                row.update({f"val_{k}": v for k, v in metrics_fn(va_out, va_y).items()})
        scheduler.step()
        row["epoch_time_s"] = time.perf_counter() - t0
        row["wall_time_s"] = time.perf_counter() - wall0
        rows.append(row)
        key = monitor if monitor in row else "train_loss"
        value = float(row[key])
        improved = _better(value, best_value, minimize if key == monitor else True)
        if improved:
            best_value, best_epoch = value, epoch
        extra = {"scaler": scaler.state_dict() if scaler.is_enabled() else None,
                 "best_value": best_value, "best_epoch": best_epoch}
        if improved:
            save_checkpoint(best_path, model, ckpt_cfg, optimizer, scheduler, epoch, class_names, **extra)
        save_checkpoint(last_path, model, ckpt_cfg, optimizer, scheduler, epoch, class_names, **extra)
        pd.DataFrame(rows).to_csv(summary_path, index=False)
        logger.info("epoch %d/%d  %s", epoch, cfg["epochs"], "  ".join(
            f"{k}={v:.4g}" for k, v in row.items() if k != "epoch" and isinstance(v, float)))
        if on_epoch_end is not None:
            on_epoch_end(row)

    history = pd.DataFrame(rows)
    if not best_path.exists() and last_path.exists():  # e.g. every val metric NaN
        copy_checkpoint(last_path, best_path)
    train_time = float(np.nansum(history["epoch_time_s"])) if len(history) else 0.0
    return FitResult(history, best_epoch, best_value, train_time, best_path, last_path)
