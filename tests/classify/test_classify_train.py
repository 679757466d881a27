"""Training runs on a synthetic 4-style collection: accuracy, run folder, resume, config, frozen features."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from classify_helpers import tiny_config

from artmem.batch.results import read_features
from artmem.classify.train import train_classifier
from artmem.cli import main
from artmem.models.checkpoint import load_checkpoint, load_weights
from artmem.models.factory import create_model


def test_short_run_far_above_chance(styles_collection, tmp_path):
    run = tmp_path / "run"
    res = train_classifier(styles_collection, run, tiny_config(epochs=15))
    m = res.metrics
    assert m["num_classes"] == 4 and m["majority_baseline"] == pytest.approx(0.25)
    assert m["test_accuracy"] >= 0.7, m  # chance is 0.25
    for name in ("config.yaml", "summary.csv", "best.safetensors", "best.json", "last.safetensors",
                 "last.json", "last.training.pt", "metrics.json", "per_class.csv",
                 "confusion_matrix.csv", "confusion_matrix.png", "curves.png", "split.parquet",
                 "test_predictions.parquet", "errors.parquet"):
        assert (run / name).exists(), name
    summary = pd.read_csv(run / "summary.csv")
    assert list(summary["epoch"]) == list(range(1, 16))
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "wall_time_s", "lr"} <= set(summary.columns)
    cm = pd.read_csv(run / "confusion_matrix.csv", index_col=0)
    assert list(cm.columns) == ["style_0", "style_1", "style_2", "style_3"]
    assert cm.to_numpy().sum() == m["n_test"]
    assert np.trace(cm.to_numpy()) / m["n_test"] == pytest.approx(m["test_accuracy"])
    split = pd.read_parquet(run / "split.parquet")
    assert split["split"].value_counts().to_dict() == {"train": 44, "test": 12, "val": 8}
    # checkpoint contents, and the trained model works anywhere a model name does
    state = load_checkpoint(run / "last.safetensors")
    assert state["epoch"] == 15 and state["optimizer"] and state["scheduler"]
    assert state["config"]["base_model"] == "tiny_test" and state["config"]["num_classes"] == 4
    assert state["class_names"] == ["style_0", "style_1", "style_2", "style_3"]
    model = create_model(str(run))
    assert model.pretrained_cfg.class_names == ("style_0", "style_1", "style_2", "style_3")
    pred = pd.read_parquet(run / "test_predictions.parquet")
    assert pred["correct"].mean() == pytest.approx(m["test_accuracy"])


class Killed(Exception):
    pass


def test_kill_and_resume_reaches_the_same_result(styles_collection, tmp_path):
    flags = dict(epochs=4, optimizer="sgd", lr=0.05, schedule="step", step_size=2, gamma=0.5,
                 weight_decay=5e-4, seed=3)
    full = train_classifier(styles_collection, tmp_path / "full", tiny_config(**flags))

    def kill(row):
        if row["epoch"] == 2:
            raise Killed

    with pytest.raises(Killed):
        train_classifier(styles_collection, tmp_path / "killed", tiny_config(**flags), on_epoch_end=kill)
    assert load_checkpoint(tmp_path / "killed" / "last.safetensors")["epoch"] == 2
    assert not (tmp_path / "killed" / "metrics.json").exists()
    # a plain rerun refuses to overwrite; --resume (CLI) continues from the saved config
    args = ["train", str(styles_collection), "-o", str(tmp_path / "killed"), "--label", "style"]
    assert main(args + ["--model", "tiny_test"]) == 2
    assert main(args + ["--resume", "--lr", "0.1"]) == 2  # a changed setting is refused
    assert main(args + ["--resume"]) == 0
    a = pd.read_csv(tmp_path / "full" / "summary.csv")
    b = pd.read_csv(tmp_path / "killed" / "summary.csv")
    cols = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    mb = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert mb["test_accuracy"] == full.metrics["test_accuracy"]
    assert mb["test_macro_f1"] == full.metrics["test_macro_f1"]
    sa = load_weights(tmp_path / "full" / "last.safetensors")
    sb = load_weights(tmp_path / "killed" / "last.safetensors")
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_config_file_and_flag_override(styles_collection, tmp_path, capsys):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump({"model": "tiny_test", "label": "genre", "lr": 0.02, "epochs": 5,
                                   "scenario": "skip_first", "cache-size": 36, "batch_size": 8,
                                   "split": "60/20/20", "device": "cpu"}))
    run = tmp_path / "run"
    assert main(["-q", "train", str(styles_collection), "-o", str(run), "--config", str(cfg),
                 "--epochs", "1", "--optimizer", "adam"]) == 0
    written = capsys.readouterr().out.split()
    assert str(run / "metrics.json") in written
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["epochs"] == 1 and resolved["optimizer"] == "adam"  # flags win
    assert resolved["lr"] == 0.02 and resolved["scenario"] == "skip_first" and resolved["label"] == "genre"
    assert resolved["weight_decay"] == 5e-4 and resolved["momentum"] == 0.9  # defaults
    assert resolved["split"] == pytest.approx([0.6, 0.2, 0.2])
    assert len(pd.read_csv(run / "summary.csv")) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: 0.1\n")
    assert main(["train", str(styles_collection), "-o", str(tmp_path / "r2"), "--config", str(bad)]) == 2
    assert main(["train", str(styles_collection), "-o", str(tmp_path / "r3"), "--model", "tiny_test",
                 "--label", "nope"]) == 2


def test_frozen_features_search_and_finetune_last(styles_collection, tmp_path):
    cache = tmp_path / "cache"
    cfg = tiny_config(scenario="only_last", search=3, epochs=4, finetune_last=True, finetune_epochs=2,
                      finetune_lr=1e-3, cache_dir=str(cache), head_width=32)
    res = train_classifier(styles_collection, tmp_path / "run", cfg)
    run = tmp_path / "run"
    jobs = [d for d in (cache / "features").iterdir() if d.is_dir()]
    assert len(jobs) == 1  # a batch-job folder: features.parquet, features.json, job.json, shards/
    fs = read_features(jobs[0])
    assert fs.vectors.shape == (64, 16)  # tiny_test's 16-d embedding of every image, computed once
    # naive reference: the untrained backbone on the cache's centre crops, one image at a time
    from artmem.data.cache import CachedImageDataset, batch_to_float

    ds = CachedImageDataset(next((cache).glob("images-*")), fs.paths, crop=32, output="uint8")
    backbone = create_model("tiny_test")
    with torch.inference_mode():
        for i in (0, 17, 63):
            x = batch_to_float(ds[i][0][None], backbone.pretrained_cfg.mean, backbone.pretrained_cfg.std)
            np.testing.assert_allclose(fs.vectors[i], backbone.forward_features(x)[0].numpy(), atol=1e-5)
    search = pd.read_csv(run / "search.csv")
    assert len(search) == 3 and search["chosen"].sum() == 1
    assert search["head_width"].iloc[0] == 32 and search["head_width"].nunique() == 3
    summary = pd.read_csv(run / "summary.csv")
    assert list(summary["stage"]) == ["head"] * 4 + ["finetune"] * 2
    assert res.metrics["frozen_features"] and "finetune" in res.metrics
    # the backbone stayed frozen except the last conv module (conv3) and what follows it (fc)
    assert res.metrics["finetune"]["last_module"] == "conv3"
    trained = create_model(str(run / "last.safetensors"))
    original = create_model("tiny_test")
    for g in ("conv1", "conv2", "conv3", "fc"):
        a = dict(trained.backbone.layer_groups())[g].state_dict()
        b = dict(original.layer_groups())[g].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a) == (g in ("conv1", "conv2")), g
    # a smooth switch: fine-tuning starts from the head's loss, not from a jump
    head_last = summary[summary["stage"] == "head"]["train_loss"].iloc[-1]
    assert summary[summary["stage"] == "finetune"]["train_loss"].iloc[0] < head_last * 1.5 + 0.05
    # a second run with the same backbone reuses the cached features
    res2 = train_classifier(styles_collection, tmp_path / "run2",
                            tiny_config(scenario="only_last", epochs=2, cache_dir=str(cache)))
    assert res2.metrics["feature_time_s"] == 0.0


def test_last_module_is_the_last_feature_stage_with_frozen_batchnorm_statistics():
    from artmem.classify.train import _finetune_wins
    from artmem.models.scenarios import finetune_last_module, last_module_plan, set_train_mode

    eff = create_model("efficientnet_lite0", pretrained=False)
    eff.reset_classifier(4)
    label, params = last_module_plan(eff)
    assert label == "stage7"  # not the 1x1 head conv
    stage7 = dict(eff.layer_groups())["stage7"]
    hand = [stage7, eff._conv_head, eff._bn1, eff._fc]
    assert params == {id(p) for m in hand for p in m.parameters()}
    finetune_last_module(eff)
    set_train_mode(eff, True)
    bns = [m for m in stage7.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.training and m.weight.requires_grad for m in bns)
    assert not eff._conv_stem.weight.requires_grad
    before = bns[0].running_mean.clone()
    eff(torch.randn(2, 3, 224, 224))
    assert torch.equal(before, bns[0].running_mean)  # the statistics of the cached features
    # tie rule: accuracy, then loss, then the head-only model
    assert _finetune_wins((0.8, 0.5), (0.7, 0.1)) and not _finetune_wins((0.7, 0.9), (0.8, 0.1))
    assert _finetune_wins((0.8, 0.4), (0.8, 0.5)) and not _finetune_wins((0.8, 0.5), (0.8, 0.5))
    assert not _finetune_wins((float("nan"), 0.1), (0.8, 0.5))
