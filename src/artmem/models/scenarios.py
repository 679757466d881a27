"""The five fine-tuning scenarios of Cetinic et al. 2018, with the paper's meaning on every model.

The paper fine-tunes CaffeNet (conv1..conv5, fc6, fc7, fc8) in five ways (paper wording in quotes):

    all          "the weights of all layers are modified"   -> every parameter
    skip_first   "conv1 is kept frozen"                     -> all but the first conv block
    skip_first2  "conv1 and conv2 are kept frozen"          -> all but the first two conv blocks
    only_last3   "only fc6, fc7 and fc8 are modified"       -> the last three trainable layers
    only_last    "only fc8 is modified"                     -> the classifier only

On any zoo model these read as:

- conv blocks (`conv_blocks`): the model's own first stages, from the input: AlexNet conv1,
  conv2; ResNet conv1 (stem), conv2_x (`layer1`); EfficientNet stem, stage 1. ResMem runs an
  AlexNet-like and a ResNet152 branch side by side on the image, so its first block is both
  branches' first blocks (conv1 + ResNet stem) and its second both second blocks (conv2 + layer1).
- trainable layers (`trainable_layers`): the convolution and fully connected layers in forward
  order, each with the normalisation layer that follows it (BatchNorm after a conv). The last
  three are fc6, fc7 and the new classifier on AlexNet-shaped models, fc10, fc11, fc12 on ResMem,
  the last bottleneck's conv2, conv3 and fc on ResNet, the last block's projection conv, the 1x1
  head conv and fc on EfficientNet, and both layers of an MLP head plus the layer before them.
- the classifier: the model's `head` layer group (the replaced classifier, or the MLP head).

Frozen parameters get `requires_grad=False` and every module whose parameters are all frozen
stays in eval mode during training (`set_train_mode`): BatchNorm statistics unchanged and no
dropout, as in Caffe where a layer with learning rate 0 is a fixed feature extractor.
`describe_scenarios()` / `artmem models --scenarios` lists the mapping of every zoo model with a
classifier head attached, counted exactly as training counts it (`trainable_parameter_count`).
"""

from __future__ import annotations

import logging

import pandas as pd
from torch import nn

from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)

SCENARIOS: dict[str, str] = {
    "all": "train every layer",
    "skip_first": "freeze the first conv block (conv1)",
    "skip_first2": "freeze the first two conv blocks (conv1, conv2)",
    "only_last3": "train only the last three trainable layers (fc6, fc7, fc8 on AlexNet)",
    "only_last": "train only the classifier (fc8)",
}
ALEXNET_GROUPS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "head")
_FROZEN_FLAG = "_artmem_frozen"
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)


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


