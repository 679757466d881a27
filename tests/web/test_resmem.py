"""The explorer with the real ResMem weights agrees with the batch jobs (slow: real network on CPU)."""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.slow


def test_resmem_upload_matches_batch_jobs(real_images, tmp_path):
    """An uploaded image gets the score `artmem score` gave it, and its own collection copy comes
    first among the similar artworks (same network, layer and preprocessing as `artmem extract`)."""
    from artmem.batch.api import extract, score
    from artmem.data.collection import open_collection
    from artmem.web.app import create_app

    picked = sorted(real_images.items())[:4]
    root = tmp_path / "coll"
    for i, (path, subject) in enumerate(picked):
        (root / subject.replace(" ", "_")).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / subject.replace(" ", "_") / f"{i}_{path.name}")
    coll = open_collection(root)
    res = tmp_path / "analysis"
    table = score(coll, "resmem", res / "scores", device="cpu", num_workers=0, progress=False)
    extract(coll, "resmem", None, res / "features", device="cpu", num_workers=0, progress=False)
    app = create_app(coll, results=res, model="resmem", device="cpu", background=False, maps=False)
    with TestClient(app) as c:
        rel = coll.paths[1]
        want = float(table.set_index("path").loc[rel, "score"])
        r = c.post("/api/upload", files={"file": ("x.jpg", (root / rel).read_bytes(), "image/jpeg")})
        assert r.status_code == 200, r.text
        res_json = r.json()
        assert res_json["score"] == pytest.approx(want, abs=2e-3)
        assert res_json["similar"][0]["path"] == rel
        assert res_json["similar"][0]["similarity"] == pytest.approx(1.0, abs=1e-3)
        a = c.get("/api/artwork/1").json()
        assert a["score"] == pytest.approx(want) and a["n_scored"] == 4
