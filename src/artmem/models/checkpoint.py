"""Model files of trained runs: weights in safetensors plus a JSON description, never a pickle.

A checkpoint named `best` is two files side by side (three while training):

    best.safetensors   the state dict of the trained module (tensors only: nothing to execute)
    best.json          {"format": "artmem-model", "version": 1, "config": {...}, "class_names",
                       "epoch", ...}: `config` holds `base_model` (a registry name), `num_classes`
                       and, for a module built around the base model, `wrapper`: the name of one
                       of artmem's own trained-model builders (`TRAINED_BUILDERS`)
    best.training.pt   optimizer and scheduler state for `--resume` (torch.save of plain tensors,
                       read with `weights_only=True`)

A run folder is accepted wherever a checkpoint is: its `best`, else `last`, else `model` is used.
Run folders of artmem before this format (`best.pt`, pickles) are refused with a message naming
`artmem models convert RUN --trust`, the one place a pickle is read (`artmem.models.convert`).
"""

from __future__ import annotations

import importlib
import json
import logging
import shutil
from pathlib import Path

from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)

FORMAT = "artmem-model"
FORMAT_VERSION = 1
WEIGHTS_SUFFIX = ".safetensors"
META_SUFFIX = ".json"
TRAINING_SUFFIX = ".training.pt"
# Checkpoints a run folder stands for, in order of preference.
RUN_CHECKPOINTS = ("best", "last", "model")
LEGACY_SUFFIXES = (".pt", ".pth", ".ckpt")

# The builders a checkpoint's `wrapper` may name: (module, function) inside artmem, called as
# fn(base_model, config). A name outside this table is refused; nothing named in a file is imported.
TRAINED_BUILDERS = {
    "mlp_head": ("artmem.classify.model", "wrap_mlp_head"),
    "memorability_scorer": ("artmem.memorability.heads", "build_scorer"),
}


class LegacyCheckpointError(ArtmemError):
    """A model file in the pickle format artmem wrote before safetensors."""

    def __init__(self, path: Path, run: Path):
        super().__init__(
            f"{path}: a model file in artmem's old pickle format, which artmem no longer reads "
            f"(loading a pickle can run code); if you trust its source, convert it once with "
            f"`artmem models convert {run} --trust`")


def checkpoint_files(path: str | Path) -> tuple[Path, Path, Path]:
    """(weights, description, training state) of the checkpoint `path` (any of them, or the stem)."""
    path = Path(path)
    name = path.name
    for suffix in (TRAINING_SUFFIX, WEIGHTS_SUFFIX, META_SUFFIX):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    stem = path.with_name(name)
    return (stem.with_name(name + WEIGHTS_SUFFIX), stem.with_name(name + META_SUFFIX),
            stem.with_name(name + TRAINING_SUFFIX))


def _legacy_files(folder: Path) -> list[Path]:
    return [folder / f"{n}{s}" for n in RUN_CHECKPOINTS for s in LEGACY_SUFFIXES
            if (folder / f"{n}{s}").exists()]


def refuse_legacy(folder: str | Path) -> None:
    """Raise LegacyCheckpointError when `folder` holds old pickle checkpoints and no new ones."""
    folder = Path(folder)
    legacy = _legacy_files(folder) if folder.is_dir() else []
    if legacy and not any((folder / f"{n}{WEIGHTS_SUFFIX}").exists() for n in RUN_CHECKPOINTS):
        raise LegacyCheckpointError(legacy[0], folder)


def resolve_checkpoint(path: str | Path) -> Path:
    """The weights file a checkpoint path or run folder stands for.

    Raises:
        LegacyCheckpointError: an old pickle checkpoint.
        ArtmemError: nothing loadable there.
    """
    path = Path(path)
    if path.is_dir():
        for name in RUN_CHECKPOINTS:
            if (path / f"{name}{WEIGHTS_SUFFIX}").exists():
                return path / f"{name}{WEIGHTS_SUFFIX}"
        refuse_legacy(path)
        raise ArtmemError(f"{path}: run folder has no best{WEIGHTS_SUFFIX} / last{WEIGHTS_SUFFIX} / "
                          f"model{WEIGHTS_SUFFIX}")
    if path.suffix in LEGACY_SUFFIXES and not path.name.endswith(TRAINING_SUFFIX):
        if not path.exists():
            raise ArtmemError(f"{path}: no such checkpoint")
        raise LegacyCheckpointError(path, path.parent if path.stem in RUN_CHECKPOINTS else path)
    weights, meta, _ = checkpoint_files(path)
    if not weights.exists():
        raise ArtmemError(f"{path}: no such checkpoint ({weights.name} is missing)")
    if not meta.exists():
        raise ArtmemError(f"{weights}: its description {meta.name} is missing")
    return weights


