"""Model files are safe to share: safetensors + JSON, builders by registry name, pickles only on --trust."""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from artmem.cli import main
from artmem.errors import ArtmemError
from artmem.models.checkpoint import LegacyCheckpointError, load_checkpoint, save_checkpoint
from artmem.models.convert import convert_run
from artmem.models.factory import create_model
from artmem.models.registry import build_model, get_pretrained_cfg

SRC = Path(__file__).resolve().parents[2] / "src"
OLD_MLP_WRAPPER = "artmem.classify.model:wrap_mlp_head"  # what older artmem wrote into configs
OLD_SCORER_WRAPPER = "artmem.memorability.heads:build_scorer"


class WritesMarker:
    """Unpickling this object calls open(marker, "w"): a stand-in for any code a pickle can run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def crafted_run(tmp_path):
    """A run folder whose best.pt, once unpickled, writes `marker`."""
    run, marker = tmp_path / "mailed-run", tmp_path / "MARKER"
    run.mkdir()
    torch.save({"model": WritesMarker(marker), "config": {"base_model": "tiny_test", "num_classes": 3},
                "class_names": ["a", "b", "c"]}, run / "best.pt")
    return run, marker


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_a_crafted_checkpoint_runs_no_code_anywhere(crafted_run, synthetic_collection, tmp_path, capsys):
    from artmem.web.app import create_app

    run, marker = crafted_run
    coll = str(synthetic_collection.root)
    assert main(["score", coll, "--model", str(run), "-o", str(tmp_path / "s"), "--device", "cpu"]) == 2
    assert "artmem models convert" in _one_line_error(capsys)
    assert main(["predict", coll, "--run", str(run), "-o", str(tmp_path / "p"), "--device", "cpu"]) == 2
    assert f"artmem models convert {run} --trust" in _one_line_error(capsys)
    for path in (run, run / "best.pt"):
        with pytest.raises(LegacyCheckpointError, match="--trust"):
            create_model(path)
    with pytest.raises(LegacyCheckpointError):
        create_app(synthetic_collection, model=None, runs=[str(run)], device="cpu", background=False)
    assert main(["models", "convert", str(run)]) == 2  # no --trust: refused before reading
    assert "--trust" in _one_line_error(capsys)
    assert not marker.exists()
    # the file is live: with --trust (the user vouching for it) unpickling does run its code
    with pytest.raises(ArtmemError, match="not an artmem checkpoint"):
        convert_run(run, trust=True)
    assert marker.exists()


def test_a_crafted_description_names_no_code(tmp_path, synthetic_collection, capsys):
    model = build_model("tiny_test", num_classes=3)
    good = save_checkpoint(tmp_path / "good" / "best.safetensors", model,
                           {"base_model": "tiny_test", "num_classes": 3})
    cases = {
        "wrapper": {"wrapper": "os:system"},
        "base_model": {"base_model": "../good"},
        "num_classes": {"num_classes": "3; rm -rf"},
    }
    for name, change in cases.items():
        run = tmp_path / name
        run.mkdir()
        (run / "best.safetensors").write_bytes(good.read_bytes())
        meta = json.loads(good.with_suffix(".json").read_text())
        meta["config"].update(change)
        (run / "best.json").write_text(json.dumps(meta))
        with pytest.raises(ArtmemError, match=r"best\.json"):
            create_model(run)
        assert main(["score", str(synthetic_collection.root), "--model", str(run), "-o",
                     str(tmp_path / f"out-{name}"), "--device", "cpu"]) == 2
        err = _one_line_error(capsys)
        assert str(run / "best.json") in err and name in err, err


def _old_classifier_run(run: Path, seed: int = 0):
    """A classifier run folder as artmem wrote it before safetensors: torch.save of the dict."""
    from artmem.classify.model import build_classifier

    model, ckpt = build_classifier("tiny_test", 3, seed=seed, head="mlp", head_width=8)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))  # "trained": not the builder's initial weights
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2)
    ckpt["wrapper"] = OLD_MLP_WRAPPER
    run.mkdir(parents=True)
    for name in ("best", "last"):
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "epoch": 3, "config": dict(ckpt),
                    "class_names": ["style_0", "style_1", "style_2"], "scaler": None,
                    "best_value": np.float64(0.75), "best_epoch": 3}, run / f"{name}.pt")
    return model.eval(), optimizer


def test_an_old_run_gets_the_message_then_converts_to_the_same_predictions(
        tmp_path, synthetic_collection, capsys):
    from artmem.classify.predict import predict

    run = tmp_path / "old-run"
    old_model, old_optimizer = _old_classifier_run(run)
    with pytest.raises(LegacyCheckpointError, match=r"old-run --trust"):
        create_model(run)
    assert main(["models", "convert", str(run), "--trust"]) == 0
    out = capsys.readouterr().out.split()
    assert out == [str(run / f"{n}{s}") for n in ("best", "last") for s in (".safetensors", ".json")]
    meta = json.loads((run / "best.json").read_text())
    assert meta["config"]["wrapper"] == "mlp_head" and meta["best_value"] == 0.75

    new_model = create_model(run)
    x = torch.randn(5, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(new_model(x), old_model(x), rtol=0, atol=0)
    assert new_model.pretrained_cfg.class_names == ("style_0", "style_1", "style_2")
    # `artmem predict` on the converted run == on the same weights saved natively in the new format
    native = tmp_path / "native"
    save_checkpoint(native / "best.safetensors", old_model, json.loads((run / "best.json").read_text())["config"],
                    class_names=["style_0", "style_1", "style_2"])
    _, probs_converted, _ = predict(synthetic_collection, run, device="cpu", num_workers=0)
    _, probs_native, _ = predict(synthetic_collection, native, device="cpu", num_workers=0)
    pd.testing.assert_frame_equal(probs_converted, probs_native)
    # the optimizer state for --resume came along, readable with weights_only=True
    state = load_checkpoint(run / "last.safetensors")
    assert state["epoch"] == 3
    fresh = torch.optim.SGD(new_model.parameters(), lr=0.1, momentum=0.9)
    fresh.load_state_dict(state["optimizer"])
    for a, b in zip(fresh.state_dict()["state"].values(), old_optimizer.state_dict()["state"].values(),
                    strict=True):
        torch.testing.assert_close(a["momentum_buffer"], b["momentum_buffer"])


def test_an_old_memorability_run_converts(tmp_path):
    from artmem.memorability.heads import WRAPPER, build_scorer

    config = {"base_model": "tiny_test", "num_classes": None, "wrapper": WRAPPER, "layer": "fc",
              "second_model": None, "layer2": None, "kind": "regression", "thresholds": [],
              "head_type": "mlp", "head_dim": 16, "head_out": 1, "hidden": [4], "dropout": 0.0,
              "n_support": 0, "frozen_backbone": True, "name": "memorability"}
    scorer = build_scorer(build_model("tiny_test"), config)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in scorer.head.parameters():
            p.copy_(torch.randn_like(p))
    run = tmp_path / "mem-run"
    (run / "fold_1").mkdir(parents=True)
    old = {"model": scorer.state_dict(), "optimizer": None, "scheduler": None, "epoch": None,
           "config": {**config, "wrapper": OLD_SCORER_WRAPPER}, "class_names": None}
    torch.save(old, run / "model.pt")
    torch.save(old, run / "fold_1" / "model.pt")
    written = convert_run(run, trust=True)
    assert written == [run / "fold_1" / "model.safetensors", run / "model.safetensors"]
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(create_model(run)(x), scorer.eval()(x), rtol=0, atol=0)


def test_no_unsafe_loading_or_python_eval_in_the_source():
    hits = subprocess.run(["grep", "-rn", r'weights_only=False\|engine="python"', str(SRC)],
                          capture_output=True, text=True)
    assert hits.returncode == 1 and hits.stdout == "", hits.stdout


def test_builders_reject_unused_arguments_and_carry_their_entry_cfg():
    for name in ("tiny_test", "hybrid_cnn"):
        assert create_model(name).pretrained_cfg == get_pretrained_cfg(name)
    with pytest.raises(ArtmemError, match="does not take dropout"):
        create_model("tiny_test", dropout=0.1)
    with pytest.raises(ArtmemError, match="does not take colour"):
        create_model("hybrid_cnn", colour=True)
    with pytest.raises(ArtmemError, match="takes no seed"):
        create_model(Path("somewhere") / "best.safetensors", seed=1)
    assert create_model("tiny_test", seed=2).pretrained_cfg.name == "tiny_test"


def _artmem_imports(module: Path) -> set[str]:
    """Every artmem module `module` imports, at the top or inside a function."""
    tree = ast.parse(module.read_text())
    names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return {n for n in names if n.startswith("artmem")}


def test_create_model_is_one_door_and_the_import_circle_is_gone():
    import artmem

    assert artmem.create_model is create_model and "tiny_test" in artmem.list_models()
    models = SRC / "artmem" / "models"
    assert _artmem_imports(models / "registry.py") == {"artmem.errors"}
    assert not {"artmem.models.factory", "artmem.models.convert"} & _artmem_imports(models / "checkpoint.py")
