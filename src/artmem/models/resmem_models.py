"""ResMem (Needell & Bainbridge 2021) from the `resmem` package, and the two networks inside it.

- `resmem`: the memorability network exactly as the package computes it (scores equal its own
  forward), with named layers: the AlexNet/MemNet-like branch conv1..conv5 (global-average-pooled
  ReLU maps) and pool5 (9216-d), the ResNet152 branch (`resnet_pool` 2048-d, `resnet_out` 1000-d),
  the hidden fully connected layers fc6..fc11 (after ReLU) and the `score`. The default embedding
  is `fc7` (4096-d), the MemNet-style layer the papers use for t-SNE and retrieval.
- `resnet152_resmem`: the ResNet152 trunk inside ResMem as a general transfer backbone.
- `resmem_alexnet`: the AlexNet-like branch alone (conv1..conv5, fc6, fc7) as a classification
  backbone: the "MemNet-style initialisation" for fine-tuning. Inside ResMem, fc6 reads the
  AlexNet pool5 (9216 columns) *and* the ResNet output (1000 columns), and the ResNet columns
  carry almost all of its variance; with the ResNet columns simply dropped, fc6/fc7 activations
  are ~25x smaller than inside ResMem and a head trained by SGD on them does not move. The fc6
  pre-activation is therefore moment-matched to ResMem's on real images (`calibrate_fc6`): each
  unit keeps ResMem's mean (the missing ResNet contribution's expected value folded into the
  bias) and the AlexNet columns are scaled by one gain so the units' spread over images matches
  ResMem's. The calibration ships in `resmem_alexnet_fc6.npz` (see docs/models.md).

ResMem feeds un-normalised [0, 1] pixels (Resize 256x256, CenterCrop 227, ToTensor) to both
branches, and its ResNet152 was retrained inside ResMem, so all three entries use that preprocessing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from artmem.models.base import ZooModel, pool_flat
from artmem.models.registry import PretrainedCfg, register_model

logger = logging.getLogger(__name__)

RESMEM_LICENCE = (
    "ResMem Non-commercial License (c) 2021 The University of Chicago: redistribution and use for "
    "noncommercial purposes only (noncommercial use does include use by a for-profit company in "
    "its research); commercial use rights: Brain Bridge Lab, wilma@uchicago.edu"
)
RESMEM_SOURCE = "PyPI resmem 1.1.6: resmem/model.pt (LaMem + MemCat)"

_RESMEM_PREPROC = dict(
    input_size=(3, 227, 227),
    resize=256,
    resize_mode="square",
    crop=227,
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    interpolation="bilinear",
)

ALEX_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "pool5")
RESNET_LAYERS = ("resnet_conv1", "resnet_layer1", "resnet_layer2", "resnet_layer3", "resnet_pool", "resnet_out")
FC_LAYERS = ("fc6", "fc7", "fc8", "fc9", "fc10", "fc11")

RESMEM_CFG = PretrainedCfg(
    name="resmem",
    task="memorability",
    output="score",
    **_RESMEM_PREPROC,
    feature_layers=ALEX_LAYERS + RESNET_LAYERS + FC_LAYERS + ("score",),
    default_layer="fc7",
    num_classes=1,
    licence=RESMEM_LICENCE,
    source=RESMEM_SOURCE,
    description="ResMem memorability score in [0, 1] (AlexNet-like branch + ResNet152); fc7 = MemNet-style embedding",
    extra={"paper": "Needell & Bainbridge, VSS 2021", "onnx_export": True},
)

RESNET_CFG = PretrainedCfg(
    name="resnet152_resmem",
    task="classification",
    output="logits",
    **_RESMEM_PREPROC,
    feature_layers=("conv1", "layer1", "layer2", "layer3", "layer4"),
    default_layer="layer4",
    num_classes=1000,
    class_names=None,
    licence=RESMEM_LICENCE,
    source=RESMEM_SOURCE + " (features.* = torchvision ResNet152, retrained inside ResMem)",
    description="ResNet152 trunk of ResMem as a transfer backbone (2048-d pooled features)",
    extra={"note": "the 1000 outputs of the stock head are ResMem's retrained ResNet outputs, not ImageNet classes"},
)

ALEXNET_CFG = PretrainedCfg(
    name="resmem_alexnet",
    task="classification",
    output="embedding",
    **_RESMEM_PREPROC,
    feature_layers=ALEX_LAYERS + ("fc6", "fc7"),
    default_layer="fc7",
    num_classes=0,
    licence=RESMEM_LICENCE,
    source=RESMEM_SOURCE + " (conv1-conv5, fc6 AlexNet columns moment-matched, fc7)",
    description="AlexNet-like MemNet branch of ResMem (conv1-conv5, fc6, fc7) for MemNet-style fine-tuning",
    extra={"note": "fc6 keeps the 9216 AlexNet input columns of ResMem's fc6, moment-matched to ResMem's "
                   "fc6 on real images (resmem_alexnet_fc6.npz) for the dropped ResNet columns"},
)


def _package_resmem(pretrained: bool) -> nn.Module:
    """The package's own `ResMem` module, with its weights when `pretrained` (never downloads)."""
    import warnings

    import resmem
    import torchvision

    with warnings.catch_warnings():  # the package passes torchvision's deprecated `pretrained=`
        warnings.simplefilter("ignore", UserWarning)
        if pretrained:
            return resmem.ResMem(pretrained=True)
        # ResMem(pretrained=False) would ask torchvision for ImageNet weights (a download): build
        # the same architecture with an uninitialised ResNet152 instead.
        with mock.patch.object(resmem, "resnet152", lambda *a, **k: torchvision.models.resnet152(weights=None)):
            return resmem.ResMem(pretrained=False)