def conv_blocks(model: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """The conv blocks from the input: the model's `conv_blocks()` when it defines them (parallel
    branches), else its layer groups in order (the head excluded)."""
    custom = getattr(model, "conv_blocks", None)
    if callable(custom):
        return [(name, list(mods)) for name, mods in custom()]
    return [(name, [m]) for name, m in _groups(model)[:-1]]


def trainable_layers(model: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """Conv and linear layers in forward (= registration) order, each with the normalisation
    layers registered after it and before the next weighted layer."""
    layers: list[tuple[str, list[nn.Module]]] = []
    for name, m in model.named_modules():
        if isinstance(m, _WEIGHTED):
            layers.append((name, [m]))
        elif isinstance(m, _NORMS) and layers:
            layers[-1][1].append(m)
    return layers


def _params(modules) -> set[int]:
    return {id(p) for m in modules for p in m.parameters()}


def scenario_plan(model: nn.Module, name: str) -> tuple[list[str], list[str], set[int]]:
    """(trained parts, frozen parts, ids of the trained parameters) of scenario `name`."""
    if name not in SCENARIOS:
        raise ArtmemError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}")
    every = {id(p) for p in model.parameters()}
    if name == "all":
        return ["everything"], [], every
    if name in ("skip_first", "skip_first2"):
        blocks = conv_blocks(model)[: 1 if name == "skip_first" else 2]
        return ["everything else"], [b for b, _ in blocks], every - _params(m for _, ms in blocks for m in ms)
    if name == "only_last3":
        last = trainable_layers(model)[-3:]
        return [n for n, _ in last], ["everything else"], _params(m for _, ms in last for m in ms)
    head = dict(_groups(model))["head"]
    return ["head"], ["everything else"], _params([head])


def scenario_groups(model: nn.Module, name: str) -> list[str]:
    """Names of what scenario `name` trains on this model (layers, or 'everything [else]')."""
    return scenario_plan(model, name)[0]


def _train_only(model: nn.Module, trained: set[int]) -> None:
    for p in model.parameters():
        p.requires_grad_(id(p) in trained)
    for m in model.modules():
        if hasattr(m, _FROZEN_FLAG):
            delattr(m, _FROZEN_FLAG)
        params = list(m.parameters())
        if params and not any(p.requires_grad for p in params):
            setattr(m, _FROZEN_FLAG, True)


def apply_scenario(model: nn.Module, name: str) -> list[str]:
    """Freeze/unfreeze parameters for scenario `name`; re-appliable (each call starts from scratch).

    Returns:
        the names of what is trained.
    """
    trained, _, params = scenario_plan(model, name)
    _train_only(model, params)
    model.artmem_scenario = name
    return trained


def train_groups(model: nn.Module, names: list[str], train_rest: bool = False) -> None:
    """Train exactly the layer groups `names` (and parameters outside any group if `train_rest`)."""
    groups = dict(_groups(model))
    unknown = set(names) - set(groups)
    if unknown:
        raise ArtmemError(f"unknown layer group(s) {sorted(unknown)}; the model has {list(groups)}")
    params = _params(groups[n] for n in names)
    if train_rest:
        params |= {id(p) for p in model.parameters()} - _params(groups.values())
    _train_only(model, params)


def _is_feature_stage(module: nn.Module) -> bool:
    """A group with a spatial convolution (kernel > 1); a group of 1x1 convolutions only (such
    as EfficientNet's head conv) projects channels and is not a stage."""
    return any(isinstance(m, nn.Conv2d) and max(m.kernel_size) > 1 for m in module.modules())


def last_module_plan(model: nn.Module) -> tuple[str, set[int]]:
    """Yu, Jin & Hsu's "last convolutional module along with the last fully connected layers":
    the last feature stage and every parameter after it in forward order (for EfficientNet the
    last stage, the 1x1 head conv and the classifier; for AlexNet conv5, fc6, fc7 and the
    classifier; for ResNet layer4 and fc). A model whose branches run side by side (ResMem)
    names its own via `last_module()` -> (label, modules).

    Returns:
        (label of the last module, ids of the parameters to train).
    """
    custom = getattr(model, "last_module", None)
    if callable(custom):
        label, modules = custom()
        return label, _params(modules)
    groups = _groups(model)
    stages = [(n, m) for n, m in groups[:-1] if _is_feature_stage(m)]
    if not stages:
        raise ArtmemError(f"{type(model).__name__} has no convolutional stage to fine-tune")
    label, module = stages[-1]
    first = next(module.parameters())
    params = list(model.parameters())
    start = next(i for i, p in enumerate(params) if p is first)
    return label, {id(p) for p in params[start:]}


def finetune_last_module(model: nn.Module) -> str:
    """Train the last module (`last_module_plan`) with its normalisation layers kept in inference
    mode: BatchNorm keeps the running statistics the cached features were computed with (its
    scale and shift still train), so the switch from the cached-feature head is smooth."""
    label, params = last_module_plan(model)
    _train_only(model, params)
    for m in model.modules():
        if isinstance(m, _NORMS) and any(id(p) in params for p in m.parameters()):
            setattr(m, _FROZEN_FLAG, True)  # eval mode during training: running stats unchanged
    model.artmem_scenario = f"last module ({label})"
    return label


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
    """One row per scenario: trained/frozen parts and parameter counts, counted by applying each
    scenario to `model` as training does (the model is left with every parameter trainable)."""
    total = sum(p.numel() for p in model.parameters())
    alex = is_alexnet_shaped(model)
    rows = []
    for sc in SCENARIOS:
        trained, frozen, _ = scenario_plan(model, sc)
        apply_scenario(model, sc)
        rows.append({
            "model": model_name,
            "scenario": sc,
            "trainable": ", ".join(trained),
            "frozen": ", ".join(frozen),
            "trainable_params": trainable_parameter_count(model),
            "total_params": int(total),
            "mapping": "paper (AlexNet-shaped)" if alex else "paper's meaning on this architecture",
        })
    apply_scenario(model, "all")
    return pd.DataFrame(rows)


def describe_scenarios(models: list[str] | None = None, num_classes: int = 10) -> pd.DataFrame:
    """The scenario mapping of every trainable registered model (or of `models`), each built as
    training builds it: without weights (`pretrained=False`, only shapes matter) and with a
    `num_classes`-way classifier head in place of its own.

    Columns: model, scenario, trainable, frozen, trainable_params, total_params, mapping, classes.
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
            model.reset_classifier(num_classes)
            frames.append(scenario_table(model, name).assign(classes=num_classes))
        except (ArtmemError, NotImplementedError):
            continue
    if not frames:
        return pd.DataFrame(columns=["model", "scenario", "trainable", "frozen", "trainable_params",
                                     "total_params", "mapping", "classes"])
    return pd.concat(frames, ignore_index=True)
