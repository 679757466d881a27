"""Memorability maps: crop/FCN grids against the naive per-crop loop, outputs, renderings, resume."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from artmem.cli import main
from artmem.memorability.maps import (
    MapConfig,
    MapModel,
    _interp_matrix,
    emphasis_masks,
    memorability_map,
    naive_grid,
)
from artmem.models.factory import create_model
from artmem.models.registry import list_models


def test_batched_crops_equal_naive_loop():
    mm = MapModel(create_model("tiny_test"), method="crops", stride=4)
    x = torch.rand(3, 48, 60)
    batched = mm.grid(x, batch_size=7)
    naive = naive_grid(mm.model, x, 32, 4)
    assert batched.shape == (5, 8) == naive.shape
    torch.testing.assert_close(batched, naive, rtol=1e-5, atol=1e-6)


def test_interpolation_weights_and_map_shape():
    m = _interp_matrix(50, 291, 227, 32, 3)
    np.testing.assert_allclose(m.sum(1), 1.0)
    assert m[0, 0] == 1.0 and m[-1, -1] == 1.0  # outside the window centres: nearest value
    mm = MapModel(create_model("tiny_test"))
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 80, 3), dtype=np.uint8))
    cfg = MapConfig(grids=(1, 3), map_size=64)
    mp = memorability_map(mm, img, cfg)
    assert mp.shape == (32, 64) and np.isfinite(mp).all()
    # a single-window scale gives a constant map equal to the model's score of the resized image
    one = memorability_map(mm, img.resize((32, 32)), MapConfig(grids=(1,), map_size=16))
    np.testing.assert_allclose(one, mm.score([img.resize((32, 32))])[0], rtol=1e-5)
    # the map follows the image: a bright square changes the map where it is
    masks = emphasis_masks(mp, (80, 40))
    assert set(masks) == {"high", "medium", "low"}
    np.testing.assert_allclose(masks["high"] + masks["low"], 1.0, atol=1e-5)
    assert 0.3 < masks["medium"].mean() < 0.7


def test_map_command_outputs_errors_and_resume(synthetic_collection, tmp_path, capsys):
    src = tmp_path / "imgs"
    src.mkdir()
    for p in synthetic_collection.abs_paths()[:2]:
        shutil.copy(p, src)
    (src / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "maps"
    args = ["memorability", "map", str(src), "-o", str(out), "--model", "tiny_test", "--grids", "1,2"]
    assert main(args) == 0
    table = pd.read_parquet(out / "maps.parquet")
    assert len(table) == 2
    assert {"path", "map_npy", "overlay_png", "score", "score_high", "score_medium", "score_low"} <= set(table.columns)
    for row in table.itertuples():
        assert np.load(out / row.map_npy).ndim == 2
        assert Image.open(out / row.overlay_png).size == Image.open(src / row.path).size
    errors = pd.read_parquet(out / "errors.parquet")
    assert errors["path"].tolist() == ["broken.jpg"]
    assert "maps.parquet" in capsys.readouterr().out
    stamp = (out / table.map_npy[0]).stat().st_mtime_ns
    assert main(args) == 0  # resume: nothing recomputed
    assert (out / table.map_npy[0]).stat().st_mtime_ns == stamp
    assert main(["memorability", "map", str(tmp_path / "nope.jpg"), "-o", str(out)]) == 2


@pytest.mark.slow  # loads a big pretrained network
@pytest.mark.skipif("resmem" not in list_models(), reason="resmem not registered")
def test_resmem_fully_convolutional_matches_model(real_images):
    model = create_model("resmem")
    mm = MapModel(model)
    assert mm.method == "fcn" and (mm.window, mm.stride) == (227, 32)
    img = Image.open(next(iter(real_images))).convert("RGB")
    x = mm.tensor(img, (227, 227))
    with torch.inference_mode():
        ref = model(x[None])
    torch.testing.assert_close(mm.grid(x).reshape(1), ref, rtol=1e-4, atol=1e-5)  # one window: exact
    x2 = mm.tensor(img, (259, 291))  # 2 x 3 windows of 227 px every 32 px
    fcn = mm.grid(x2)
    assert fcn.shape == (3, 2) and ((fcn > 0) & (fcn < 1)).all()
    # the top-left window sees real pixels to its right/bottom instead of zero padding, so it is
    # close to, not equal to, the model's score of that crop (bench/memmap.py measures agreement)
    with torch.inference_mode():
        corner = model(x2[None, :, :227, :227])
    assert abs(float(fcn[0, 0]) - float(corner)) < 0.15