def _package_state_dict() -> dict[str, torch.Tensor]:
    import resmem

    return torch.load(resmem.path, map_location="cpu", mmap=True, weights_only=True)


class _AlexBranch(nn.Module):
    """conv1..pool5 of ResMem (grouped convolutions and LRN as in MemNet/AlexNet)."""

    def __init__(self, src: nn.Module | None = None, width: int = 384):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 48, kernel_size=11, stride=4)
        self.pool1 = nn.MaxPool2d(3, 2)
        self.lrn1 = nn.LocalResponseNorm(5)
        self.conv2 = nn.Conv2d(48, 256, kernel_size=5, stride=1, padding=2, groups=2)
        self.pool2 = nn.MaxPool2d(3, 2)
        self.lrn2 = nn.LocalResponseNorm(5)
        self.conv3 = nn.Conv2d(256, width, kernel_size=3, padding=1, groups=2)
        self.conv4 = nn.Conv2d(width, width, kernel_size=3, padding=1, groups=2)
        self.conv5 = nn.Conv2d(width, 256, kernel_size=3, padding=1, groups=2)
        self.pool5 = nn.MaxPool2d(kernel_size=3, stride=2)


def alex_forward(m: nn.Module, x: torch.Tensor, want: set[str], out: dict) -> torch.Tensor | None:
    """Run ResMem's AlexNet-like branch on `m` (anything with conv1..pool5); fills `out`.

    Returns the flattened pool5 (B, 9216), or None if no deeper layer than requested was needed.
    """
    c = F.relu(m.conv1(x))
    if "conv1" in want:
        out["conv1"] = pool_flat(c)
    c = m.lrn1(m.pool1(c))
    c = F.relu(m.conv2(c))
    if "conv2" in want:
        out["conv2"] = pool_flat(c)
    c = m.lrn2(m.pool2(c))
    c = F.relu(m.conv3(c))
    if "conv3" in want:
        out["conv3"] = pool_flat(c)
    c = F.relu(m.conv4(c))
    if "conv4" in want:
        out["conv4"] = pool_flat(c)
    c = F.relu(m.conv5(c))
    if "conv5" in want:
        out["conv5"] = pool_flat(c)
    feat = m.pool5(c).flatten(1)
    if "pool5" in want:
        out["pool5"] = feat
    return feat


def resnet_forward(r: nn.Module, x: torch.Tensor, want: set[str], out: dict, prefix: str = "resnet_",
                   final: str = "resnet_out", pool_name: str = "resnet_pool") -> torch.Tensor:
    """torchvision ResNet forward (identical ops) that also records named stages."""
    h = r.maxpool(r.relu(r.bn1(r.conv1(x))))
    if prefix + "conv1" in want:
        out[prefix + "conv1"] = pool_flat(h)
    for name in ("layer1", "layer2", "layer3", "layer4"):
        h = getattr(r, name)(h)
        if prefix + name in want:
            out[prefix + name] = pool_flat(h)
    pooled = torch.flatten(r.avgpool(h), 1)
    if pool_name in want:
        out[pool_name] = pooled
    if final is None:
        return pooled
    logits = r.fc(pooled)
    if final in want:
        out[final] = logits
    return logits


def _check_layers(name: str, layers, known) -> set[str]:
    want = set(layers)
    unknown = want - set(known)
    if unknown:
        raise KeyError(f"{name} has no layer(s) {sorted(unknown)}; known: {', '.join(known)}")
    return want


