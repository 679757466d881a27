"""Scenarios train exactly the parameters they should; hybrid_cnn is a proper zoo entry."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from artmem.models.base import ZooModel
from artmem.models.factory import create_model
from artmem.models.scenarios import (
    SCENARIOS,
    apply_scenario,
    describe_scenarios,
    group_parameter_counts,
    scenario_plan,
    set_train_mode,
    trainable_parameter_count,
)


class AlexLike(ZooModel):
    """CaffeNet-shaped groups conv1..conv5, fc6, fc7, head (with BatchNorm to check eval mode)."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(3 if i == 0 else 4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
             for i in range(5)])
        self.fc6 = nn.Linear(4, 6)
        self.fc7 = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)
        self.extra = nn.Parameter(torch.zeros(2))  # outside every group

    def forward(self, x):
        for c in self.convs:
            x = c(x)
        return self.head(torch.relu(self.fc7(torch.relu(self.fc6(x.mean((2, 3))))))) * (1 + self.extra.sum())

    def layer_groups(self):
        return [(f"conv{i + 1}", c) for i, c in enumerate(self.convs)] + [
            ("fc6", self.fc6), ("fc7", self.fc7), ("head", self.head)]


PAPER = {  # (trained, frozen) as CaffeNet reads them
    "all": (["everything"], []),
    "skip_first": (["everything else"], ["conv1"]),
    "skip_first2": (["everything else"], ["conv1", "conv2"]),
    "only_last3": (["fc6", "fc7", "head"], ["everything else"]),
    "only_last": (["head"], ["everything else"]),
}


def test_alexnet_shaped_mapping_is_the_papers():
    model = AlexLike()
    for sc, (trained, frozen) in PAPER.items():
        assert scenario_plan(model, sc)[:2] == (trained, frozen)


def _n(*shapes):
    """Hand count: the product of each parameter shape, summed."""
    import math

    return sum(math.prod(s) for s in shapes)


def _conv(cout, cin_per_group, k, bias=True):
    return _n((cout, cin_per_group, k, k), *([(cout,)] if bias else []))


def _fc(din, dout):
    return _n((dout, din), (dout,))


N = 10  # classes of the attached head
ALEX_CONVS = [_conv(48, 3, 11), _conv(256, 24, 5), _conv(384, 128, 3), _conv(384, 192, 3), _conv(256, 192, 3)]
RESNET152_IMAGENET = 60_192_808  # torchvision's published parameter count (1000-way fc)
RESNET_STEM = _conv(64, 3, 7, bias=False) + 2 * 64  # conv1 + bn1
RESNET_LAYER1 = 215_808  # conv2_x: 3 bottlenecks 64-64-256, identical in ResNet-50/101/152
# last bottleneck of layer4: conv2 3x3 512->512 + bn2, conv3 1x1 512->2048 + bn3
RESNET_LAST2 = _conv(512, 512, 3, bias=False) + 2 * 512 + _conv(2048, 512, 1, bias=False) + 2 * 2048
RESMEM_FC = [_fc(10216, 4096), _fc(4096, 4096), _fc(4096, 2048), _fc(2048, 1024), _fc(1024, 512), _fc(512, 256)]


def _hand_counts() -> dict[str, dict[str, int]]:
    alex_total = sum(ALEX_CONVS) + _fc(9216, 4096) + _fc(4096, 4096) + _fc(4096, N)
    resnet_total = RESNET152_IMAGENET - _fc(2048, 1000) + _fc(2048, N)
    resmem_total = RESNET152_IMAGENET + sum(ALEX_CONVS) + sum(RESMEM_FC) + _fc(256, N)
    return {
        "resmem_alexnet": {
            "all": alex_total, "skip_first": alex_total - ALEX_CONVS[0],
            "skip_first2": alex_total - ALEX_CONVS[0] - ALEX_CONVS[1],
            "only_last3": _fc(9216, 4096) + _fc(4096, 4096) + _fc(4096, N), "only_last": _fc(4096, N)},
        "resnet152_resmem": {
            "all": resnet_total, "skip_first": resnet_total - RESNET_STEM,
            "skip_first2": resnet_total - RESNET_STEM - RESNET_LAYER1,
            "only_last3": RESNET_LAST2 + _fc(2048, N), "only_last": _fc(2048, N)},
        "resmem": {  # both branches' first blocks; the classifier is fc12 alone
            "all": resmem_total, "skip_first": resmem_total - ALEX_CONVS[0] - RESNET_STEM,
            "skip_first2": resmem_total - ALEX_CONVS[0] - ALEX_CONVS[1] - RESNET_STEM - RESNET_LAYER1,
            "only_last3": _fc(1024, 512) + _fc(512, 256) + _fc(256, N), "only_last": _fc(256, N)},
        "efficientnet_lite0": {  # stem 3x3 s2 32 + bn; stage1 = one MBConv1 (dw 3x3 32, project 32->16)
            "skip_first": -(_conv(32, 3, 3, bias=False) + 64),
            "skip_first2": -(_conv(32, 3, 3, bias=False) + 64 + _conv(32, 1, 3, bias=False) + 64
                             + _conv(16, 32, 1, bias=False) + 32),
            # last MBConv projects 1152 -> 320 (+ bn), head conv 320 -> 1280 (+ bn), fc 1280 -> N
            "only_last3": _conv(320, 1152, 1, bias=False) + 640 + _conv(1280, 320, 1, bias=False) + 2560
            + _fc(1280, N),
            "only_last": _fc(1280, N)},
    }


