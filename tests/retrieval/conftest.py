"""Fixtures for retrieval tests: seeded vector stores and a small indexed synthetic collection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def make_store(n=300, dim=32, seed=0, clustered=False, labels=True):
    from artmem.retrieval.store import FeatureStore, l2_normalize
    from artmem.retrieval.synthetic import clustered_vectors

    rng = np.random.default_rng(seed)
    if clustered:
        v, lab = clustered_vectors(n, dim, n_clusters=12, latent_dim=8, seed=seed)
    else:
        v, lab = rng.normal(size=(n, dim)).astype(np.float32), rng.integers(0, 4, n)
    items = pd.DataFrame({"path": [f"img/{i:05d}.jpg" for i in range(n)]})
    if labels:
        items["genre"] = np.where(np.arange(n) % 3 == 0, "portrait", "landscape")
        items["cluster"] = [f"c{x}" for x in lab]
        items["year"] = 1400 + np.arange(n) % 300
    return FeatureStore(items, l2_normalize(v), {"model": "synthetic", "layer": "x"})


@pytest.fixture
def store():
    return make_store()


@pytest.fixture(name="make_store")
def make_store_fixture():
    """The `make_store(n, dim, seed, clustered, labels)` factory."""
    return make_store


@pytest.fixture(scope="module")
def tiny_features(tmp_path_factory, synthetic_collection):
    """tiny_test fc features of the session's synthetic collection, in `artmem extract` layout."""
    from artmem.batch.api import extract

    out = tmp_path_factory.mktemp("tinyfeat")
    extract(synthetic_collection, "tiny_test", "conv3", out, device="cpu", num_workers=0, progress=False)
    return out
