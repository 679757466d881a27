"""ResMem made fully convolutional for memorability maps (Long et al.), and its ONNX export.

ResMem's AlexNet-like branch ends in a 6x6x256 pool5 read by fc6 (-> a 6x6 convolution), its
ResNet152 branch ends in a global average pool + fc (-> an 8x8 stride-1 average pool + 1x1
convolution) and fc7..fc12 become 1x1 convolutions. Both branches have a total stride of 32, so
windows of 227 px lie every 32 px; at one window it equals the model's own forward exactly.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def is_resmem_like(model: nn.Module) -> bool:
    """A ResMem network (the package's module or artmem's `resmem` entry) with its score head."""
    need = ("features", "conv1", "lrn1", "conv5", "pool5", "fc6", "fc7", "fc11", "fc12")
    return all(hasattr(model, a) for a in need) and getattr(model, "num_classes", 1) == 1 \
        and getattr(model.fc6, "in_features", 0) == 9216 + 1000


class ResMemFCN(nn.Module):
    """ResMem made fully convolutional; forward(x: (B,3,H,W)) -> window scores (B, gh, gw).

    Shares (does not copy) the weights of the wrapped network.
    """

    window = 227
    stride = 32

    def __init__(self, net: nn.Module):
        super().__init__()
        if not is_resmem_like(net):
            raise ValueError("ResMemFCN needs a ResMem network with its score head")
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.net
        c = m.lrn1(m.pool1(F.relu(m.conv1(x))))
        c = m.lrn2(m.pool2(F.relu(m.conv2(c))))
        c = F.relu(m.conv3(c))
        c = F.relu(m.conv4(c))
        c = m.pool5(F.relu(m.conv5(c)))  # (B, 256, 6 + a, 6 + b)
        w6 = m.fc6.weight
        h = F.conv2d(c, w6[:, :9216].reshape(w6.shape[0], 256, 6, 6), m.fc6.bias)
        r = m.features
        t = r.maxpool(r.relu(r.bn1(r.conv1(x))))
        t = r.layer4(r.layer3(r.layer2(r.layer1(t))))  # (B, 2048, 8 + a, 8 + b)
        t = F.avg_pool2d(t, kernel_size=8, stride=1)
        t = F.conv2d(t, r.fc.weight[:, :, None, None], r.fc.bias)  # resnet "fc" -> (B, 1000, ...)
        gh, gw = min(h.shape[2], t.shape[2]), min(h.shape[3], t.shape[3])
        h, t = h[:, :, :gh, :gw], t[:, :, :gh, :gw]
        h = F.relu(h + F.conv2d(t, w6[:, 9216:, None, None]))
        for name in ("fc7", "fc8", "fc9", "fc10", "fc11"):
            lin = getattr(m, name)
            h = F.relu(F.conv2d(h, lin.weight[:, :, None, None], lin.bias))
        y = F.conv2d(h, m.fc12.weight[:, :, None, None], m.fc12.bias)
        return torch.sigmoid(y[:, 0])


def fcn_for(model: nn.Module) -> nn.Module | None:
    """The fully convolutional version of `model` when its architecture allows it, else None."""
    if is_resmem_like(model):
        return ResMemFCN(model)
    return None


def fcn_onnx_file(model: nn.Module, model_name: str) -> Path:
    """The cached fp32 ONNX export of the fully convolutional ResMem (batch, height, width free)."""
    from artmem.models.onnx_export import export_module, onnx_cache_dir, onnx_path_for, weights_id

    base = onnx_path_for(model_name, ["fcn"], weights_id(model_name, model.pretrained_cfg.source))
    path = onnx_cache_dir() / f"map-{base.name}"
    if not path.exists():
        w = ResMemFCN.window
        export_module(ResMemFCN(model).eval(), path, torch.zeros(1, 3, w + ResMemFCN.stride, w), ["grid"],
                      dynamic_spatial=True)
    return path
