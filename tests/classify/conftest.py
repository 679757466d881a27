"""Fixtures for the classification tests: a 4-style synthetic collection at 40 px."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def styles_collection(tmp_path_factory):
    """4 styles x 2 genres x 8 images (64 images, 40 px), saved as collection.parquet (read-only)."""
    from artmem.data.synthetic import make_synthetic_collection

    root = tmp_path_factory.mktemp("styles")
    make_synthetic_collection(root, n_styles=4, n_genres=2, per_class=8, size=40, seed=1)
    return root / "collection.parquet"


def tiny_config(**kw):
    """Fast settings for tiny_test on 32 px crops of a 36 px cache."""
    from artmem.classify.config import resolve_config

    base = dict(model="tiny_test", label="style", optimizer="adam", lr=0.01, weight_decay=0.0,
                schedule="constant", epochs=3, batch_size=16, cache_size=36, device="cpu", num_workers=0)
    base.update(kw)
    return resolve_config(overrides=base)
