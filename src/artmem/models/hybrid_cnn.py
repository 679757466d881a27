"""`hybrid_cnn`: the small VGG-style + Inception-style CNN of Yu, Jin & Hsu, trained from scratch.

Architecture (their Table 2, ~47k convolutional parameters, matching the paper's "50k"):

    VGG-style:  conv3x3 8 -> conv3x3 16 -> conv3x3 32 -> conv3x3 64 (ReLU) -> maxpool 2x2
    Inception:  1x1 32 | 1x1 16 -> 3x3 64 -> 1x1 32 | 1x1 8 -> 5x5 32 -> 1x1 32   (concat: 96)
    Dense:      256 (ReLU) -> 64 (ReLU) -> N classes (softmax in the loss)

The paper does not say how the 96-channel map reaches the dense layers; here it is average-pooled
to 4x4 (1536 values) so the network accepts any input size. A BatchNorm-free design as in the
paper; dropout (p=`dropout`) before each dense layer. Layer groups: conv1..conv4, inception, fc1,
fc2, head, so the Cetinic scenarios map as on AlexNet (only_last3 = fc1, fc2, head).
There are no pretrained weights: `pretrained=True` gives deterministic seeded initial weights.
"""

from __future__ import annotations

import torch
from torch import nn

from artmem.models.base import ZooModel, pool_flat
from artmem.models.registry import PretrainedCfg, register_model

HYBRID_CFG = PretrainedCfg(
    name="hybrid_cnn",
    task="classification",
    output="logits",
    input_size=(3, 224, 224),
    resize=256,
    crop=224,
    feature_layers=("conv4", "inception", "fc1", "fc2"),
    default_layer="fc2",
    num_classes=18,
    licence="MIT (architecture only; trained from scratch, seeded initial weights)",
    source="artmem (built in), after Yu, Jin & Hsu, 'Artistic Movement Recognition using Deep CNNs'",
    description="small VGG+Inception hybrid CNN for training from scratch (Pandora18k: 18 classes)",
    extra={"from_scratch": True},
)


def _conv(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2), nn.ReLU(inplace=True))


class InceptionBlock(nn.Module):
    """Three parallel branches (1x1; 1x1-3x3-1x1; 1x1-5x5-1x1) concatenated on channels."""

    def __init__(self, cin: int = 64):
        super().__init__()
        self.b1 = _conv(cin, 32, 1)
        self.b3 = nn.Sequential(_conv(cin, 16, 1), _conv(16, 64, 3), _conv(64, 32, 1))
        self.b5 = nn.Sequential(_conv(cin, 8, 1), _conv(8, 32, 5), _conv(32, 32, 1))
        self.out_channels = 96

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x)], dim=1)


class HybridCNN(ZooModel):
    def __init__(self, num_classes: int = 18, dropout: float = 0.5, pool: int = 4):
        super().__init__()
        self.conv1 = _conv(3, 8, 3)
        self.conv2 = _conv(8, 16, 3)
        self.conv3 = _conv(16, 32, 3)
        self.conv4 = nn.Sequential(_conv(32, 64, 3), nn.MaxPool2d(2))
        self.inception = InceptionBlock(64)
        self.pool = nn.AdaptiveAvgPool2d(pool)
        flat = 96 * pool * pool
        self.fc1 = nn.Sequential(nn.Dropout(dropout), nn.Linear(flat, 256), nn.ReLU(inplace=True))
        self.fc2 = nn.Sequential(nn.Dropout(dropout), nn.Linear(256, 64), nn.ReLU(inplace=True))
        self.dropout = dropout
        self.head = nn.Linear(64, num_classes)

    def _run(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        x = self.conv4(self.conv3(self.conv2(self.conv1(x))))
        out["conv4"] = x
        x = self.inception(x)
        out["inception"] = x
        x = self.fc1(self.pool(x).flatten(1))
        out["fc1"] = x
        out["fc2"] = self.fc2(x)
        return out

    def extract(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        unknown = set(layers) - set(self.pretrained_cfg.feature_layers)
        if unknown:
            raise KeyError(f"hybrid_cnn has no layer(s) {sorted(unknown)}")
        acts = self._run(x)
        return {name: pool_flat(acts[name]) for name in layers}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)["fc2"]

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def layer_groups(self):
        return [("conv1", self.conv1), ("conv2", self.conv2), ("conv3", self.conv3),
                ("conv4", self.conv4), ("inception", self.inception), ("fc1", self.fc1),
                ("fc2", self.fc2), ("head", self.head)]

    def reset_classifier(self, num_classes: int) -> None:
        self.head = nn.Linear(64, num_classes)
        self.pretrained_cfg = self.pretrained_cfg.replace(num_classes=num_classes, class_names=None)


@register_model(HYBRID_CFG)
def hybrid_cnn(pretrained: bool = True, dropout: float = 0.5, seed: int = 0) -> HybridCNN:
    """Build the hybrid CNN with seeded He-initialised weights (there are no pretrained weights)."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = HybridCNN(num_classes=HYBRID_CFG.num_classes, dropout=dropout)
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
    finally:
        torch.random.set_rng_state(state)
    return model