@pytest.mark.parametrize("name", ["resmem_alexnet", "resnet152_resmem", "resmem", "efficientnet_lite0"])
def test_trainable_params_per_scenario_equal_hand_counts(name):
    hand = _hand_counts()[name]
    table = describe_scenarios([name], num_classes=N).set_index("scenario")
    total = int(table.loc["all", "total_params"])
    for sc in SCENARIOS:
        if sc not in hand:
            continue
        expected = total + hand[sc] if hand[sc] < 0 else hand[sc]  # negative: total minus frozen
        assert table.loc[sc, "trainable_params"] == expected, (name, sc)
    assert table.loc["all", "trainable_params"] == total


@pytest.mark.parametrize("factory", [AlexLike, lambda: create_model("tiny_test", num_classes=3),
                                     lambda: create_model("hybrid_cnn", num_classes=5)])
def test_trainable_counts_match_group_sums(factory):
    model = factory()
    counts = group_parameter_counts(model)
    total = sum(p.numel() for p in model.parameters())
    names = list(counts)
    expected = {"all": total, "skip_first": total - counts[names[0]],
                "skip_first2": total - counts[names[0]] - counts[names[1]], "only_last": counts["head"]}
    for sc, n in expected.items():
        apply_scenario(model, sc)
        assert trainable_parameter_count(model) == n, sc
    # re-appliable: going back to `all` unfreezes everything again
    apply_scenario(model, "only_last")
    apply_scenario(model, "all")
    assert trainable_parameter_count(model) == total


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_training_step_changes_only_trained_groups(scenario):
    torch.manual_seed(0)
    model = AlexLike()
    apply_scenario(model, scenario)
    trained_groups = {"all": ALL, "skip_first": ALL[1:], "skip_first2": ALL[2:],
                      "only_last3": ["fc6", "fc7", "head"], "only_last": ["head"]}[scenario]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    bn_before = {n: b.clone() for n, b in model.named_buffers()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    set_train_mode(model, True)
    loss = nn.functional.cross_entropy(model(torch.randn(4, 3, 8, 8)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    opt.step()
    group_of = {}
    for g, m in model.layer_groups():
        for n, _ in m.named_parameters():
            group_of[id(m.get_parameter(n))] = g
    for n, p in model.named_parameters():
        changed = not torch.equal(before[n], p.detach())
        g = group_of.get(id(p))
        # a parameter outside every group trains unless the scenario names what it trains
        should = scenario in ("all", "skip_first", "skip_first2") if g is None else g in trained_groups
        assert changed == should, (scenario, n)
    # frozen BatchNorm layers keep their running statistics
    for i in range(5):
        name = f"convs.{i}.1.running_mean"
        frozen = f"conv{i + 1}" not in trained_groups
        assert torch.equal(bn_before[name], dict(model.named_buffers())[name]) == frozen


ALL = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "head"]


def test_describe_scenarios_equals_what_training_reports(synthetic_collection, tmp_path):
    import json

    from classify_helpers import tiny_config

    from artmem.classify.train import train_classifier

    df = describe_scenarios(["tiny_test", "hybrid_cnn"], num_classes=3)
    assert list(df["scenario"].unique()) == list(SCENARIOS)
    row = df[(df.model == "hybrid_cnn") & (df.scenario == "only_last3")].iloc[0]
    assert row.trainable == "fc1.1, fc2.1, head"
    for sc in ("only_last", "skip_first"):  # the frozen-feature path and the full fine-tuning path
        run = train_classifier(synthetic_collection, tmp_path / sc, tiny_config(scenario=sc, epochs=1))
        reported = json.loads((run.run_dir / "metrics.json").read_text())["trainable_params"]
        listed = df[(df.model == "tiny_test") & (df.scenario == sc)].iloc[0].trainable_params
        assert reported == listed, sc


def test_hybrid_cnn_entry():
    model = create_model("hybrid_cnn", num_classes=7)
    assert model.pretrained_cfg.task == "classification"
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 7)
    conv = sum(p.numel() for g, m in model.layer_groups() if g.startswith(("conv", "incep"))
               for p in m.parameters())
    assert 40_000 < conv < 60_000  # the paper: "only 50k trainable parameters for all convolutional layers"
    feats = model.extract(torch.randn(1, 3, 64, 64), ["inception", "fc2"])
    assert feats["inception"].shape == (1, 96) and feats["fc2"].shape == (1, 64)
    a, b = create_model("hybrid_cnn"), create_model("hybrid_cnn")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
