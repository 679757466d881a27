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
    scenario_groups,
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


PAPER = {
    "all": ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "head"],
    "skip_first": ["conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "head"],
    "skip_first2": ["conv3", "conv4", "conv5", "fc6", "fc7", "head"],
    "only_last3": ["fc6", "fc7", "head"],
    "only_last": ["head"],
}


def test_alexnet_shaped_mapping_is_the_papers():
    model = AlexLike()
    for sc, groups in PAPER.items():
        assert scenario_groups(model, sc) == groups


@pytest.mark.parametrize("factory", [AlexLike, lambda: create_model("tiny_test", num_classes=3),
                                     lambda: create_model("hybrid_cnn", num_classes=5)])
def test_trainable_counts_match_group_sums(factory):
    model = factory()
    counts = group_parameter_counts(model)
    total = sum(p.numel() for p in model.parameters())
    for sc in SCENARIOS:
        apply_scenario(model, sc)
        expected = total if sc == "all" else sum(counts[g] for g in scenario_groups(model, sc))
        assert trainable_parameter_count(model) == expected, sc
    # re-appliable: going back to `all` unfreezes everything again
    apply_scenario(model, "only_last")
    apply_scenario(model, "all")
    assert trainable_parameter_count(model) == total


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_training_step_changes_only_trained_groups(scenario):
    torch.manual_seed(0)
    model = AlexLike()
    trained = apply_scenario(model, scenario)
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
        should = scenario == "all" if g is None else g in trained
        assert changed == should, (scenario, n)
    # frozen BatchNorm layers keep their running statistics
    for i in range(5):
        name = f"convs.{i}.1.running_mean"
        frozen = f"conv{i + 1}" not in trained
        assert torch.equal(bn_before[name], dict(model.named_buffers())[name]) == frozen


def test_describe_scenarios_table():
    df = describe_scenarios(["tiny_test", "hybrid_cnn"])
    assert list(df["scenario"].unique()) == list(SCENARIOS)
    row = df[(df.model == "hybrid_cnn") & (df.scenario == "only_last3")].iloc[0]
    assert row.trainable_groups == "fc1, fc2, head"
    model = create_model("hybrid_cnn")
    apply_scenario(model, "only_last3")
    assert row.trainable_params == trainable_parameter_count(model)


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
