"""Memorability training's passes over images are batch jobs: errors survive decoding workers."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import torch

from artmem.data.collection import Collection
from artmem.memorability.train import train_predictor
from artmem.memorability.train_plan import TrainConfig


def _with_broken_images(coll: Collection, tmp_path) -> tuple[Collection, list[str]]:
    root = tmp_path / "imgs"
    shutil.copytree(coll.root, root)
    broken = [coll.paths[3], coll.paths[20]]
    (root / broken[0]).write_bytes(b"")  # empty file
    data = (root / broken[1]).read_bytes()
    (root / broken[1]).write_bytes(data[: len(data) // 3])  # cut JPEG
    return Collection(coll.table.copy(), str(root), "broken"), broken


def test_unreadable_images_reach_errors_with_workers(synthetic_collection, tmp_path):
    """Before, the frozen-feature pass collected errors in a collate closure that ran in the
    DataLoader worker processes: with workers > 0 errors.parquet stayed empty."""
    coll, broken = _with_broken_images(synthetic_collection, tmp_path)
    run = tmp_path / "run"
    m = train_predictor(coll, run, TrainConfig(method="ridge", model="tiny_test", layer="conv3", folds=2,
                                               score_column="true_memorability", device="cpu",
                                               num_workers=2, batch_size=4))
    errors = pd.read_parquet(run / "errors.parquet")
    assert sorted(errors["path"]) == sorted(broken) and errors["reason"].str.len().gt(0).all()
    assert m["unreadable"] == 2 and m["n_images"] == len(coll) - 2
    # the features are a job folder: the readable images, each equal to the model's own forward
    from artmem.batch.results import read_features
    from artmem.models.factory import create_model
    from artmem.models.transforms import build_transform

    fs = read_features(run / "features")
    assert (fs.meta["model"], fs.meta["layer"]) == ("tiny_test", "conv3")
    assert set(fs.paths) == set(coll.paths) - set(broken)
    net = create_model("tiny_test")
    tf = build_transform(net.pretrained_cfg)
    from artmem.data.images import load_image

    with torch.inference_mode():
        for p in fs.paths[:3]:
            want = net.extract(tf(load_image(coll.abs_path(p)))[None], ["conv3"])["conv3"][0].numpy()
            np.testing.assert_allclose(fs.select([p]).vectors[0], want, atol=1e-5)


def test_finetuned_fold_scores_list_unreadable_images(synthetic_collection, tmp_path):
    coll, broken = _with_broken_images(synthetic_collection, tmp_path)
    run = tmp_path / "ft"
    train_predictor(coll, run, TrainConfig(method="regression", finetune=True, model="tiny_test", folds=2,
                                           epochs=1, score_column="true_memorability", device="cpu",
                                           num_workers=2, batch_size=8, refit=False))
    errors = pd.read_parquet(run / "errors.parquet")
    assert sorted(errors["path"]) == sorted(broken)
    pred = pd.read_parquet(run / "predictions.parquet").set_index("path")
    assert pred.loc[broken, "score_pred"].isna().all()
    assert pred.drop(index=broken)["score_pred"].notna().all()


def test_rerun_in_the_same_folder_with_another_layer_recomputes(synthetic_collection, tmp_path):
    from artmem.batch.results import read_features

    run = tmp_path / "run"
    fast = dict(method="ridge", model="tiny_test", folds=2, score_column="true_memorability", device="cpu")
    train_predictor(synthetic_collection, run, TrainConfig(layer="conv3", **fast))
    assert read_features(run / "features").meta["layer"] == "conv3"
    train_predictor(synthetic_collection, run, TrainConfig(layer="fc", **fast))
    fs = read_features(run / "features")
    assert fs.meta["layer"] == "fc" and fs.dim == 16 and len(fs) == len(synthetic_collection)
