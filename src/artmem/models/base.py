"""The one model interface every zoo entry implements (timm's forward_features/forward_head)."""

from __future__ import annotations

import torch
from torch import nn


class ZooModel(nn.Module):
    """Base class: subclasses define `feature_layers`, `_features`, `head` and `layer_groups`.

    - `forward_features(x)`: the default-layer embedding (B, D), used for retrieval and t-SNE.
    - `forward_head(f)`: memorability score (B,) or class logits (B, C) from that embedding.
    - `extract(x, layers)`: dict of named intermediate activations, each pooled/flattened to (B, D).
    - `layer_groups()`: ordered [(group name, module)] from input to head, used by the
      frozen-layer scenarios (the last group is always the head).
    - `reset_classifier(n)`: replace the head for n outputs.
    """

    pretrained_cfg = None

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.extract(x, [self.pretrained_cfg.default_layer])[self.pretrained_cfg.default_layer]

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def extract(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def layer_groups(self) -> list[tuple[str, nn.Module]]:
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:
        raise NotImplementedError


def pool_flat(t: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C) by global average pooling; (B, D) unchanged."""
    return t.mean(dim=(2, 3)) if t.ndim == 4 else t.flatten(1)
