"""Checkpoints of trained models, loadable anywhere a model name is accepted (`--model PATH`).

A checkpoint is a dict saved with torch.save:
    model      state dict of the full module (after any wrapper)
    optimizer  optimizer state (optional), scheduler (optional), epoch (optional)
    config     resolved run config; must hold `base_model` (registry name) and `num_classes`;
               may hold `wrapper` = "package.module:function" that turns the freshly built base
               model into the trained module (e.g. a K-class memorability head that aggregates
               class probabilities into a score), called as fn(model, config)
    class_names list of output names (classifiers)
A run folder is accepted too: its `best.pt`, else `last.pt`, is used.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)


def save_checkpoint(path, model, config: dict, optimizer=None, scheduler=None, epoch=None,
                    class_names=None, **extra) -> Path:
    """Save atomically (write to .tmp then rename) so a kill never leaves a half-written file."""
    import torch

    if "base_model" not in config:
        raise ValueError("checkpoint config needs 'base_model'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": epoch,
        "config": dict(config),
        "class_names": list(class_names) if class_names is not None else None,
        **extra,
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    return path


def resolve_checkpoint_path(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt", "model.pt"):
            if (path / name).exists():
                return path / name
        raise ArtmemError(f"{path}: run folder has no best.pt / last.pt / model.pt")
    if not path.exists():
        raise ArtmemError(f"{path}: no such checkpoint")
    return path


def load_checkpoint(path: str | Path) -> dict:
    import torch

    path = resolve_checkpoint_path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ArtmemError(f"{path}: not a readable checkpoint ({exc})") from exc
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ArtmemError(f"{path}: not an artmem checkpoint (needs 'model' and 'config')")
    return state


def load_trained_model(path: str | Path, **kwargs):
    """Rebuild a trained model from its checkpoint (base model + optional wrapper + weights)."""
    from artmem.models.registry import create_model

    state = load_checkpoint(path)
    cfg = state["config"]
    model = create_model(cfg["base_model"], pretrained=False, num_classes=cfg.get("num_classes"), **kwargs)
    wrapper = cfg.get("wrapper")
    if wrapper:
        module_name, _, fn_name = wrapper.partition(":")
        model = getattr(importlib.import_module(module_name), fn_name)(model, cfg)
    model.load_state_dict(state["model"])
    names = state.get("class_names")
    if names and hasattr(model, "pretrained_cfg") and model.pretrained_cfg is not None:
        model.pretrained_cfg = model.pretrained_cfg.replace(class_names=tuple(names))
    model.trained_config = cfg
    model.checkpoint_path = str(resolve_checkpoint_path(path))
    return model.eval()