class ResMemModel(ZooModel):
    """ResMem with named layers; parameter names equal the package's (`features.*`, `conv1.*`, `fc6.*`...)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.features = net.features  # torchvision ResNet152 (its fc outputs 1000 values)
        for name in ("conv1", "pool1", "lrn1", "conv2", "pool2", "lrn2", "conv3", "conv4", "conv5", "pool5",
                     "fc6", "fc7", "fc8", "fc9", "fc10", "fc11", "fc12"):
            setattr(self, name, getattr(net, name))
        for p in self.parameters():  # the package freezes the ResNet; freezing is the caller's choice here
            p.requires_grad_(True)
        self.num_classes = 1

    def extract(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        want = _check_layers("resmem", layers, self.pretrained_cfg.feature_layers)
        out: dict[str, torch.Tensor] = {}
        feat = alex_forward(self, x, want, out)
        if not want - set(ALEX_LAYERS):
            return out
        res = resnet_forward(self.features, x, want, out)
        if not want - set(ALEX_LAYERS) - set(RESNET_LAYERS):
            return out
        h = torch.cat((feat, res), 1)
        for name in FC_LAYERS:
            h = F.relu(getattr(self, name)(h))
            if name in want:
                out[name] = h
        if "score" in want:
            out["score"] = self._final(h)
        return out

    def _final(self, fc11: torch.Tensor) -> torch.Tensor:
        y = self.fc12(fc11)
        return torch.sigmoid(y[:, 0]) if self.num_classes == 1 else y

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """fc7 embedding -> score (B,) (fc8..fc12 then sigmoid), or logits after reset_classifier(n>1)."""
        h = features
        for name in ("fc8", "fc9", "fc10", "fc11"):
            h = F.relu(getattr(self, name)(h))
        return self._final(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def layer_groups(self) -> list[tuple[str, nn.Module]]:
        return [
            ("resnet", self.features),
            ("conv1", self.conv1), ("conv2", self.conv2), ("conv3", self.conv3),
            ("conv4", self.conv4), ("conv5", self.conv5),
            ("fc6", self.fc6), ("fc7", self.fc7), ("fc8", self.fc8), ("fc9", self.fc9),
            ("fc10", self.fc10), ("fc11", self.fc11),
            ("head", self.fc12),  # the classifier: the one layer reset_classifier replaces
        ]

    def conv_blocks(self) -> list[tuple[str, list[nn.Module]]]:
        """The two branches see the image side by side: block k is both branches' k-th block."""
        r = self.features
        return [("conv1 + resnet stem", [self.conv1, r.conv1, r.bn1]),
                ("conv2 + resnet layer1", [self.conv2, r.layer1])]

    def last_module(self) -> tuple[str, list[nn.Module]]:
        """Both branches' last conv modules (conv5, ResNet layer4) and every layer after them."""
        return "conv5 + resnet layer4", [self.conv5, self.features.layer4, self.features.fc, self.fc6,
                                         self.fc7, self.fc8, self.fc9, self.fc10, self.fc11, self.fc12]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace fc12 (256 -> n): n == 1 keeps a sigmoid score, n > 1 gives class logits."""
        self.num_classes = num_classes
        self.fc12 = nn.Linear(self.fc11.out_features, num_classes)
        self.pretrained_cfg = self.pretrained_cfg.replace(
            num_classes=num_classes, output="score" if num_classes == 1 else "logits", class_names=None,
            task="memorability" if num_classes == 1 else "classification",
        )


class ResNetTrunk(ZooModel):
    """A torchvision ResNet with named stages: conv1 (stem), layer1..layer4, head (fc)."""

    def __init__(self, resnet: nn.Module):
        super().__init__()
        self.resnet = resnet
        self.num_classes = resnet.fc.out_features

    def extract(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        want = _check_layers(self.pretrained_cfg.name, layers, self.pretrained_cfg.feature_layers)
        out: dict[str, torch.Tensor] = {}
        resnet_forward(self.resnet, x, want, out, prefix="", final=None, pool_name="layer4")
        return out

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.resnet.fc(features)

    def layer_groups(self) -> list[tuple[str, nn.Module]]:
        r = self.resnet
        return [
            ("conv1", nn.ModuleList([r.conv1, r.bn1])),
            ("layer1", r.layer1), ("layer2", r.layer2), ("layer3", r.layer3), ("layer4", r.layer4),
            ("head", r.fc),
        ]

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.resnet.fc = nn.Linear(self.resnet.fc.in_features, num_classes)
        self.pretrained_cfg = self.pretrained_cfg.replace(
            num_classes=num_classes, output="logits", class_names=None, extra={}
        )


class ResMemAlexNet(ZooModel):
    """ResMem's AlexNet-like branch + fc6 (AlexNet columns) + fc7 + a replaceable head."""

    def __init__(self, num_classes: int = 0):
        super().__init__()
        self.branch = _AlexBranch()
        self.fc6 = nn.Linear(9216, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.dropout = nn.Dropout(0.5)
        self.num_classes = num_classes
        self.head = nn.Linear(4096, num_classes) if num_classes > 0 else nn.Identity()

    def extract(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        want = _check_layers("resmem_alexnet", layers, ALEXNET_CFG.feature_layers)
        out: dict[str, torch.Tensor] = {}
        feat = alex_forward(self.branch, x, want, out)
        if want & {"fc6", "fc7"}:
            h6 = F.relu(self.fc6(feat))
            out["fc6"] = h6
            if "fc7" in want:
                out["fc7"] = F.relu(self.fc7(self.dropout(h6)))
        return {k: v for k, v in out.items() if k in want}

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(features))

    def layer_groups(self) -> list[tuple[str, nn.Module]]:
        b = self.branch
        return [("conv1", b.conv1), ("conv2", b.conv2), ("conv3", b.conv3), ("conv4", b.conv4),
                ("conv5", b.conv5), ("fc6", self.fc6), ("fc7", self.fc7), ("head", self.head)]

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(4096, num_classes) if num_classes > 0 else nn.Identity()
        self.pretrained_cfg = self.pretrained_cfg.replace(
            num_classes=num_classes, output="logits" if num_classes > 0 else "embedding", class_names=None
        )


@register_model(RESMEM_CFG)
def resmem(pretrained: bool = True) -> ResMemModel:
    """Built with the package's `ResMem(pretrained=True)` (weights from the installed package)."""
    model = ResMemModel(_package_resmem(pretrained))
    model.pretrained_cfg = RESMEM_CFG
    return model


@register_model(RESNET_CFG)
def resnet152_resmem(pretrained: bool = True) -> ResNetTrunk:
    import torchvision

    resnet = torchvision.models.resnet152(weights=None)
    if pretrained:
        sd = _package_state_dict()
        resnet.load_state_dict({k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")})
    model = ResNetTrunk(resnet)
    model.pretrained_cfg = RESNET_CFG
    return model


FC6_CALIBRATION = Path(__file__).with_name("resmem_alexnet_fc6.npz")


def calibrate_fc6(pool5: torch.Tensor, resnet_out: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Moment-match ResMem's fc6 pre-activation with its ResNet columns removed.

    With z_a = W_a pool5 (AlexNet columns) and z = z_a + W_r resnet_out + b (ResMem's fc6), the
    returned (bias', gain) give z' = gain * z_a + bias' with, over the given images, the same mean
    as z in every unit (bias' = b + E[W_r resnet_out] + (1 - gain) E[z_a]) and the same average
    within-unit variance (gain = sqrt(mean_u Var z_u / mean_u Var z_a,u)).
    """
    za = pool5.double() @ weight[:, :9216].double().T
    z = za + resnet_out.double() @ weight[:, 9216:].double().T + bias.double()
    gain = float(torch.sqrt(z.var(0).mean() / za.var(0).mean()))
    new_bias = z.mean(0) - gain * za.mean(0)
    return new_bias.float(), gain


def compute_fc6_calibration(images: torch.Tensor, batch_size: int = 8) -> dict[str, np.ndarray]:
    """Run ResMem on `images` (preprocessed for it) and return the fc6 calibration arrays
    (`bias`, `gain`, `n_images`) that `resmem_alexnet` loads from FC6_CALIBRATION."""
    net = resmem(pretrained=True).eval()
    pool5, res = [], []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            o = net.extract(images[i:i + batch_size], ["pool5", "resnet_out"])
            pool5.append(o["pool5"])
            res.append(o["resnet_out"])
    new_bias, gain = calibrate_fc6(torch.cat(pool5), torch.cat(res), net.fc6.weight.detach(),
                                   net.fc6.bias.detach())
    return {"bias": new_bias.numpy(), "gain": np.float32(gain), "n_images": np.int64(len(images))}


@register_model(ALEXNET_CFG)
def resmem_alexnet(pretrained: bool = True) -> ResMemAlexNet:
    model = ResMemAlexNet(num_classes=0)
    if pretrained:
        sd = _package_state_dict()
        branch = {k: v for k, v in sd.items() if k.split(".")[0] in ("conv1", "conv2", "conv3", "conv4", "conv5")}
        model.branch.load_state_dict(branch)
        cal = np.load(FC6_CALIBRATION, allow_pickle=False)
        with torch.no_grad():
            model.fc6.weight.copy_(float(cal["gain"]) * sd["fc6.weight"][:, :9216])
            model.fc6.bias.copy_(torch.as_tensor(cal["bias"]))
            model.fc7.weight.copy_(sd["fc7.weight"])
            model.fc7.bias.copy_(sd["fc7.bias"])
    model.pretrained_cfg = ALEXNET_CFG
    return model
