"""Building the network of a run: an initialisation from the zoo with its head replaced for N classes.

- `init: pretrained`: the zoo entry's weights (ImageNet EfficientNet-Lite, resmem's memorability
  ResNet152 trunk, the resmem AlexNet-like branch as the MemNet-style init, ...).
- `init: random`: the same architecture with every layer freshly initialised from the seed.
- `head: mlp`: the Yu/Jin/Hsu dense head (dropout-FC-ReLU-dropout-FC) on the backbone embedding,
  saved through the checkpoint `wrapper` hook so `create_model(run_dir)` rebuilds it.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from artmem.errors import ArtmemError
from artmem.models.base import ZooModel

logger = logging.getLogger(__name__)


def mlp_head(in_dim: int, width: int, num_classes: int, dropout: float) -> nn.Sequential:
    """Two dropout + fully-connected pairs (Yu, Jin & Hsu): drop-FC(width)-ReLU-drop-FC(N)."""
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, width), nn.ReLU(inplace=True),
                         nn.Dropout(dropout), nn.Linear(width, num_classes))


class MLPHeadClassifier(ZooModel):
    """A zoo backbone's embedding (`forward_features`) followed by an MLP head."""

    def __init__(self, backbone: nn.Module, num_classes: int, width: int = 512, dropout: float = 0.5):
        super().__init__()
        self.backbone = backbone
        in_dim = feature_dim(backbone)
        self.head = mlp_head(in_dim, width, num_classes, dropout)
        self.pretrained_cfg = backbone.pretrained_cfg.replace(num_classes=num_classes, output="logits")

    def forward_features(self, x):
        return self.backbone.forward_features(x)

    def forward_head(self, f):
        return self.head(f)

    def extract(self, x, layers):
        return self.backbone.extract(x, layers)

    def layer_groups(self):
        groups = list(self.backbone.layer_groups())[:-1]
        return groups + [("head", self.head)]

    def conv_blocks(self):
        from artmem.models.scenarios import conv_blocks

        return conv_blocks(self.backbone)

    def last_module(self):
        """The backbone's last module (without its unused classifier) and the MLP head."""
        from artmem.models.scenarios import last_module_plan

        label, params = last_module_plan(self.backbone)
        old_head = {id(p) for p in dict(self.backbone.layer_groups())["head"].parameters()}
        mods = [m for m in self.backbone.modules()
                if not list(m.children()) and any(id(p) in params - old_head for p in m.parameters())]
        return label, [*mods, self.head]

    def reset_classifier(self, num_classes: int) -> None:
        width = self.head[1].out_features
        self.head = mlp_head(self.head[1].in_features, width, num_classes, self.head[0].p)
        self.pretrained_cfg = self.pretrained_cfg.replace(num_classes=num_classes)


def feature_dim(model: nn.Module) -> int:
    """Size of `forward_features` output (by a dummy forward at the model's input size)."""
    c, h, w = model.pretrained_cfg.input_size
    was = model.training
    model.eval()
    with torch.inference_mode():
        d = model.forward_features(torch.zeros(1, c, h, w)).shape[-1]
    model.train(was)
    return int(d)


def wrap_mlp_head(model: nn.Module, config: dict) -> MLPHeadClassifier:
    """Checkpoint wrapper `mlp_head` (see `artmem.models.checkpoint.TRAINED_BUILDERS`)."""
    return MLPHeadClassifier(model, int(config["num_classes"]), int(config.get("head_width", 512)),
                             float(config.get("head_dropout", 0.5)))


def set_dropout(model: nn.Module, p: float | None) -> None:
    if p is None:
        return
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = float(p)


def reinitialise(model: nn.Module, seed: int) -> None:
    """Reset every layer with `reset_parameters` (random init), deterministically from `seed`."""
    state = torch.random.get_rng_state()
    # a seed stream of its own: seeded zoo entries (tiny_test, hybrid_cnn) must not come back
    # with their "pretrained" weights
    torch.manual_seed(seed + 1_000_003)
    try:
        for m in model.modules():
            if hasattr(m, "reset_parameters") and m is not model:
                m.reset_parameters()
    finally:
        torch.random.set_rng_state(state)


def build_classifier(model_name: str, num_classes: int, init: str = "pretrained", seed: int = 0,
                     head: str = "linear", head_width: int = 512, dropout: float | None = None):
    """Create the network to train and the checkpoint config that rebuilds it.

    Returns:
        (model, checkpoint_config) where checkpoint_config has base_model, num_classes and, for an
        MLP head, the `wrapper` hook with head_width and head_dropout.
    """
    from artmem.models.checkpoint import is_run_path, read_description
    from artmem.models.factory import create_model
    from artmem.models.registry import is_registered

    base_model = model_name
    if not is_registered(model_name) and is_run_path(model_name):  # fine-tune a trained run
        base_model = read_description(model_name)["config"]["base_model"]
    torch.manual_seed(seed)  # the new head's initial weights come from the seed
    model = create_model(model_name, pretrained=init == "pretrained")
    if not hasattr(model, "reset_classifier") or not hasattr(model, "layer_groups"):
        raise ArtmemError(f"model {model_name!r} cannot be trained as a classifier "
                          "(no replaceable head / layer groups)")
    if init == "random":
        reinitialise(model, seed)
    ckpt = {"base_model": base_model, "num_classes": num_classes}
    torch.manual_seed(seed)
    model.reset_classifier(num_classes)  # also under an MLP head: the rebuilt model has this shape
    if head == "mlp":
        p = 0.5 if dropout is None else dropout
        torch.manual_seed(seed)
        model = MLPHeadClassifier(model, num_classes, head_width, p)
        ckpt.update(wrapper="mlp_head", head_width=head_width, head_dropout=p)
    else:
        set_dropout(model, dropout)
    model.pretrained_cfg = model.pretrained_cfg.replace(num_classes=num_classes, output="logits")
    return model, ckpt
