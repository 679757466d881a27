"""Web fixtures: a small synthetic collection with a full analysis folder, and a classifier run."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser_fixtures import browser, server, shots  # noqa: F401 (fixtures of the browser tests)
from PIL import Image
from web_helpers import CLASS_NAMES


@pytest.fixture(scope="session")
def web_coll(tmp_path_factory):
    """24 images (3 styles x 2 genres x 4), 64 px, in their own folder (tests may add files)."""
    from artmem.data.synthetic import make_synthetic_collection

    root = tmp_path_factory.mktemp("web_coll")
    return make_synthetic_collection(root, n_styles=3, n_genres=2, per_class=4, size=64, seed=1)


@pytest.fixture(scope="session")
def web_results(web_coll, tmp_path_factory):
    """An analysis folder: scores (known values, one image unscored), features, measures, maps,
    predictions. Built from plain arrays so the expected answers are known."""
    from artmem.batch.results import write_features, write_scores

    out = tmp_path_factory.mktemp("web_results")
    paths = web_coll.paths
    rng = np.random.default_rng(0)
    scores = np.round(rng.uniform(0.4, 0.95, len(paths)), 4)
    # the last image has no score (as if unreadable at scoring time)
    write_scores(out / "scores", pd.DataFrame({"path": paths[:-1], "score": scores[:-1]}))
    vectors = rng.normal(size=(len(paths), 16)).astype(np.float32)
    write_features(out / "features", paths, vectors, {"model": "tiny_test", "layer": "fc"})
    pd.DataFrame({"path": paths, "edge_density": np.linspace(0, 1, len(paths)),
                  "symmetry": np.linspace(1, 0, len(paths))}).to_parquet(
        _mk(out / "measures") / "measures.parquet")
    maps = _mk(out / "maps" / "overlays")
    Image.new("RGB", (64, 64), (255, 0, 0)).save(maps / "first.png")
    pd.DataFrame({"path": [paths[0]], "map_npy": ["maps/first.npy"], "overlay_png": ["overlays/first.png"]}
                 ).to_parquet(out / "maps" / "maps.parquet")
    pd.DataFrame({"path": paths[:2], "label": ["style_0", "style_0"], "pred": ["style_0", "style_1"],
                  "prob": [0.9, 0.6]}).to_parquet(_mk(out / "predictions") / "predictions.parquet")
    return {"dir": out, "scores": dict(zip(paths[:-1], scores[:-1], strict=True)),
            "vectors": vectors, "paths": paths}


def _mk(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


@pytest.fixture(scope="session")
def classifier_run(tmp_path_factory):
    """A 3-class tiny_test classifier saved as a run folder (best.safetensors + best.json with class names)."""
    from artmem.models.checkpoint import save_checkpoint
    from artmem.models.factory import create_model

    run = tmp_path_factory.mktemp("runs") / "style-tiny"
    model = create_model("tiny_test", num_classes=3)
    save_checkpoint(run / "best.safetensors", model, {"base_model": "tiny_test", "num_classes": 3},
                    class_names=CLASS_NAMES)
    return run


@pytest.fixture(scope="session")
def engine(classifier_run):
    """One tiny_test engine (+ the classifier) shared by the apps of this folder."""
    from artmem.web.engine import Engine

    return Engine("tiny_test", [str(classifier_run)], "cpu", feature_model="tiny_test", feature_layer="fc")


@pytest.fixture
def coll_copy(web_coll, tmp_path):
    """A writable copy of the collection (root + collection.parquet) for tests that add files."""
    from artmem.data.collection import Collection

    root = tmp_path / "coll"
    shutil.copytree(web_coll.root, root)
    return Collection(web_coll.table.copy(), str(root), "copy")
