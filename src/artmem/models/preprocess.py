"""A model's evaluation preprocessing, as data: built once, saved with trained runs, used everywhere.

Two recipes exist, and a model uses exactly one:

- `pretrained`: what a zoo entry's weights expect, from its `PretrainedCfg` (resize as
  `resize_mode` says, centre crop, mean/std: `artmem.models.transforms.resize_image`);
- `cache`: what a trained classifier saw in training. The image is decoded as the training cache
  decodes it (JPEGs at the smallest DCT scale that keeps both sides >= the cache size), resized
  with `artmem.data.cache.resize_array` (squashed to a square by default, as in Cetinic 2018),
  centre-cropped to the network input and normalised.

`Preprocess.to_dict()` is written into a trained run's saved config (`"preprocess"`), and
`preprocess_for(model)` is the one function every consumer (predict, score, extract, the web
explorer, maps, memorability training) calls to turn images into the network's input, so a run is
evaluated exactly as it was trained wherever it is used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from artmem.errors import ArtmemError

RECIPES = ("pretrained", "cache")


@dataclass(frozen=True)
class Preprocess:
    """Image -> normalised float tensor (3, crop, crop).

    Attributes:
        recipe: "pretrained" or "cache" (see the module docstring).
        resize: side the image is resized to before the centre crop (the cache size for "cache").
        resize_mode: "pretrained": "square" | "shorter" | "center_square" (`PretrainedCfg`);
            "cache": "squash" | "crop" (`artmem.data.cache.RESIZE_MODES`).
        crop: side of the centre crop fed to the network.
        mean, std: per-channel normalisation of [0, 1] pixels.
        interpolation: "pretrained" only ("bilinear", "bicubic", "lanczos", "nearest"); the cache
            always resizes bilinearly.
        draft: decode JPEGs at a reduced DCT scale of at least `resize` px (as the cache builder).
    """

    recipe: str
    resize: int
    resize_mode: str
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"
    draft: bool = False

    def __post_init__(self) -> None:
        from artmem.data.cache import RESIZE_MODES

        modes = RESIZE_MODES if self.recipe == "cache" else ("square", "shorter", "center_square")
        if self.recipe not in RECIPES:
            raise ArtmemError(f"unknown preprocessing recipe {self.recipe!r} (known: {', '.join(RECIPES)})")
        if self.resize_mode not in modes:
            raise ArtmemError(f"preprocessing {self.recipe}: resize_mode must be one of {', '.join(modes)}, "
                              f"not {self.resize_mode!r}")
        if not 1 <= int(self.crop) <= int(self.resize) and self.recipe == "cache":
            raise ArtmemError(f"preprocessing: crop {self.crop} does not fit in {self.resize} px")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained_cfg(cls, cfg) -> Preprocess:
        """The recipe a zoo entry's weights expect."""
        return cls("pretrained", int(cfg.resize), cfg.resize_mode, int(cfg.crop), tuple(cfg.mean),
                   tuple(cfg.std), cfg.interpolation)

    @classmethod
    def for_cache(cls, cache_size: int, crop: int, mean, std, mode: str = "squash") -> Preprocess:
        """What a network trained on `artmem.data.cache` crops of `cache_size` px sees at evaluation."""
        return cls("cache", int(cache_size), mode, min(int(crop), int(cache_size)), tuple(mean), tuple(std),
                   "bilinear", draft=True)

    def to_dict(self) -> dict:
        """JSON/YAML-able description (what a trained run's config stores)."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, data: dict, source: str | Path = "config") -> Preprocess:
        known = set(cls.__dataclass_fields__)
        if not isinstance(data, dict) or not {"recipe", "resize", "resize_mode", "crop", "mean", "std"} <= set(data):
            raise ArtmemError(f"{source}: 'preprocess' needs recipe, resize, resize_mode, crop, mean and std")
        unknown = set(data) - known
        if unknown:
            raise ArtmemError(f"{source}: unknown preprocess setting(s) {', '.join(sorted(unknown))}")
        return cls(**data)

    # ------------------------------------------------------------------ use
    @property
    def draft_size(self) -> int | None:
        return self.resize if self.draft else None

    def load(self, path: str | Path):
        """Read and preprocess one image file (raises ImageReadError for an unreadable one)."""
        from artmem.data.images import load_image

        return self(load_image(path, draft_size=self.draft_size))

    def decode(self, data: bytes, name: str = "<bytes>"):
        """Preprocess encoded image bytes (an upload) exactly as a file of the same bytes."""
        from artmem.data.images import decode_image

        return self(decode_image(data, name, draft_size=self.draft_size))

    def __call__(self, img):
        """RGB PIL image -> float tensor (3, crop, crop)."""
        import torch

        if self.recipe == "pretrained":
            from artmem.models.transforms import resize_image

            arr = np.asarray(resize_image(img, self), dtype=np.uint8)
        else:
            from artmem.data.cache import resize_array

            arr = resize_array(img, self.resize, self.resize_mode)
            top = (self.resize - self.crop) // 2  # as CachedImageDataset's evaluation crop
            arr = arr[top:top + self.crop, top:top + self.crop]
        x = np.asarray(arr, dtype=np.float32) / 255.0
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def preprocess_for(model) -> Preprocess:
    """The evaluation preprocessing of a model: a trained run's saved `preprocess`, else its zoo cfg.

    Classifier runs saved before runs recorded their preprocessing get the recipe their training
    used (`cache` at the run's `cache_size`), read from the run config they saved.
    """
    trained = getattr(model, "trained_config", None) or {}
    if trained.get("preprocess") is not None:
        return Preprocess.from_dict(trained["preprocess"], getattr(model, "checkpoint_path", "checkpoint"))
    cfg = model.pretrained_cfg
    run_cfg = trained.get("run_config")
    if run_cfg and trained.get("label"):  # a classification run from before "preprocess" was saved
        from artmem.classify.data import default_cache_size

        crop = int(cfg.input_size[-1])
        return Preprocess.for_cache(run_cfg.get("cache_size") or default_cache_size(crop), crop, cfg.mean, cfg.std)
    return Preprocess.from_pretrained_cfg(cfg)
