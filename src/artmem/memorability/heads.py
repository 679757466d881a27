"""Trained memorability predictors as one image -> score module, loadable with `create_model(PATH)`.

`MemorabilityScorer` = backbone (+ optional second backbone for feature fusion) -> named feature
layer(s), concatenated -> head -> score:

- "regression": a standardising MLP (or linear) head trained with a Euclidean loss;
- "kclass": Squalli-Houssaini et al. 2018: softmax over K balanced classes, aggregated as
  m = sum_k p(k|i) s_k (s_k the class upper thresholds, s_K = 1 for scores in [0, 1]);
- "ridge" / "svr": scikit-learn models on the same features, turned into exact torch heads
  (a linear layer; an RBF-kernel expansion over the support vectors).

Checkpoints are saved with `save_checkpoint(..., config={'base_model': ..., 'wrapper':
'memorability_scorer', ...})` (`artmem.models.checkpoint.TRAINED_BUILDERS` maps that name to
`build_scorer`). A frozen backbone's pretrained weights are not stored (they ship with the
package): the wrapper rebuilds it with `pretrained=True`, so a checkpoint holds only the head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

WRAPPER = "memorability_scorer"


class Standardize(nn.Module):
    """(x - mean) / std with the training-set statistics as buffers (`std` is 1 on columns that
    are constant in training, as in scikit-learn's StandardScaler; see `models.standardize`)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def set(self, x: torch.Tensor) -> None:
        from artmem.models.standardize import standard_scale

        mean, scale = standard_scale(x)
        self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
        self.std.copy_(torch.as_tensor(scale, dtype=self.std.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class RBFKernelHead(nn.Module):
    """f(x) = sum_i dual_i exp(-gamma ||x - sv_i||^2) + b (scikit-learn SVR with an RBF kernel)."""

    def __init__(self, n_support: int, dim: int):
        super().__init__()
        self.register_buffer("support", torch.zeros(n_support, dim))
        self.register_buffer("dual", torch.zeros(n_support))
        self.register_buffer("intercept", torch.zeros(()))
        self.register_buffer("gamma", torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.support.dtype)
        d2 = torch.cdist(x.double(), self.support.double()).pow(2)
        return (torch.exp(-self.gamma.double() * d2) @ self.dual.double() + self.intercept.double()).float()[:, None]


def build_head(head_type: str, dim: int, out_dim: int = 1, hidden: tuple[int, ...] = (256,),
               dropout: float = 0.2, n_support: int = 0) -> nn.Sequential:
    """Standardize + ("mlp" | "linear" | "svr_rbf") head producing (B, out_dim)."""
    layers: list[nn.Module] = [Standardize(dim)]
    if head_type == "mlp":
        d = dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU(), nn.Dropout(dropout)]
            d = h
        layers.append(nn.Linear(d, out_dim))
    elif head_type == "linear":
        layers.append(nn.Linear(dim, out_dim))
    elif head_type == "svr_rbf":
        layers.append(RBFKernelHead(n_support, dim))
    else:
        raise ValueError(f"unknown head type {head_type!r}")
    return nn.Sequential(*layers)


def kclass_aggregate(logits: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """m = sum_k softmax(logits)_k s_k (Squalli-Houssaini et al. 2018, eq. 1)."""
    return F.softmax(logits.float(), dim=1) @ thresholds.float()


def _adapt(x: torch.Tensor, src_cfg, dst_cfg) -> torch.Tensor:
    """Re-preprocess a batch prepared for `src_cfg` for a model expecting `dst_cfg`."""
    mean_s = torch.tensor(src_cfg.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std_s = torch.tensor(src_cfg.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    mean_d = torch.tensor(dst_cfg.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std_d = torch.tensor(dst_cfg.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    pix = x * std_s + mean_s
    size = tuple(dst_cfg.input_size[1:])
    if tuple(pix.shape[2:]) != size:
        pix = F.interpolate(pix, size=size, mode="bilinear", align_corners=False, antialias=True)
    return (pix - mean_d) / std_d


class MemorabilityScorer(nn.Module):
    """Images (preprocessed for the first backbone) -> memorability score (B,)."""

    def __init__(self, backbone: nn.Module, layer: str, head: nn.Module, kind: str = "regression",
                 thresholds: list[float] | None = None, second: nn.Module | None = None,
                 layer2: str | None = None, frozen: bool = True, name: str = "memorability"):
        super().__init__()
        self.backbone = backbone
        self.layer = layer
        self.second = second
        self.layer2 = layer2
        self.head = head
        self.kind = kind
        self.frozen = frozen
        self.register_buffer("thresholds", torch.tensor(thresholds or [], dtype=torch.float32))
        base = backbone.pretrained_cfg
        self.pretrained_cfg = base.replace(
            name=name, task="memorability", output="score", num_classes=1, class_names=None,
            feature_layers=("features", "logits") if kind == "kclass" else ("features",),
            default_layer="features", extra={"trained": "artmem memorability train"},
        )
        if frozen:
            for m in (backbone, second):
                if m is not None:
                    m.requires_grad_(False)

    # -- features
    def features(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone.extract(x, [self.layer])[self.layer].flatten(1)
        if self.second is not None:
            x2 = _adapt(x, self.backbone.pretrained_cfg, self.second.pretrained_cfg)
            f2 = self.second.extract(x2, [self.layer2])[self.layer2].flatten(1)
            f = torch.cat([f.float(), f2.float()], 1)
        return f.float()

    forward_features = features

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        out = self.head(f.float())
        if self.kind == "kclass":
            return kclass_aggregate(out, self.thresholds)
        return out[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.features(x))

    def extract(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        f = self.features(x)
        out = {"features": f}
        if "logits" in layers:
            out["logits"] = self.head(f)
        return {k: v for k, v in out.items() if k in layers}

    def layer_groups(self):
        groups = list(self.backbone.layer_groups())[:-1] if hasattr(self.backbone, "layer_groups") else []
        return groups + [("head", self.head)]

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:  # a frozen backbone behaves as at inference (BatchNorm, dropout)
            for m in (self.backbone, self.second):
                if m is not None:
                    m.eval()
        return self

    # -- checkpoints hold only what was trained
    def _skip(self, key: str) -> bool:
        return self.frozen and (key.startswith("backbone.") or key.startswith("second."))

    def state_dict(self, *args, **kwargs):
        sd = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", "")
        for k in [k for k in sd if self._skip(k[len(prefix):])]:
            del sd[k]
        return sd

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        full = dict(state_dict)
        if self.frozen:
            for k, v in super().state_dict().items():
                if self._skip(k):
                    full.setdefault(k, v)
        return super().load_state_dict(full, strict=strict, assign=assign)


def scorer_config(scorer: MemorabilityScorer, base_model: str, second_model: str | None = None,
                  **extra) -> dict:
    """The checkpoint config that lets `build_scorer` rebuild `scorer`."""
    head = scorer.head
    last = head[-1]
    if isinstance(last, RBFKernelHead):
        head_type, n_support = "svr_rbf", int(last.support.shape[0])
    elif len(head) == 2:
        head_type, n_support = "linear", 0
    else:
        head_type, n_support = "mlp", 0
    hidden = tuple(m.out_features for m in list(head)[1:-1] if isinstance(m, nn.Linear))
    drop = next((m.p for m in head if isinstance(m, nn.Dropout)), 0.0)
    return {
        "base_model": base_model, "num_classes": None, "wrapper": WRAPPER,
        "layer": scorer.layer, "second_model": second_model, "layer2": scorer.layer2,
        "kind": scorer.kind, "thresholds": [float(t) for t in scorer.thresholds.tolist()],
        "head_type": head_type, "head_dim": int(head[0].mean.shape[0]),
        "head_out": 1 if head_type == "svr_rbf" else int(last.out_features),
        "hidden": list(hidden), "dropout": float(drop), "n_support": n_support,
        "frozen_backbone": scorer.frozen, "name": scorer.pretrained_cfg.name, **extra,
    }


def build_scorer(model: nn.Module, config: dict) -> MemorabilityScorer:
    """Checkpoint wrapper: (freshly built base model, saved config) -> MemorabilityScorer."""
    from artmem.models.registry import build_model

    frozen = bool(config.get("frozen_backbone", True))
    backbone = build_model(config["base_model"], pretrained=True) if frozen else model
    second = None
    if config.get("second_model"):
        second = build_model(config["second_model"], pretrained=True)
    head = build_head(config["head_type"], config["head_dim"], config["head_out"],
                      tuple(config.get("hidden") or ()), config.get("dropout", 0.0),
                      config.get("n_support", 0))
    return MemorabilityScorer(backbone, config["layer"], head, config["kind"],
                              config.get("thresholds") or None, second, config.get("layer2"),
                              frozen=frozen, name=config.get("name", "memorability"))
