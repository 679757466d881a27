"""`artmem models convert RUN --trust`: rewrite pickle checkpoints of older artmem as model files.

This is the only place artmem reads a pickle, and only when the user passes `--trust`: unpickling
runs whatever code the file names, so it is for files whose source the user vouches for. Each
`NAME.pt` of an artmem run (a dict with `model` and `config`) becomes `NAME.safetensors` +
`NAME.json` (+ `NAME.training.pt` when it held optimizer state); the `.pt` files are left in place.
"""

from __future__ import annotations

import logging
from pathlib import Path

from artmem.errors import ArtmemError
from artmem.models.checkpoint import LEGACY_SUFFIXES, TRAINED_BUILDERS, write_checkpoint

logger = logging.getLogger(__name__)

# `wrapper` values of old checkpoints (an import path) -> the trained-builder names that replace them.
LEGACY_WRAPPERS = {f"{module}:{fn}": name for name, (module, fn) in TRAINED_BUILDERS.items()}
# Keys of an old checkpoint dict that are not part of the description.
_STATE_KEYS = ("model", "optimizer", "scheduler", "config", "class_names", "epoch")


def legacy_checkpoints(path: Path) -> list[Path]:
    """The old checkpoint files of a run folder (every sub-folder too), or `path` itself."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.suffix in LEGACY_SUFFIXES and p.is_file())


def _plain(value):
    """numpy scalars and tuples of old configs as JSON data."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value


def convert_checkpoint(path: Path, trust: bool) -> Path:
    """Convert one old checkpoint file; returns the new weights file."""
    import torch

    if not trust:
        raise ArtmemError(f"{path}: converting unpickles the file, which can run code; "
                          "pass --trust only for files from a source you trust")
    try:
        # weights_only is off only because the user passed --trust (see the module docstring).
        state = torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as exc:
        raise ArtmemError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict) \
            or not isinstance(state.get("config"), dict):
        raise ArtmemError(f"{path}: not an artmem checkpoint (needs 'model' and 'config')")
    config = _plain(state["config"])
    wrapper = config.get("wrapper")
    if wrapper and wrapper not in TRAINED_BUILDERS:
        if wrapper not in LEGACY_WRAPPERS:
            raise ArtmemError(f"{path}: wrapper {wrapper!r} is not one of artmem's "
                              f"({', '.join(LEGACY_WRAPPERS)}); it cannot be converted")
        config["wrapper"] = LEGACY_WRAPPERS[wrapper]
    extra = _plain({k: v for k, v in state.items() if k not in _STATE_KEYS})
    try:
        return write_checkpoint(path.with_suffix(""), state["model"], config, state.get("class_names"),
                                _plain(state.get("epoch")), state.get("optimizer"), state.get("scheduler"),
                                **extra)
    except ValueError as exc:
        raise ArtmemError(f"{path}: {exc}") from exc


def convert_run(path: str | Path, trust: bool = False) -> list[Path]:
    """Convert every old checkpoint of run folder (or checkpoint file) `path`.

    Returns:
        the new weights files (each with its `.json` beside it).
    """
    path = Path(path)
    if not path.exists():
        raise ArtmemError(f"{path}: no such run folder or checkpoint")
    files = legacy_checkpoints(path)
    if not files:
        raise ArtmemError(f"{path}: no old checkpoints ({', '.join('*' + s for s in LEGACY_SUFFIXES)}) to convert")
    written = []
    for f in files:
        written.append(convert_checkpoint(f, trust))
        logger.info("converted %s -> %s", f, written[-1])
    return written
