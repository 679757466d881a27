"""The five fine-tuning scenarios of Cetinic et al. 2018, mapped onto any model's layer groups.

Every zoo model lists its layer groups from input to head (`model.layer_groups()`, the last group
is always the classifier head). A scenario names the groups whose weights are trained; all other
parameters are frozen (`requires_grad=False`) and their BatchNorm/Dropout modules stay in eval mode
during training (see `set_train_mode`).

Mapping (paper wording in quotes; CaffeNet has conv1..conv5, fc6, fc7, fc8):

    all          "the weights of all layers are modified"        -> every group
    skip_first   "conv1 is kept frozen"                         -> all groups but the first
    skip_first2  "conv1 and conv2 are kept frozen"              -> all groups but the first two
    only_last3   "only fc6, fc7 and fc8 are modified"           -> the last three groups
    only_last    "only fc8 is modified"                         -> the head group only

For an AlexNet-shaped model (groups conv1..conv5, fc6, fc7, head, e.g. `resmem_alexnet`) this is
exactly the paper. For other networks the same positional rule applies to their own groups
(e.g. EfficientNet: skip_first freezes the stem, only_last3 trains the last block, the 1x1 head
convolution and the classifier); `describe_scenarios()` / `artmem models --scenarios` prints the
mapping for every registered model. A model can override the rule by defining
`scenario_groups(name) -> list[str]`.
"""

from __future__ import annotations

import logging

import pandas as pd
from torch import nn

from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)

SCENARIOS: dict[str, str] = {
    "all": "train every layer group",
    "skip_first": "freeze the first group (conv1)",
    "skip_first2": "freeze the first two groups (conv1, conv2)",
    "only_last3": "train only the last three groups (fc6, fc7, fc8 on AlexNet)",
    "only_last": "train only the classifier head (fc8)",
}
ALEXNET_GROUPS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "head")
_FROZEN_FLAG = "_artmem_frozen"


def _groups(model: nn.Module) -> list[tuple[str, nn.Module]]:
    if not hasattr(model, "layer_groups"):
        raise ArtmemError(f"{type(model).__name__} has no layer_groups(); scenarios need them")
    groups = list(model.layer_groups())
    if len(groups) < 2:
        raise ArtmemError("a model needs at least two layer groups (backbone and head) for scenarios")
    return groups


def is_alexnet_shaped(model: nn.Module) -> bool:
    """True when the layer groups are exactly CaffeNet's conv1..conv5, fc6, fc7, head."""
    return tuple(name for name, _ in _groups(model)) == ALEXNET_GROUPS


def scenario_groups(model: nn.Module, name: str) -> list[str]:
    """Names of the layer groups trained in scenario `name` for this model."""
    if name not in SCENARIOS:
        raise ArtmemError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}")
    custom = getattr(model, "scenario_groups", None)
    if callable(custom):
        return list(custom(name))
    names = [n for n, _ in _groups(model)]
    if name == "all":
        return names
    if name == "skip_first":
        return names[1:]
    if name == "skip_first2":
        return names[2:] if len(names) > 2 else names[-1:]
    if name == "only_last3":
        return names[-3:]
    return names[-1:]


def apply_scenario(model: nn.Module, name: str) -> list[str]:
    """Freeze/unfreeze parameters for scenario `name`; re-appliable (each call starts from scratch).

    In `all`, parameters outside any group are trained too; in every other scenario they are frozen.

    Returns:
        the names of the trained groups.
    """
    trained = scenario_groups(model, name)
    train_groups(model, trained, train_rest=name == "all")
    model.artmem_scenario = name
    return trained


def train_groups(model: nn.Module, names: list[str], train_rest: bool = False) -> None:
    """Train exactly the layer groups `names` (and parameters outside any group if `train_rest`)."""
    groups = dict(_groups(model))
    unknown = set(names) - set(groups)
    if unknown:
        raise ArtmemError(f"unknown layer group(s) {sorted(unknown)}; the model has {list(groups)}")
    trained = list(names)
    for p in model.parameters():
        p.requires_grad_(train_rest)
    for m in model.modules():
        if hasattr(m, _FROZEN_FLAG):
            delattr(m, _FROZEN_FLAG)
    for gname, module in groups.items():
        train = gname in trained
        for p in module.parameters():
            p.requires_grad_(train)
        if not train:
            setattr(module, _FROZEN_FLAG, True)


def set_train_mode(model: nn.Module, train: bool = True) -> nn.Module:
    """`model.train(train)`, keeping the frozen groups of the applied scenario in eval mode.

    A frozen group must behave exactly as at inference (BatchNorm running statistics unchanged,
    no dropout), as in Caffe where a layer with learning rate 0 is a fixed feature extractor.
    """
    model.train(train)
    if train:
        for m in model.modules():
            if getattr(m, _FROZEN_FLAG, False):
                m.eval()
    return model


def trainable_parameter_count(model: nn.Module) -> int:
    """Number of parameters with `requires_grad`."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def group_parameter_counts(model: nn.Module) -> dict[str, int]:
    """Parameters per layer group."""
    return {n: sum(p.numel() for p in m.parameters()) for n, m in _groups(model)}


def scenario_table(model: nn.Module, model_name: str = "") -> pd.DataFrame:
    """One row per scenario: trained/frozen groups and parameter counts (the model is left as is)."""
    counts = group_parameter_counts(model)
    total = sum(p.numel() for p in model.parameters())
    alex = is_alexnet_shaped(model)
    rows = []
    for sc in SCENARIOS:
        trained = scenario_groups(model, sc)
        n = total if sc == "all" else sum(counts[g] for g in trained)
        rows.append({
            "model": model_name,
            "scenario": sc,
            "trainable_groups": ", ".join(trained),
            "frozen_groups": ", ".join(g for g in counts if g not in trained),
            "trainable_params": int(n),
            "total_params": int(total),
            "mapping": "paper (AlexNet-shaped)" if alex else "positional (first/last groups)",
        })
    return pd.DataFrame(rows)


def describe_scenarios(models: list[str] | None = None) -> pd.DataFrame:
    """The scenario mapping of every classification-capable registered model (or of `models`).

    Models are built without weights (`pretrained=False`) just to read their layer groups.
    Columns: model, scenario, trainable_groups, frozen_groups, trainable_params, total_params, mapping.
    """
    from artmem.models.factory import create_model
    from artmem.models.registry import list_models

    frames = []
    for name in models if models is not None else list_models():
        try:
            model = create_model(name, pretrained=False)
        except Exception as exc:  # an entry whose package is missing must not hide the others
            logger.warning("scenarios: cannot build %s (%s)", name, exc)
            continue
        if not hasattr(model, "reset_classifier"):
            continue
        try:
            frames.append(scenario_table(model, name))
        except (ArtmemError, NotImplementedError):
            continue
    if not frames:
        return pd.DataFrame(columns=["model", "scenario", "trainable_groups", "frozen_groups",
                                     "trainable_params", "total_params", "mapping"])
    return pd.concat(frames, ignore_index=True)
