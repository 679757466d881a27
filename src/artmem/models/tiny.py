"""`tiny_test`: a few-thousand-parameter CNN so tests and CI exercise real code paths quickly."""

from __future__ import annotations

import torch
from torch import nn

from artmem.models.base import ZooModel, pool_flat
from artmem.models.registry import PretrainedCfg, register_model

TINY_CFG = PretrainedCfg(
    name="tiny_test",
    task="test",
    output="score",
    input_size=(3, 32, 32),
    resize=32,
    crop=32,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    feature_layers=("conv1", "conv2", "conv3", "fc"),
    default_layer="fc",
    num_classes=1,
    licence="MIT (random weights, seeded)",
    source="artmem (built in)",
    description="tiny seeded CNN for tests; outputs a sigmoid 'score' or class logits",
)


class TinyNet(ZooModel):
    """conv(3->8) -> conv(8->16) -> conv(16->16) -> fc(16->16) -> head."""

    def __init__(self, num_classes: int = 1):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.conv2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.conv3 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.fc = nn.Sequential(nn.Linear(16, 16), nn.ReLU())
        self.num_classes = num_classes
        self.head = nn.Linear(16, num_classes)

    def extract(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        c1 = self.conv1(x)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        fc = self.fc(pool_flat(c3))
        for name, t in (("conv1", c1), ("conv2", c2), ("conv3", c3), ("fc", fc)):
            if name in layers:
                out[name] = pool_flat(t)
        unknown = set(layers) - set(out)
        if unknown:
            raise KeyError(f"tiny_test has no layer(s) {sorted(unknown)}")
        return out

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        logits = self.head(features)
        # One output is a memorability-like score in [0, 1]; several are class logits.
        return torch.sigmoid(logits[:, 0]) if self.num_classes == 1 else logits

    def layer_groups(self):
        return [("conv1", self.conv1), ("conv2", self.conv2), ("conv3", self.conv3),
                ("fc", self.fc), ("head", self.head)]

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(16, num_classes)
        self.pretrained_cfg = self.pretrained_cfg.replace(
            num_classes=num_classes, output="score" if num_classes == 1 else "logits", class_names=None
        )


@register_model(TINY_CFG)
def tiny_test(pretrained: bool = True, seed: int = 0) -> TinyNet:
    """'Pretrained' here means deterministic seeded weights, so runs are reproducible."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = TinyNet(TINY_CFG.num_classes)
    finally:
        torch.random.set_rng_state(gen_state)
    return model
