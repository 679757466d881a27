"""resmem_alexnet as a usable backbone: the fc6 moment matching (against a direct computation) and
a frozen-backbone classifier that learns a 4-style synthetic set with default settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def test_calibrate_fc6_matches_direct_moment_matching():
    from artmem.models.resmem_models import calibrate_fc6

    rng = np.random.default_rng(0)
    pool5 = np.maximum(rng.normal(size=(30, 9216)), 0) * 0.01
    res = rng.normal(size=(30, 1000)) * 1.5
    W = rng.normal(size=(8, 10216)) * 0.01
    b = rng.normal(size=8) * 0.1
    new_bias, gain = calibrate_fc6(*(torch.as_tensor(a) for a in (pool5, res, W, b)))
    za = pool5 @ W[:, :9216].T
    full = za + res @ W[:, 9216:].T + b
    z_new = gain * za + new_bias.double().numpy()
    # every unit keeps ResMem's mean; the average within-unit variance is ResMem's
    np.testing.assert_allclose(z_new.mean(0), full.mean(0), atol=1e-5)
    assert z_new.var(0, ddof=1).mean() == pytest.approx(full.var(0, ddof=1).mean(), rel=1e-6)
    assert gain == pytest.approx(np.sqrt(full.var(0, ddof=1).mean() / za.var(0, ddof=1).mean()), rel=1e-9)


@pytest.mark.slow
def test_resmem_alexnet_fc7_on_resmem_scale(real_images):
    from artmem.data.images import load_image
    from artmem.models.factory import create_model
    from artmem.models.transforms import build_transform

    alex, full = create_model("resmem_alexnet").eval(), create_model("resmem").eval()
    tf = build_transform(full.pretrained_cfg)
    x = torch.stack([tf(load_image(p)) for p in sorted(real_images)[:4]])
    with torch.inference_mode():
        a, r = alex.extract(x, ["fc7"])["fc7"], full.extract(x, ["fc7"])["fc7"]
    # before the calibration the branch's fc7 mean was ~25x below ResMem's (0.004 vs 0.10)
    assert 0.5 < float(a.mean() / r.mean()) < 2.0
    assert 0.5 < float(a.std() / r.std()) < 2.0


@pytest.mark.slow
def test_resmem_alexnet_only_last_learns_four_styles(tmp_path):
    from artmem.classify.config import resolve_config
    from artmem.classify.train import train_classifier
    from artmem.data.synthetic import make_synthetic_collection

    coll = make_synthetic_collection(tmp_path / "c", n_styles=4, n_genres=2, per_class=8, size=64, seed=0)
    cfg = resolve_config(overrides=dict(model="resmem_alexnet", label="style", scenario="only_last",
                                        device="cpu", num_workers=0))  # otherwise default settings
    result = train_classifier(coll, tmp_path / "run", cfg)
    assert result.metrics["test_accuracy"] >= 0.7  # chance 0.25 (it stayed there before)
    assert result.history["train_loss"].iloc[-1] < result.history["train_loss"].iloc[0] - 0.05
