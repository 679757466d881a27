"""Shared fixtures: small synthetic collections in tmp folders and the bundled real images."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synthetic_collection(tmp_path_factory):
    """3 styles x 2 genres x 8 images, 64 px, saved with collection.parquet (read-only: copy to modify)."""
    from artmem.data.synthetic import make_synthetic_collection

    root = tmp_path_factory.mktemp("synthetic")
    return make_synthetic_collection(root, n_styles=3, n_genres=2, per_class=8, size=64, seed=0)


@pytest.fixture(scope="session")
def real_images() -> dict[Path, str]:
    """Bundled real images (Raphael copies + scikit-image + scikit-learn photos) -> subject."""
    from artmem.data.samples import real_photos

    photos = real_photos()
    if len(photos) < 10:
        pytest.skip("bundled sample images are missing (run `make setup`)")
    return photos


@pytest.fixture(autouse=True, scope="session")
def accept_testserver_host():
    """TestClient sends `Host: testserver`; only tests accept that name (a served app never does).
    Session-scoped so that it is in place before the module-scoped apps are built."""
    from artmem.web import app as web_app
    from artmem.web.middleware import allowed_hosts

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(web_app, "allowed_hosts", lambda host: [*allowed_hosts(host), "testserver"])
        yield
