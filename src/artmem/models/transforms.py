"""Preprocessing built from a model's `PretrainedCfg` (timm's `resolve_data_config` idea)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from artmem.models.registry import PretrainedCfg

_INTERP = {
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "nearest": Image.NEAREST,
    "lanczos": Image.LANCZOS,
}


def resize_image(img: Image.Image, cfg: PretrainedCfg) -> Image.Image:
    """Resize (square, shorter side, or centre square then resize) then centre-crop, as the weights expect."""
    interp = _INTERP[cfg.interpolation]
    if cfg.resize_mode == "center_square":  # crop the largest centred square, then resize it
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side)).resize((cfg.resize, cfg.resize), interp)
    elif cfg.resize_mode == "square":
        img = img.resize((cfg.resize, cfg.resize), interp)
    else:
        w, h = img.size
        s = cfg.resize / min(w, h)
        img = img.resize((max(1, round(w * s)), max(1, round(h * s))), interp)
    w, h = img.size
    c = cfg.crop
    left, top = int(round((w - c) / 2.0)), int(round((h - c) / 2.0))
    return img.crop((left, top, left + c, top + c))


def to_tensor(img: Image.Image, cfg: PretrainedCfg) -> torch.Tensor:
    """RGB PIL image -> normalised float tensor (3, H, W)."""
    arr = np.asarray(img, dtype=np.float32) / 255.0
    mean = np.asarray(cfg.mean, dtype=np.float32)
    std = np.asarray(cfg.std, dtype=np.float32)
    arr = (arr - mean) / std
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def build_transform(cfg: PretrainedCfg):
    """The evaluation transform of a model: PIL RGB image -> normalised tensor."""

    def transform(img: Image.Image) -> torch.Tensor:
        return to_tensor(resize_image(img, cfg), cfg)

    return transform
