"""The explorer's background scoring with --precision int8: the same ONNX Runtime path as `artmem score`."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient


def test_background_scoring_in_int8(web_coll, engine, tmp_path, monkeypatch):
    from artmem.batch.api import score
    from artmem.web.app import create_app

    monkeypatch.setenv("ARTMEM_CACHE", str(tmp_path / "cache"))
    with TestClient(create_app(web_coll, engine=engine, background=False, precision="int8")) as c:
        status = c.get("/api/status").json()
    assert status["indexing"]["state"] == "complete" and status["scores"]["scored"] == 24
    assert "int8" in status["scores"]["source"]
    # the values are those of an int8 score/extract job over the same collection
    ref = score(web_coll, "tiny_test", precision="int8", num_workers=0, progress=False)
    app = create_app(web_coll, engine=engine, background=False, precision="int8")
    with TestClient(app) as c:
        got = [c.get(f"/api/artwork/{i}").json()["score"] for i in range(24)]
    by_path = dict(zip(ref["path"], ref["score"], strict=True))
    np.testing.assert_allclose(got, [by_path[p] for p in web_coll.paths], atol=1e-6)
