"""Predictions as image attributes, the generic training loop, and experiment grids (Tables 2/3)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from classify_helpers import tiny_config

from artmem.classify.experiment import run_experiment
from artmem.classify.train import train_classifier
from artmem.cli import main
from artmem.data.collection import Collection
from artmem.training.loop import fit


@pytest.fixture(scope="module")
def trained_run(styles_collection, tmp_path_factory):
    run = tmp_path_factory.mktemp("predict") / "run"
    train_classifier(styles_collection, run, tiny_config(epochs=8))
    return run


def test_predict_topk_and_probability_table(styles_collection, trained_run, tmp_path, capsys):
    coll = Collection.load(styles_collection)
    table = pd.concat([coll.table, pd.DataFrame({"path": ["missing.jpg"], "style": ["style_0"]})],
                      ignore_index=True)
    Collection(table, coll.root, "with-missing").save(tmp_path / "coll")
    out = tmp_path / "pred"
    assert main(["predict", str(tmp_path / "coll" / "collection.parquet"), "--run", str(trained_run),
                 "-o", str(out), "--topk", "3", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out.split()
    assert str(out / "predictions.parquet") in printed and str(out / "probabilities.parquet") in printed
    pred = pd.read_parquet(out / "predictions.parquet")
    probs = pd.read_parquet(out / "probabilities.parquet")
    errors = pd.read_parquet(out / "errors.parquet")
    assert list(errors["path"]) == ["missing.jpg"]
    assert len(pred) == len(probs) == len(coll)
    pcols = ["p_style_0", "p_style_1", "p_style_2", "p_style_3"]
    assert list(probs.columns) == ["path"] + pcols
    p = probs[pcols].to_numpy()
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    assert (pred["top1_prob"] >= pred["top2_prob"]).all() and (pred["top2_prob"] >= pred["top3_prob"]).all()
    assert (pred["pred"] == pred["top1_label"]).all()
    np.testing.assert_allclose(pred["top1_prob"], p.max(1), rtol=1e-6)
    assert list(pred["top1_label"]) == [pcols[i][2:] for i in p.argmax(1)]
    assert pred["correct"].mean() > 0.5  # the collection carries the run's label column
    # the run's test images get the same predictions as at evaluation time
    test_pred = pd.read_parquet(trained_run / "test_predictions.parquet").set_index("path")
    joined = pred.set_index("path").loc[test_pred.index]
    assert (joined["pred"] == test_pred["pred"]).all()
    np.testing.assert_allclose(joined["prob"], test_pred["prob"], rtol=1e-4)


def test_fit_is_generic_regression(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(64, 5)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0])
    data = torch.utils.data.TensorDataset(x, y)
    loader = torch.utils.data.DataLoader(data, batch_size=16, shuffle=True)
    model = torch.nn.Sequential(torch.nn.Linear(5, 1), torch.nn.Flatten(0))

    def mae(out, target):
        return {"mae": float((out - target).abs().mean())}

    res = fit(model, loader, loader, torch.nn.functional.mse_loss,
              {"epochs": 6, "optimizer": "adam", "lr": 0.1, "weight_decay": 0, "schedule": "constant",
               "device": "cpu", "monitor": "val_mae"}, tmp_path,
              metrics_fn=mae, checkpoint_config={"base_model": "linear", "num_classes": 1})
    h = res.history
    assert h["val_mae"].iloc[-1] < 0.5 * h["val_mae"].iloc[0]
    assert res.best_epoch == int(h["val_mae"].idxmin()) + 1
    assert (tmp_path / "best.safetensors").exists() and (tmp_path / "summary.csv").exists()


def test_experiment_grid_tables(styles_collection, tmp_path):
    grid = {
        "collection": str(styles_collection),
        "tasks": ["style"],
        "inits": {"seeded": {"model": "tiny_test"}, "scratch": {"model": "tiny_test", "init": "random"}},
        "scenarios": ["all", "only_last3"],
        "settings": {"optimizer": "adam", "lr": 0.01, "schedule": "constant", "epochs": 2,
                     "batch_size": 16, "cache_size": 36, "device": "cpu", "num_workers": 0},
    }
    gfile = tmp_path / "grid.yaml"
    gfile.write_text(yaml.safe_dump(grid, sort_keys=False))
    out = tmp_path / "exp"
    assert main(["-q", "experiment", str(gfile), "-o", str(out)]) == 0
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 4 and (results["status"] == "done").all()
    t2 = pd.read_csv(out / "table2.csv", index_col=[0, 1])
    assert list(t2.columns) == ["seeded", "scratch", "variance_of_accuracies"]
    assert list(t2.index) == [("style", "tiny test CNN")]  # inits compared within one architecture
    acc = results[results.scenario == "all"].set_index("init")["test_accuracy"]
    assert t2.loc[("style", "tiny test CNN"), "seeded"] == pytest.approx(acc["seeded"])
    assert t2.loc[("style", "tiny test CNN"), "variance_of_accuracies"] == pytest.approx(
        np.var([acc["seeded"], acc["scratch"]]))
    assert "scratch (random)" in (out / "table2.md").read_text()
    t3 = pd.read_csv(out / "table3.csv", index_col=0)
    assert list(t3.index) == ["all", "only_last3"] and list(t3.columns) == ["style"]
    seeded = results[results.init == "seeded"].set_index("scenario")["test_accuracy"]
    assert t3.loc["only_last3", "style"] == pytest.approx(seeded["only_last3"])
    assert "| scenario | style |" in (out / "table3.md").read_text()
    assert "variance of accuracies" in (out / "table2.md").read_text()
    for name in ("curves_style_inits.png", "curves_style_scenarios.png", "training_time.png",
                 "accuracy_scenarios.png", "curves_style_inits_only_last3.png",
                 "curves_style_scenarios_scratch.png"):
        assert (out / name).stat().st_size > 1000, name
    cfg = yaml.safe_load((out / "runs/style/seeded/only_last3/config.yaml").read_text())
    assert cfg["scenario"] == "only_last3"
    m = json.loads((out / "runs/style/seeded/only_last3/metrics.json").read_text())
    # tiny_test conv3 (16x16x3x3 + 16), fc (16x16 + 16), head for 4 classes (16x4 + 4)
    assert m["trainable_params"] == (16 * 16 * 9 + 16) + (16 * 16 + 16) + (16 * 4 + 4)
    # a rerun skips finished cells
    stamp = (out / "runs/style/seeded/all/best.safetensors").stat().st_mtime_ns
    results2, _ = run_experiment(gfile, out)
    assert (out / "runs/style/seeded/all/best.safetensors").stat().st_mtime_ns == stamp
    pd.testing.assert_series_equal(results2["test_accuracy"], results["test_accuracy"], check_names=False)


def test_random_init_differs_from_pretrained():
    from artmem.classify.model import build_classifier

    a, _ = build_classifier("tiny_test", 3, init="pretrained")
    b, _ = build_classifier("tiny_test", 3, init="random")
    c, _ = build_classifier("tiny_test", 3, init="random")
    wa, wb, wc = (m.conv1[0].weight for m in (a, b, c))
    assert not torch.equal(wa, wb) and torch.equal(wb, wc)  # different, and seeded


@pytest.mark.slow
def test_demo_step_trains_kind_classifier(styles_collection, tmp_path):
    from artmem.classify.demo_step import demo_step

    coll = Collection.load(styles_collection)
    coll.table["kind"] = np.where(coll.table["style"].isin(["style_0", "style_1"]), "painting", "photo")
    written = demo_step(coll, tmp_path, device="cpu")
    assert tmp_path / "classify" / "predictions" / "predictions.parquet" in written
    m = json.loads((tmp_path / "classify" / "run" / "metrics.json").read_text())
    assert m["class_names"] == ["painting", "photo"] and m["test_accuracy"] >= 0.75


def test_table2_never_compares_one_architecture_with_another():
    from artmem.classify.experiment import table2

    results = pd.DataFrame({
        "task": ["style"] * 4, "scenario": ["all"] * 4,
        "init": ["imagenet", "random", "memnet", "memnet_random"],
        "model": ["efficientnet_lite0", "efficientnet_lite0", "resmem_alexnet", "resmem_alexnet"],
        "test_accuracy": [0.8, 0.4, 0.6, 0.3],
    })
    t = table2(results, "all", ["imagenet", "random", "memnet", "memnet_random"])
    eff, alex = t.loc[("style", "EfficientNet-Lite0")], t.loc[("style", "CaffeNet/AlexNet")]
    assert np.isnan(eff["memnet"]) and np.isnan(alex["imagenet"])
    assert eff["variance_of_accuracies"] == pytest.approx(np.var([0.8, 0.4]))
    assert alex["variance_of_accuracies"] == pytest.approx(np.var([0.6, 0.3]))


def test_presets_are_one_flag_away_and_recorded(styles_collection, tmp_path):
    from artmem.classify.config import PRESETS, resolve_config

    cfg = resolve_config(overrides={"preset": "cetinic2018", "epochs": 3})
    assert (cfg.lr, cfg.schedule, cfg.batch_size, cfg.optimizer, cfg.weight_decay) == (1e-4, "constant", 256,
                                                                                       "sgd", 5e-4)
    assert cfg.epochs == 3 and cfg.preset == "cetinic2018"  # flags override the preset
    yu = resolve_config(overrides={"preset": "yu2017"})
    assert yu.uses_frozen_features() and yu.head == "mlp" and yu.finetune_last and yu.optimizer == "adam"
    assert resolve_config().preset is None and resolve_config().lr == 1e-3  # fast defaults stay
    with pytest.raises(Exception, match="unknown preset"):
        resolve_config(overrides={"preset": "nope"})
    assert set(PRESETS) == {"cetinic2018", "cetinic2018_fast", "yu2017"}
    out = tmp_path / "run"
    assert main(["train", str(styles_collection), "-o", str(out), "--model", "tiny_test", "--label", "style", "--preset",
                 "cetinic2018_fast", "--epochs", "1", "--batch-size", "16", "--cache-size", "36",
                 "--device", "cpu", "--num-workers", "0"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["preset"] == "cetinic2018_fast" and saved["lr"] == 1e-3 and saved["step_size"] == 5
