"""Resizing as a zoo entry's `PretrainedCfg` says (timm's `resolve_data_config` idea); the whole
evaluation preprocessing is `artmem.models.preprocess.Preprocess`."""

from __future__ import annotations

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


def build_transform(cfg: PretrainedCfg):
    """The evaluation transform of a zoo entry's weights: PIL RGB image -> normalised tensor.

    For a loaded model use `artmem.models.preprocess.preprocess_for(model)`: a trained run carries
    its own (the one it was trained with).
    """
    from artmem.models.preprocess import Preprocess

    return Preprocess.from_pretrained_cfg(cfg)
