"""Batch jobs: scoring/extraction equal the model's own forward, shards, kill-and-resume, bad images, CLI."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from artmem.batch.api import extract, score
from artmem.batch.engines.local import run_local
from artmem.batch.job import JobSpec, finished_shards
from artmem.batch.processors import ModelProcessor
from artmem.batch.results import read_errors, read_features, read_scores
from artmem.cli import main
from artmem.data.collection import Collection
from artmem.data.images import load_image
from artmem.errors import ArtmemError
from artmem.models import create_model
from artmem.models.transforms import build_transform


def _reference(collection, layer=None):
    """Naive loop: one image at a time through the tiny model."""
    model = create_model("tiny_test")
    tf = build_transform(model.pretrained_cfg)
    out = {}
    with torch.inference_mode():
        for rel in sorted(collection.paths):
            x = tf(load_image(collection.abs_path(rel)))[None]
            y = model(x) if layer is None else model.extract(x, [layer])[layer]
            out[rel] = y[0].numpy()
    return out


@pytest.fixture
def flawed_collection(tmp_path):
    """12 synthetic images plus a garbage file, a truncated JPEG and a missing file."""
    from artmem.data.synthetic import make_synthetic_collection

    coll = make_synthetic_collection(tmp_path / "c", n_styles=2, n_genres=2, per_class=3, size=48, seed=1)
    root = tmp_path / "c"
    (root / "garbage.jpg").write_bytes(b"not an image at all")
    good = (root / coll.paths[0]).read_bytes()
    (root / "truncated.jpg").write_bytes(good[: len(good) // 3])
    extra = pd.DataFrame({"path": ["garbage.jpg", "truncated.jpg", "missing.jpg"]})
    table = pd.concat([coll.table[["path"]], extra], ignore_index=True)
    c = Collection(table, str(root), name="flawed")
    c.save(tmp_path / "coll")
    return c, tmp_path / "coll" / "collection.parquet"


def test_score_equals_per_image_forward(synthetic_collection, tmp_path):
    df = score(synthetic_collection, "tiny_test", tmp_path / "out", shard_size=16, num_workers=0, progress=False)
    ref = _reference(synthetic_collection)
    assert df["path"].tolist() == sorted(ref)
    np.testing.assert_allclose(df["score"].to_numpy(), [float(ref[p]) for p in df["path"]], atol=1e-6)
    assert len(finished_shards(tmp_path / "out", "scores")) == 3  # 48 images / 16
    on_disk = read_scores(tmp_path / "out")
    pd.testing.assert_frame_equal(on_disk[["path", "score"]], df)
    assert read_errors(tmp_path / "out").empty


def test_extract_layers_and_features_json(synthetic_collection, tmp_path):
    df = extract(synthetic_collection, "tiny_test", "conv2", tmp_path / "f", num_workers=1, batch_size=8,
                 progress=False)
    ref = _reference(synthetic_collection, "conv2")
    fs = read_features(tmp_path / "f")
    assert fs.meta["model"] == "tiny_test" and fs.meta["layer"] == "conv2" and fs.meta["dim"] == 16
    assert fs.paths == df["path"].tolist() == sorted(ref)
    np.testing.assert_allclose(fs.vectors, np.stack([ref[p] for p in fs.paths]), atol=1e-6)
    default = extract(synthetic_collection, "tiny_test", None, None, num_workers=0, progress=False)
    assert len(default["embedding"][0]) == 16  # default layer fc


def test_kill_after_first_shard_then_resume(synthetic_collection, tmp_path):
    full = score(synthetic_collection, "tiny_test", tmp_path / "full", shard_size=10, num_workers=0,
                 progress=False)

    class Killed(Exception):
        pass

    def kill(result):
        raise Killed(result.shard_id)

    spec = JobSpec(synthetic_collection, ModelProcessor("tiny_test"), tmp_path / "job", shard_size=10, device="cpu")
    with pytest.raises(Killed):
        run_local(spec, batch_size=4, num_workers=1, progress=False, on_shard_done=kill)
    assert list(finished_shards(tmp_path / "job", "scores")) == [0]
    partial = read_scores(tmp_path / "job")  # readable before the merge: the finished shard
    assert len(partial) == 10
    spec2 = JobSpec(synthetic_collection, ModelProcessor("tiny_test"), tmp_path / "job", shard_size=10, device="cpu")
    result = run_local(spec2, batch_size=4, num_workers=0, progress=False)
    assert result.n_resumed == 10 and result.n_processed == len(full) - 10
    assert list(finished_shards(tmp_path / "job", "scores")) == [0, 1, 2, 3, 4]
    resumed = read_scores(tmp_path / "job")
    assert not resumed["path"].duplicated().any()
    pd.testing.assert_frame_equal(resumed[["path", "score"]], full, atol=1e-7)
    # shard files hold every image exactly once
    rows = pd.concat([pd.read_parquet(f) for f in finished_shards(tmp_path / "job", "scores").values()])
    assert len(rows) == len(full) and rows["path"].is_unique
    # a rerun has nothing left to do
    again = run_local(spec2, batch_size=4, num_workers=0, progress=False)
    assert again.n_processed == 0 and len(again.table) == len(full)


def test_bad_images_reported_and_skipped(flawed_collection, tmp_path, capsys):
    coll, coll_file = flawed_collection
    out = tmp_path / "out"
    rc = main(["score", str(coll_file), "--model", "tiny_test", "-o", str(out), "--workers", "0",
               "--shard-size", "5", "--no-progress"])
    assert rc == 0
    captured = capsys.readouterr()
    assert str(out / "scores.parquet") in captured.out.split()
    assert "3 image(s) could not be read" in captured.err
    scores = read_scores(out)
    assert len(scores) == 12 and scores["score"].notna().all()
    errors = read_errors(out).set_index("path")["reason"]
    assert sorted(errors.index) == ["garbage.jpg", "missing.jpg", "truncated.jpg"]
    assert all(isinstance(r, str) and r for r in errors)
    # resume retries the failed images (they may have been fixed) without duplicating any row
    shutil.copy(coll.abs_path(coll.paths[1]), coll.abs_path("garbage.jpg"))
    assert main(["score", str(coll_file), "--model", "tiny_test", "-o", str(out), "--workers", "0",
                 "--no-progress"]) == 0
    scores = read_scores(out)
    assert len(scores) == 13 and scores["path"].is_unique
    assert sorted(read_errors(out)["path"]) == ["missing.jpg", "truncated.jpg"]


def test_other_job_in_same_folder_needs_no_resume(synthetic_collection, tmp_path):
    out = tmp_path / "f"
    extract(synthetic_collection, "tiny_test", "conv1", out, num_workers=0, progress=False)
    with pytest.raises(ArtmemError, match="--no-resume"):
        extract(synthetic_collection, "tiny_test", "conv2", out, num_workers=0, progress=False)
    extract(synthetic_collection, "tiny_test", "conv2", out, num_workers=0, resume=False, progress=False)
    fs = read_features(out)
    assert fs.meta["layer"] == "conv2" and fs.vectors.shape == (len(synthetic_collection), 16)


def test_cli_user_errors_exit_2(synthetic_collection, tmp_path, capsys):
    coll = str(tmp_path / "nope")
    assert main(["score", coll, "--model", "tiny_test", "-o", str(tmp_path / "o")]) == 2
    src = synthetic_collection.root
    assert main(["score", src, "--model", "no_such_model", "-o", str(tmp_path / "o")]) == 2
    assert main(["score", src, "--model", "magenta_style", "-o", str(tmp_path / "o")]) == 2
    assert "not a memorability score" in capsys.readouterr().err
    assert main(["extract", src, "--model", "tiny_test", "--layer", "fc9", "-o", str(tmp_path / "o")]) == 2
    if importlib.util.find_spec("artmem.batch.engines.ray") is None:
        assert main(["score", src, "--model", "tiny_test", "--engine", "ray", "-o", str(tmp_path / "o")]) == 2


def test_trained_checkpoint_path_as_model(synthetic_collection, tmp_path):
    from artmem.models.checkpoint import save_checkpoint

    model = create_model("tiny_test", seed=3)
    ckpt = save_checkpoint(tmp_path / "run" / "best.safetensors", model, {"base_model": "tiny_test", "num_classes": 1})
    df = score(synthetic_collection, str(ckpt), tmp_path / "o", num_workers=0, progress=False)
    tf = build_transform(model.pretrained_cfg)
    x = torch.stack([tf(load_image(synthetic_collection.abs_path(p))) for p in df["path"][:4]])
    with torch.inference_mode():
        np.testing.assert_allclose(df["score"][:4].to_numpy(), model(x).numpy(), atol=1e-6)


def test_onnx_backend_matches_torch_and_is_cached(synthetic_collection, tmp_path, monkeypatch):
    monkeypatch.setenv("ARTMEM_CACHE", str(tmp_path / "cache"))
    a = score(synthetic_collection, "tiny_test", None, backend="torch", num_workers=0, progress=False)
    b = score(synthetic_collection, "tiny_test", None, backend="onnx", num_workers=0, progress=False)
    np.testing.assert_allclose(a["score"].to_numpy(), b["score"].to_numpy(), atol=1e-5)
    files = list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    score(synthetic_collection, "tiny_test", None, backend="onnx", num_workers=0, progress=False)
    assert files[0].stat().st_mtime_ns == stamp  # exported once, reused


@pytest.mark.slow  # loads a big pretrained network
def test_resmem_job_equals_package_forward_both_backends(real_images, tmp_path, monkeypatch):
    """End to end on real photos: `score` (ONNX and torch) equals the package's own forward."""
    from PIL import Image
    from resmem import ResMem, transformer

    monkeypatch.setenv("ARTMEM_CACHE", str(tmp_path / "cache"))
    paths = [p for p, s in real_images.items() if s != "madonna"][:2] + [
        p for p, s in real_images.items() if s == "madonna"][:1]
    root = tmp_path / "imgs"
    root.mkdir()
    for p in paths:
        shutil.copy(p, root / p.name)
    with pytest.warns(UserWarning):
        ref_model = ResMem(pretrained=True).eval()
    with torch.inference_mode():
        ref = {p.name: float(ref_model(transformer(Image.open(p).convert("RGB")).view(-1, 3, 227, 227)))
               for p in paths}
    for backend in ("onnx", "torch"):
        df = score(str(root), "resmem", None, backend=backend, num_workers=0, batch_size=3, progress=False)
        np.testing.assert_allclose(df["score"].to_numpy(), [ref[p] for p in df["path"]], atol=1e-5)


def test_demo_step_writes_analysis_folder_layout(synthetic_collection, tmp_path):
    """Scores in out/scores and features in out/features from one pass (tiny model for speed)."""
    from artmem.batch.demo_step import demo_step

    written = demo_step(synthetic_collection, tmp_path, "cpu", model="tiny_test", layer="fc")
    names = {p.relative_to(tmp_path).as_posix() for p in written}
    assert {"scores/scores.parquet", "scores/errors.parquet", "features/features.parquet",
            "features/features.json"} <= names
    scores, fs = read_scores(tmp_path / "scores"), read_features(tmp_path / "features")
    assert scores["path"].tolist() == fs.paths and len(fs) == len(synthetic_collection)
    assert not (tmp_path / "features" / "scores.parquet").exists()
    ref = _reference(synthetic_collection)
    np.testing.assert_allclose(scores["score"].to_numpy(), [float(ref[p]) for p in fs.paths], atol=1e-6)
    np.testing.assert_allclose(fs.vectors, np.stack([v for v in _reference(synthetic_collection, "fc").values()]),
                               atol=1e-6)
