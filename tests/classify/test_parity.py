"""One preprocessing per trained run: every consumer gives the same answer for the same file.

A trained classifier run: `artmem predict`, the Python `predict`, the web explorer's artwork page
and its upload answer give the same class probabilities (to 1e-5). A trained memorability run:
`artmem score --model RUN`, `artmem.score`, the explorer's background scoring (artwork page) and
its upload answer give the same score. The images include large and non-square JPEGs, where the
training cache's reduced-scale JPEG decoding and squashing differ from a zoo model's resize + crop.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from classify_helpers import tiny_config
from PIL import Image

from artmem.cli import main

pytest.importorskip("fastapi")


@pytest.fixture(scope="module")
def photo_coll(tmp_path_factory):
    """18 synthetic paintings of 3 styles saved as 160 px JPEGs, four of them made non-square."""
    from artmem.data.synthetic import make_synthetic_collection

    root = tmp_path_factory.mktemp("parity")
    coll = make_synthetic_collection(root, n_styles=3, n_genres=1, per_class=6, size=160, seed=3)
    for rel, size in zip(coll.paths[::5], [(220, 130), (120, 200), (301, 97), (90, 250)], strict=False):
        img = Image.open(coll.abs_path(rel)).convert("RGB").resize(size)
        img.save(coll.abs_path(rel), quality=90)
    return coll


def _client(coll, **kw):
    from fastapi.testclient import TestClient

    from artmem.web.app import create_app

    return TestClient(create_app(coll, device="cpu", background=False, maps=False, **kw))


def test_classifier_run_same_probabilities_everywhere(photo_coll, tmp_path):
    from artmem.classify.predict import predict
    from artmem.classify.train import train_classifier

    run = tmp_path / "run"
    train_classifier(photo_coll, run, tiny_config(epochs=1, cache_size=36, frozen_features="off"))
    coll_file = tmp_path / "coll"
    photo_coll.save(coll_file)
    assert main(["predict", str(coll_file / "collection.parquet"), "--run", str(run), "-o",
                 str(tmp_path / "pred"), "--device", "cpu"]) == 0
    cli = pd.read_parquet(tmp_path / "pred" / "probabilities.parquet").set_index("path")
    classes = [line.split("\t") for line in (tmp_path / "pred" / "classes.txt").read_text().splitlines()]
    col_of = {name: col for col, name in classes}
    _, api, _ = predict(photo_coll, run, device="cpu", num_workers=2, batch_size=4, progress=False)
    api = api.set_index("path")
    np.testing.assert_allclose(api.loc[cli.index].to_numpy(), cli.to_numpy(), atol=1e-5)
    # the run's own test-set evaluation, made from the training cache, agrees too
    test_pred = pd.read_parquet(run / "test_predictions.parquet").set_index("path")
    np.testing.assert_allclose(test_pred["prob"], cli.loc[test_pred.index].max(axis=1), atol=1e-5)

    with _client(photo_coll, model=None, runs=[str(run)]) as c:
        for i, rel in enumerate(photo_coll.paths):
            if i % 3:
                continue
            page = c.get(f"/api/artwork/{i}").json()
            assert page["path"] == rel
            top = page["predictions"][0]["top"]
            assert len(top) == len(classes)
            for t in top:
                assert t["prob"] == pytest.approx(float(cli.loc[rel, col_of[t["label"]]]), abs=1e-5)
            body = open(photo_coll.abs_path(rel), "rb").read()
            up = c.post("/api/upload", files={"file": ("x.jpg", body, "image/jpeg")}).json()
            for t in up["labels"][0]["top"]:
                assert t["prob"] == pytest.approx(float(cli.loc[rel, col_of[t["label"]]]), abs=1e-5)


def test_memorability_run_same_scores_everywhere(photo_coll, tmp_path):
    import artmem
    from artmem.memorability.train import train_predictor
    from artmem.memorability.train_plan import TrainConfig

    table = photo_coll.table.assign(true_memorability=np.linspace(0.3, 0.9, len(photo_coll)))
    from artmem.data.collection import Collection

    coll = Collection(table, photo_coll.root, "parity")
    run = tmp_path / "mem"
    train_predictor(coll, run, TrainConfig(method="ridge", model="tiny_test", layer="conv3", folds=2,
                                           score_column="true_memorability", device="cpu"))
    model = str(run / "model.safetensors")
    coll_file = tmp_path / "coll"
    coll.save(coll_file)
    assert main(["score", str(coll_file / "collection.parquet"), "--model", model, "-o", str(tmp_path / "s"),
                 "--device", "cpu", "--workers", "0", "--no-progress"]) == 0
    cli = pd.read_parquet(tmp_path / "s" / "scores.parquet").set_index("path")["score"]
    api = artmem.score(coll, model, device="cpu", num_workers=2, batch_size=5, progress=False).set_index("path")
    np.testing.assert_allclose(api.loc[cli.index, "score"], cli, atol=1e-5)
    with _client(coll, model=model) as c:  # no scores table: the background job scores the collection
        for i, rel in enumerate(coll.paths):
            if i % 3:
                continue
            page = c.get(f"/api/artwork/{i}").json()
            assert page["score"] == pytest.approx(float(cli[rel]), abs=1e-5)
            body = open(coll.abs_path(rel), "rb").read()
            up = c.post("/api/upload", files={"file": ("x.jpg", body, "image/jpeg")}).json()
            assert up["score"] == pytest.approx(float(cli[rel]), abs=1e-5)