def is_run_path(name) -> bool:
    """Whether `name` points at a checkpoint or run folder (as opposed to a registry name)."""
    p = Path(str(name))
    return p.suffix in (WEIGHTS_SUFFIX, META_SUFFIX, *LEGACY_SUFFIXES) or p.exists()


def _json_ready(value, where: str):
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint {where} must be JSON data: {exc}") from exc


def _replace_atomically(write, target: Path) -> None:
    """Write to a temporary neighbour, then rename: a kill never leaves a half-written file."""
    tmp = target.with_name(target.name + ".tmp")
    write(tmp)
    tmp.replace(target)


def write_checkpoint(path: str | Path, state_dict: dict, config: dict, class_names=None, epoch=None,
                     optimizer_state: dict | None = None, scheduler_state: dict | None = None,
                     **extra) -> Path:
    """Write a state dict and its description as checkpoint `path`; returns the weights file.

    Args:
        path: the checkpoint (`run/best.safetensors`, or its stem `run/best`).
        state_dict: tensors of the trained module.
        config: JSON data with `base_model` (registry name), `num_classes`, optional `wrapper`.
        class_names: output names of a classifier.
        epoch: the epoch these weights are from.
        optimizer_state, scheduler_state: training state for resuming (written beside).
        **extra: more JSON data for the description (best_value, best_epoch, ...).
    """
    import torch
    from safetensors.torch import save_file

    if "base_model" not in config:
        raise ValueError("checkpoint config needs 'base_model'")
    wrapper = config.get("wrapper")
    if wrapper and wrapper not in TRAINED_BUILDERS:
        raise ValueError(f"checkpoint wrapper {wrapper!r} is not one of {sorted(TRAINED_BUILDERS)}")
    weights, meta_path, training = checkpoint_files(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "version": FORMAT_VERSION,
            "config": _json_ready(dict(config), "config"),
            "class_names": list(map(str, class_names)) if class_names is not None else None,
            "epoch": epoch, **_json_ready(extra, "extras")}
    seen: set[int] = set()
    tensors = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"state dict entry {key!r} is not a tensor")
        value = value.detach().cpu().contiguous()
        storage = value.untyped_storage().data_ptr()
        if value.numel() and storage in seen:  # tied weights / views: safetensors wants each apart
            value = value.clone()
        seen.add(value.untyped_storage().data_ptr())
        tensors[key] = value
    if optimizer_state is not None or scheduler_state is not None:
        state = {"optimizer": optimizer_state, "scheduler": scheduler_state}
        _replace_atomically(lambda p: torch.save(state, p), training)
    else:
        training.unlink(missing_ok=True)
    _replace_atomically(lambda p: save_file(tensors, str(p), metadata={"format": "pt"}), weights)
    _replace_atomically(lambda p: p.write_text(json.dumps(meta, indent=1) + "\n"), meta_path)
    return weights


def save_checkpoint(path, model, config: dict, optimizer=None, scheduler=None, epoch=None,
                    class_names=None, **extra) -> Path:
    """Save `model` (and optionally its optimizer/scheduler) as checkpoint `path`; see `write_checkpoint`."""
    return write_checkpoint(
        path, model.state_dict(), config, class_names, epoch,
        optimizer.state_dict() if optimizer is not None else None,
        scheduler.state_dict() if scheduler is not None else None, **extra)


def copy_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """Copy every file of checkpoint `src` to checkpoint `dst`; returns the new weights file."""
    for a, b in zip(checkpoint_files(src), checkpoint_files(dst), strict=True):
        if a.exists():
            _replace_atomically(lambda p, a=a: shutil.copyfile(a, p), b)
        else:
            b.unlink(missing_ok=True)
    return checkpoint_files(dst)[0]


