"""Left-right mirror symmetry from CNN filter responses (Brachmann & Redies 2016).

The image is resized to 512 x 512 and fed, together with its left-right mirror image, through the
AlexNet-like convolutional branch of ResMem (conv1: 48 trained filters 11 x 11, stride 4, ReLU;
Brachmann & Redies used CaffeNet's 96 conv1 filters, ResMem's branch has half of them - the
grouped half of AlexNet). Each filter's response map is max-pooled into patches, giving M for the
image and M_flip for its mirror image, and

    S = 1 - sum |M - M_flip| / sum max(M, M_flip)

summed over filters and patches. Because the mirror image's maps are *not* flipped back, position
(i, j) of M_flip shows what the original has at the mirrored position, seen by the same filter,
so S compares left with right. S = 1 for a mirror-symmetric image and falls towards 0 as the two
halves differ; a blank image (all responses zero) counts as symmetric (S = 1).

Two variants are computed by default:
- `symmetry_conv1`: conv1 maps max-pooled into a 17 x 17 grid of patches (Brachmann & Redies).
- `symmetry_conv5`: conv5 maps (30 x 30 at 512 px) pooled in 6 x 6 patches, the variant Cetinic
  et al. (2019) correlate with memorability.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)

CONV_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
INPUT_SIZE = 512


@dataclass(frozen=True)
class SymmetryVariant:
    """One symmetry measure: the layer, and either a grid (patches per side) or a patch size."""

    name: str
    layer: str
    grid: int | None = None
    patch: int | None = None

    def __post_init__(self) -> None:
        if self.layer not in CONV_LAYERS:
            raise ValueError(f"layer must be one of {CONV_LAYERS}, got {self.layer!r}")
        if (self.grid is None) == (self.patch is None):
            raise ValueError("give exactly one of grid (patches per side) or patch (patch size)")


DEFAULT_VARIANTS = (
    SymmetryVariant("symmetry_conv1", "conv1", grid=17),
    SymmetryVariant("symmetry_conv5", "conv5", patch=6),
)


def symmetry_index(maps, maps_flip) -> float:
    """S = 1 - sum|M - M_flip| / sum max(M, M_flip) for two non-negative arrays of one shape."""
    m = np.asarray(maps, dtype=np.float64)
    f = np.asarray(maps_flip, dtype=np.float64)
    if m.shape != f.shape:
        raise ValueError(f"maps have different shapes {m.shape} and {f.shape}")
    den = np.maximum(m, f).sum()
    if den <= 0:
        return 1.0
    return float(1.0 - np.abs(m - f).sum() / den)


def _conv_branch():
    import torch
    from torch import nn
    from torch.nn import functional as F

    class AlexNetBranch(nn.Module):
        """conv1..conv5 of an AlexNet/CaffeNet-like network (ResMem's layout: ReLU, max-pool 3/2 and
        LRN after conv1 and conv2), returning post-ReLU maps of the requested layers."""

        def __init__(self, state: dict[str, torch.Tensor]):
            super().__init__()
            convs = {}
            for i, name in enumerate(CONV_LAYERS):
                w = state[f"{name}.weight"]
                in_ch = 3 if i == 0 else state[f"{CONV_LAYERS[i - 1]}.weight"].shape[0]
                groups = in_ch // w.shape[1]
                k = w.shape[-1]
                stride, pad = (4, 0) if i == 0 else (1, k // 2)
                conv = nn.Conv2d(in_ch, w.shape[0], k, stride=stride, padding=pad, groups=groups)
                conv.weight.data.copy_(w)
                conv.bias.data.copy_(state[f"{name}.bias"])
                convs[name] = conv
            self.convs = nn.ModuleDict(convs)
            self.pool = nn.MaxPool2d(3, 2)
            self.lrn = nn.LocalResponseNorm(5)

        @torch.inference_mode()
        def forward(self, x: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
            out = {}
            last = max(CONV_LAYERS.index(n) for n in layers)
            for i, name in enumerate(CONV_LAYERS[: last + 1]):
                x = F.relu(self.convs[name](x))
                if name in layers:
                    out[name] = x
                if i < 2:
                    x = self.lrn(self.pool(x))
            return out

    return AlexNetBranch


def _branch_from_module(model) -> dict | None:
    """Find conv1..conv5 (conv1 11x11 stride 4) anywhere inside a built model; their state dict."""
    from torch import nn

    modules = dict(model.named_modules())
    for name, mod in modules.items():
        if not (name == "conv1" or name.endswith(".conv1")) or not isinstance(mod, nn.Conv2d):
            continue
        if tuple(mod.kernel_size) != (11, 11) or tuple(mod.stride) != (4, 4):
            continue
        prefix = name[: -len("conv1")]
        convs = [modules.get(prefix + n) for n in CONV_LAYERS]
        if all(isinstance(c, nn.Conv2d) for c in convs):
            state = {}
            for n, c in zip(CONV_LAYERS, convs, strict=True):
                state[f"{n}.weight"] = c.weight.detach().float().cpu().clone()
                state[f"{n}.bias"] = c.bias.detach().float().cpu().clone()
            return state
    return None


def _state_from_file(path: Path) -> dict:
    import torch

    try:
        raw = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as exc:
        raise ArtmemError(f"{path}: cannot read weights ({exc})") from exc
    raw = raw.get("model", raw) if isinstance(raw, dict) else raw
    state = {}
    for n in CONV_LAYERS:
        for part in ("weight", "bias"):
            hits = [k for k in raw if k == f"{n}.{part}" or k.endswith(f".{n}.{part}")]
            if not hits:
                raise ArtmemError(f"{path}: no {n}.{part} tensor (not an AlexNet-like checkpoint)")
            state[f"{n}.{part}"] = raw[sorted(hits, key=len)[0]].float().clone()
    if tuple(state["conv1.weight"].shape[-2:]) != (11, 11):
        raise ArtmemError(f"{path}: conv1 is not 11x11, not an AlexNet-like network")
    return state


DEFAULT_MODEL = "resmem_alexnet"


@lru_cache(maxsize=4)
def alexnet_branch(model: str = DEFAULT_MODEL) -> tuple[dict, tuple, tuple]:
    """Trained conv1..conv5 weights of an AlexNet-like network, with its input mean and std.

    Args:
        model: a registry name (default "resmem_alexnet": the AlexNet-like branch of ResMem, read
            from the resmem package), any registered or trained model that contains an AlexNet-like
            conv1 (11x11, stride 4) ... conv5, or a state-dict .pt file with conv1..conv5 tensors.

    Returns:
        (state dict of CPU float32 tensors, mean, std).

    Raises:
        ArtmemError: the weights are not available (never falls back to random filters).
    """
    p = Path(model)
    if p.suffix in (".pt", ".pth") and p.is_file():
        return _state_from_file(p), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    from artmem.models.factory import create_model

    try:
        net = create_model(model, pretrained=True)
    except ArtmemError:
        raise
    except Exception as exc:  # missing package, missing weights file, ...
        raise ArtmemError(
            f"symmetry needs the trained filters of {model!r}, which could not be loaded "
            f"({type(exc).__name__}: {exc}); install the `resmem` package or pass --no-symmetry"
        ) from exc
    state = _branch_from_module(net)
    if state is None:
        raise ArtmemError(
            f"model {model!r} has no AlexNet-like branch (conv1 11x11/4 ... conv5); "
            f"symmetry needs one, e.g. --symmetry-model {DEFAULT_MODEL}"
        )
    cfg = getattr(net, "pretrained_cfg", None)
    mean = tuple(cfg.mean) if cfg is not None else (0.0, 0.0, 0.0)
    std = tuple(cfg.std) if cfg is not None else (1.0, 1.0, 1.0)
    return state, mean, std


class SymmetryScorer:
    """Computes the symmetry variants of images, one forward pass for images and mirror images.

    Args:
        state: conv1..conv5 tensors (from `alexnet_branch`).
        variants: which measures to compute.
        mean, std: input normalisation of the network ((0,0,0)/(1,1,1) for ResMem).
        size: side the image is resized to (512 in Brachmann & Redies).
        device: torch device for the convolutions (float32 everywhere).
    """

    def __init__(
        self,
        state: dict,
        variants: tuple[SymmetryVariant, ...] = DEFAULT_VARIANTS,
        mean: tuple[float, float, float] = (0.0, 0.0, 0.0),
        std: tuple[float, float, float] = (1.0, 1.0, 1.0),
        size: int = INPUT_SIZE,
        device=None,
    ):
        import torch

        self.device = torch.device(device or "cpu")
        self.branch = _conv_branch()(state).eval().to(self.device)
        self.variants = tuple(variants)
        self.layers = tuple(sorted({v.layer for v in self.variants}, key=CONV_LAYERS.index))
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.size = size

    @classmethod
    def from_model(cls, model: str = DEFAULT_MODEL, **kwargs) -> SymmetryScorer:
        """A scorer with the trained filters (and input normalisation) of `model`."""
        state, mean, std = alexnet_branch(model)
        return cls(state, mean=mean, std=std, **kwargs)

    @staticmethod
    def to_tensor(img: Image.Image, size: int = INPUT_SIZE):
        """The image resized to size x size (bilinear) as a (3, size, size) uint8 tensor (4x smaller
        than float to send between processes; `maps` scales it to [0, 1])."""
        import torch

        img = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous()

    def maps(self, x) -> dict:
        """{layer: (maps of the images, maps of their mirror images)}, each (B, C, H, W)."""
        import torch

        x = x.to(self.device)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        both = torch.cat([x, torch.flip(x, dims=[3])])
        out = self.branch((both - self.mean) / self.std, self.layers)
        b = len(x)
        return {k: (v[:b], v[b:]) for k, v in out.items()}

    def batch(self, x) -> list[dict[str, float]]:
        """Symmetry measures of a batch (B, 3, size, size): uint8 0-255 (`to_tensor`) or float 0-1."""
        import torch
        from torch.nn import functional as F

        results: list[dict[str, float]] = [{} for _ in range(len(x))]
        for layer, (m, f) in self.maps(x).items():
            for v in self.variants:
                if v.layer != layer:
                    continue
                if v.grid is not None:
                    pm, pf = F.adaptive_max_pool2d(m, v.grid), F.adaptive_max_pool2d(f, v.grid)
                else:
                    pm = F.max_pool2d(m, v.patch, v.patch, ceil_mode=True)
                    pf = F.max_pool2d(f, v.patch, v.patch, ceil_mode=True)
                pm, pf = pm.double().flatten(1), pf.double().flatten(1)
                num = (pm - pf).abs().sum(1)
                den = torch.maximum(pm, pf).sum(1)
                s = torch.where(den > 0, 1.0 - num / den.clamp_min(1e-300), torch.ones_like(den))
                for i, val in enumerate(s.cpu().tolist()):
                    results[i][v.name] = float(val)
        return results

    def __call__(self, img: Image.Image) -> dict[str, float]:
        return self.batch(self.to_tensor(img, self.size).unsqueeze(0))[0]
