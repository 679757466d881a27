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