def read_description(path: str | Path) -> dict:
    """The JSON description of checkpoint `path` (a run folder too), checked."""
    weights = resolve_checkpoint(path)
    meta_path = checkpoint_files(weights)[1]
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtmemError(f"{meta_path}: not a readable checkpoint description ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ArtmemError(f"{meta_path}: not an artmem model description (no \"format\": \"{FORMAT}\")")
    if meta.get("version") != FORMAT_VERSION:
        raise ArtmemError(f"{meta_path}: model file version {meta.get('version')!r} is not supported "
                          f"(this artmem reads version {FORMAT_VERSION})")
    if not isinstance(meta.get("config"), dict) or not isinstance(meta["config"].get("base_model"), str):
        raise ArtmemError(f"{meta_path}: config has no base_model name")
    return meta


def load_weights(path: str | Path) -> dict:
    """The state dict of checkpoint `path` (tensors on the CPU)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = resolve_checkpoint(path)
    try:
        return load_file(str(weights), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise ArtmemError(f"{weights}: not a readable safetensors file ({exc})") from exc


def load_checkpoint(path: str | Path) -> dict:
    """Everything of checkpoint `path`: its description's keys, `model` (the state dict) and, when
    saved, `optimizer` and `scheduler` (read with `weights_only=True`)."""
    import torch

    weights = resolve_checkpoint(path)
    state = {**read_description(weights), "model": load_weights(weights),
             "optimizer": None, "scheduler": None}
    training = checkpoint_files(weights)[2]
    if training.exists():
        try:
            state.update(torch.load(training, map_location="cpu", weights_only=True))
        except Exception as exc:
            raise ArtmemError(f"{training}: not a readable training state ({exc})") from exc
    return state


def _trained_builder(name, meta_path: Path):
    if name not in TRAINED_BUILDERS:
        raise ArtmemError(f"{meta_path}: unknown wrapper {name!r} (artmem builds "
                          f"{', '.join(sorted(TRAINED_BUILDERS))})")
    module, fn = TRAINED_BUILDERS[name]
    return getattr(importlib.import_module(module), fn)


def load_run(path: str | Path, num_classes: int | None = None):
    """Rebuild the trained model of checkpoint or run folder `path` (in eval mode).

    The base model comes from the registry by name, the optional wrapper from `TRAINED_BUILDERS`,
    the weights from the safetensors file; the model carries `trained_config` (the saved config)
    and `checkpoint_path`.

    Args:
        path: a run folder, or a checkpoint's `.safetensors` / `.json` file or stem.
        num_classes: replace the trained head by a fresh one with this many outputs.
    """
    from artmem.models.registry import build_model, is_registered

    weights = resolve_checkpoint(path)
    meta_path = checkpoint_files(weights)[1]
    meta = read_description(weights)
    cfg = meta["config"]
    if not is_registered(cfg["base_model"]):
        raise ArtmemError(f"{meta_path}: base_model {cfg['base_model']!r} is not a registered model")
    n = cfg.get("num_classes")
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ArtmemError(f"{meta_path}: num_classes must be a positive integer, not {n!r}")
    model = build_model(cfg["base_model"], pretrained=False, num_classes=n)
    if cfg.get("wrapper"):
        build = _trained_builder(cfg["wrapper"], meta_path)
        try:
            model = build(model, cfg)
        except (KeyError, TypeError, ValueError, ArtmemError) as exc:
            raise ArtmemError(f"{meta_path}: config does not describe a {cfg['wrapper']} model "
                              f"({type(exc).__name__}: {exc})") from exc
    try:
        model.load_state_dict(load_weights(weights))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ArtmemError(f"{weights}: the weights do not fit the model its description builds ({first})") from exc
    names = meta.get("class_names")
    if names and getattr(model, "pretrained_cfg", None) is not None:
        model.pretrained_cfg = model.pretrained_cfg.replace(class_names=tuple(names))
    model.trained_config = cfg
    model.checkpoint_path = str(weights)
    if num_classes is not None:
        if not hasattr(model, "reset_classifier"):
            raise ArtmemError(f"{path}: the trained model has no classifier head to replace")
        model.reset_classifier(num_classes)
    return model.eval()
