"""The explorer's JSON API and pages, checked against naive recomputations on known data."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient
from web_helpers import CLASS_NAMES, png_bytes


@pytest.fixture(scope="module")
def client(web_coll, web_results, engine, tmp_path_factory):
    import shutil

    from artmem.web.app import create_app

    results = tmp_path_factory.mktemp("res_copy") / "analysis"
    shutil.copytree(web_results["dir"], results)  # uploads write here
    app = create_app(web_coll, results=results, engine=engine, background=False, per_page=10)
    with TestClient(app) as c:
        c.results_dir = results
        yield c


def _sorted_paths(scores: dict, ascending: bool) -> list[str]:
    items = sorted(scores.items(), key=lambda kv: kv[1], reverse=not ascending)
    return [p for p, _ in items]


def test_grid_sorted_both_directions_nan_last(client, web_results):
    scores = web_results["scores"]
    unscored = web_results["paths"][-1]
    desc = client.get("/api/collection", params={"per_page": 500}).json()
    assert [it["path"] for it in desc["items"]] == _sorted_paths(scores, False) + [unscored]
    asc = client.get("/api/collection", params={"per_page": 500, "order": "asc"}).json()
    assert [it["path"] for it in asc["items"]] == _sorted_paths(scores, True) + [unscored]
    assert desc["items"][-1]["score"] is None and desc["items"][-1]["percentile"] is None
    assert desc["total"] == 24 and desc["scored"] == 23


def test_grid_filter_and_pagination(client, web_coll, web_results):
    table = web_coll.table
    want = table[(table["style"] == "style_1") & (table["genre"] == "portrait")]["path"].tolist()
    r = client.get("/api/collection", params={"style": "style_1", "genre": "portrait", "per_page": 3}).json()
    assert r["total"] == len(want) == 4 and r["pages"] == 2 and len(r["items"]) == 3
    page2 = client.get("/api/collection", params={"style": "style_1", "genre": "portrait", "per_page": 3,
                                                  "page": 2}).json()
    got = [it["path"] for it in r["items"] + page2["items"]]
    assert sorted(got) == sorted(want)
    assert all(it["labels"]["style"] == "style_1" for it in r["items"])
    # a page past the end is clamped to the last one
    assert client.get("/api/collection", params={"page": 99}).json()["page"] == 3


def test_percentile_matches_naive(client, web_results):
    scores = np.array(list(web_results["scores"].values()))
    for it in client.get("/api/collection", params={"per_page": 500}).json()["items"][:-1]:
        naive = 100.0 * (scores <= it["score"]).sum() / len(scores)
        assert it["percentile"] == pytest.approx(naive)


def test_bad_query_parameters_are_clear_4xx(client):
    r = client.get("/api/collection", params={"order": "sideways"})
    assert r.status_code == 422 and "order" in r.json()["error"]
    r = client.get("/api/collection", params={"sort": "style"})
    assert r.status_code == 400 and "cannot sort" in r.json()["error"]
    r = client.get("/api/collection", params={"page": 0})
    assert r.status_code == 422


def test_artwork_json(client, web_results):
    paths = web_results["paths"]
    r = client.get("/api/artwork/0")
    assert r.status_code == 200
    a = r.json()
    assert a["path"] == paths[0]
    assert a["score"] == pytest.approx(web_results["scores"][paths[0]])
    scores = np.array(list(web_results["scores"].values()))
    assert a["rank"] == int((scores > a["score"]).sum()) + 1
    assert a["measures"] == {"edge_density": 0.0, "symmetry": 1.0}
    assert a["map_url"] == "/api/artwork/0/map.png"
    assert a["labels"]["style"] == "style_0" and a["labels"]["genre"] == "portrait"
    # the classifier run: class names from the checkpoint, probabilities sum to 1
    (pred,) = a["predictions"]
    assert pred["run"] == "style-tiny"
    assert {t["label"] for t in pred["top"]} == set(CLASS_NAMES)
    assert sum(t["prob"] for t in pred["top"]) == pytest.approx(1.0, abs=1e-5)
    assert a["stored_predictions"][0]["pred"] == "style_0"
    # similar: exact cosine top-k on the stored features, the artwork itself excluded
    v = web_results["vectors"] / np.linalg.norm(web_results["vectors"], axis=1, keepdims=True)
    sims = v @ v[0]
    order = [int(i) for i in np.argsort(-sims) if i != 0][:8]
    assert [s["id"] for s in a["similar"]] == order
    assert a["similar"][0]["similarity"] == pytest.approx(float(sims[order[0]]), abs=1e-5)


def test_unscored_artwork_and_missing_ids(client):
    a = client.get("/api/artwork/23").json()
    assert a["score"] is None and a["percentile"] is None
    for bad in ("/api/artwork/24", "/api/artwork/999999", "/api/artwork/-1"):
        r = client.get(bad)
        assert r.status_code == 404 and "no artwork" in r.json()["error"]
    assert client.get("/api/artwork/abc").status_code == 422


def test_stored_and_live_maps(client):
    r = client.get("/api/artwork/0/map.png")
    assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"
    r = client.get("/api/artwork/5/map.png")  # no stored map: computed live when maps are installed
    status = client.get("/api/status").json()
    if status["maps"]["live"]:
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    else:
        assert r.status_code == 404


def test_categories_match_pandas(client, web_coll, web_results):
    r = client.get("/api/categories", params={"column": "style"}).json()
    df = web_coll.table.assign(score=[web_results["scores"].get(p, np.nan) for p in web_coll.paths])
    g = df.groupby("style")["score"]
    for c in r["categories"]:
        assert c["n"] == int((df["style"] == c["value"]).sum())
        assert c["n_scored"] == int(g.count()[c["value"]])
        assert c["mean"] == pytest.approx(g.mean()[c["value"]])
        assert c["median"] == pytest.approx(g.median()[c["value"]])
        assert c["std"] == pytest.approx(g.std()[c["value"]])
    svg = client.get(r["boxplot_url"])
    assert svg.status_code == 200 and svg.text.startswith("<svg") and "style_2" in svg.text
    assert client.get("/api/categories", params={"column": "nope"}).status_code == 400


def test_thumbnails_cache_headers_and_304(client):
    r = client.get("/api/artwork/3/thumb", params={"size": 128})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert "max-age" in r.headers["cache-control"]
    tag = r.headers["etag"]
    again = client.get("/api/artwork/3/thumb", params={"size": 128}, headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b""
    import io

    from PIL import Image

    assert max(Image.open(io.BytesIO(r.content)).size) <= 128
    assert client.get("/api/artwork/3/thumb", params={"size": 5000}).status_code == 422


def test_upload_scores_like_the_model(client, engine, web_coll):
    from PIL import Image

    from artmem.models.transforms import build_transform

    raw = (web_coll.root and open(web_coll.abs_path(web_coll.paths[4]), "rb").read())
    r = client.post("/api/upload", files={"file": ("mine.jpg", raw, "image/jpeg")})
    assert r.status_code == 200, r.text
    res = r.json()
    img = Image.open(web_coll.abs_path(web_coll.paths[4])).convert("RGB")
    with torch.inference_mode():
        want = float(engine.model(build_transform(engine.model.pretrained_cfg)(img)[None])[0])
    assert res["score"] == pytest.approx(want, abs=1e-6)
    assert res["format"] == "JPEG" and (res["width"], res["height"]) == (64, 64)
    assert res["added"] is None
    assert 0 <= res["percentile"] <= 100
    assert res["labels"][0]["run"] == "style-tiny"
    assert len(res["similar"]) == 8
    if client.get("/api/status").json()["maps"]["live"]:
        m = client.get(res["map_url"])
        assert m.status_code == 200 and m.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get("/api/upload/" + "0" * 64 + "/map.png").status_code == 404
    assert client.get("/api/upload/not-a-checksum/map.png").status_code == 422
    # nothing was written: not kept without add=true
    assert not (client.results_dir / "uploads").exists()


def test_upload_add_keeps_it_in_results_not_originals(client, web_coll):
    before = sorted(p.name for p in __import__("pathlib").Path(web_coll.root).rglob("*"))
    raw = png_bytes((48, 36), (200, 30, 30))
    r = client.post("/api/upload", files={"file": ("red.png", raw, "image/png")}, data={"add": "true"})
    assert r.status_code == 200, r.text
    added = r.json()["added"]
    assert added["created"] is True
    table = pd.read_parquet(client.results_dir / "uploads" / "uploads.parquet")
    assert table["original_name"].tolist() == ["red.png"]
    assert (client.results_dir / "uploads" / table["path"][0]).read_bytes() == raw
    assert table["pred_style-tiny"][0] in CLASS_NAMES
    assert sorted(p.name for p in __import__("pathlib").Path(web_coll.root).rglob("*")) == before
    # the same bytes again: not duplicated
    again = client.post("/api/upload", files={"file": ("again.png", raw, "image/png")}, data={"add": "true"})
    assert again.json()["added"] == {**added, "created": False}
    # it is now browsable like any artwork
    a = client.get(added["url"].replace("/artwork/", "/api/artwork/")).json()
    assert a["source"] == "upload" and a["score"] == pytest.approx(r.json()["score"])
    assert client.get(f"/api/artwork/{added['id']}/thumb").status_code == 200
    grid = client.get("/api/collection", params={"source": "upload"}).json()
    assert [it["id"] for it in grid["items"]] == [added["id"]]


def test_uploads_survive_restart(web_coll, web_results, engine, tmp_path):
    import shutil

    from artmem.web.app import create_app

    results = tmp_path / "analysis"
    shutil.copytree(web_results["dir"], results)
    with TestClient(create_app(web_coll, results=results, engine=engine, background=False)) as c:
        new_id = c.post("/api/upload", files={"file": ("a.png", png_bytes(), "image/png")},
                        data={"add": "true"}).json()["added"]["id"]
    with TestClient(create_app(web_coll, results=results, engine=engine, background=False)) as c:
        a = c.get(f"/api/artwork/{new_id}").json()
        assert a["source"] == "upload" and a["path"].startswith("files/")


def test_add_without_results_folder_is_a_clear_400(web_coll, engine):
    from artmem.web.app import create_app

    with TestClient(create_app(web_coll, engine=engine, background=False)) as c:
        r = c.post("/api/upload", files={"file": ("a.png", png_bytes(), "image/png")}, data={"add": "true"})
        assert r.status_code == 400 and "--results" in r.json()["error"]


def test_background_scoring_without_results(web_coll, engine):
    """No analysis folder: scores and embeddings are computed after start-up, in the background."""
    from PIL import Image

    from artmem.models.transforms import build_transform
    from artmem.web.app import create_app

    app = create_app(web_coll, engine=engine, background=True)
    with TestClient(app) as c:
        deadline = time.time() + 30
        while c.get("/api/status").json()["indexing"]["state"] == "running" and time.time() < deadline:
            time.sleep(0.1)
        status = c.get("/api/status").json()
        assert status["indexing"]["state"] == "complete"
        assert status["scores"]["scored"] == 24 and status["similar"]["count"] == 24
        tf = build_transform(engine.model.pretrained_cfg)
        x = torch.stack([tf(Image.open(p).convert("RGB")) for p in web_coll.abs_paths()])
        with torch.inference_mode():
            want = engine.model(x).numpy()
        got = {it["path"]: it["score"] for it in c.get("/api/collection", params={"per_page": 100}).json()["items"]}
        np.testing.assert_allclose([got[p] for p in web_coll.paths], want, atol=1e-6)
        assert len(c.get("/api/artwork/2").json()["similar"]) == 8


def test_browse_only_without_model(web_coll, web_results):
    from artmem.web.app import create_app

    app = create_app(web_coll, results=web_results["dir"], model="none", background=False)
    with TestClient(app) as c:
        assert c.get("/api/collection").json()["scored"] == 23
        assert c.get("/api/artwork/1").status_code == 200
        r = c.post("/api/upload", files={"file": ("a.png", png_bytes(), "image/png")})
        assert r.status_code == 200 and r.json()["score"] is None


def test_html_pages(client, web_results):
    grid = client.get("/", params={"style": "style_0", "order": "asc"})
    assert grid.status_code == 200 and "text/html" in grid.headers["content-type"]
    assert 'href="/a/' in grid.text and "style_0" in grid.text
    art = client.get("/artwork/0")  # an old row URL: redirected to the stable one
    assert art.status_code == 200 and art.history and art.history[0].status_code == 307
    assert str(art.url).endswith("/a/" + hashlib.sha1(f"0:{web_results['paths'][0]}".encode()).hexdigest()[:12])
    assert f'{web_results["scores"][web_results["paths"][0]]:.3f}' in art.text
    assert "Most similar artworks" in art.text and "edge_density" in art.text
    assert client.get("/upload").status_code == 200
    cats = client.get("/categories", params={"column": "genre"})
    assert cats.status_code == 200 and "<svg" in cats.text and "portrait" in cats.text
    missing = client.get("/artwork/999")
    assert missing.status_code == 404 and "no artwork with id 999" in missing.text
    assert "<html" in missing.text  # an HTML error page, not JSON, for browsers
    api_page = client.get("/api").text
    assert "/api/upload" in api_page and "http://testserver/api/collection" in api_page  # its real address


def test_openapi_and_no_cdn_docs(client):
    schema = client.get("/openapi.json").json()
    for path in ("/api/collection", "/api/artwork/{item_id}", "/api/upload", "/api/categories", "/api/status"):
        assert path in schema["paths"]
    assert client.get("/docs").status_code == 404  # Swagger UI would load assets from a CDN
    for page in ("/", "/artwork/0", "/upload", "/categories"):
        assert "cdn" not in client.get(page).text.lower()


def test_static_assets_served(client):
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200


def test_similar_through_retrieval_index(web_coll, web_results, engine, tmp_path):
    """With OUT/index (artmem.retrieval, exact faiss flat) the similar list equals the exact one."""
    import shutil

    pytest.importorskip("artmem.retrieval.index")
    from artmem.retrieval.index import build_index
    from artmem.retrieval.store import load_store
    from artmem.web.app import create_app

    results = tmp_path / "analysis"
    shutil.copytree(web_results["dir"], results)
    build_index(load_store(results / "features", web_coll), results / "index", backend="faiss", kind="flat")
    with TestClient(create_app(web_coll, results=results, engine=engine, background=False)) as c:
        assert c.get("/api/status").json()["artefacts"]["index"].startswith("24 vectors")
        assert c.app.state.data.index is not None
        v = web_results["vectors"] / np.linalg.norm(web_results["vectors"], axis=1, keepdims=True)
        sims = v @ v[3]
        want = [int(i) for i in np.argsort(-sims) if i != 3][:8]
        got = c.get("/api/artwork/3").json()["similar"]
        assert [s["id"] for s in got] == want
        assert [s["similarity"] for s in got] == pytest.approx([float(sims[i]) for i in want], abs=1e-5)


def test_model_auto_follows_the_scores_table(web_coll, engine, tmp_path):
    """`--model auto` uses the model recorded by `artmem score` (job.json), so uploads compare with the
    collection; another model is flagged `comparable: false`."""
    from artmem.batch.api import score
    from artmem.data.collection import open_collection
    from artmem.web.app import create_app

    res = tmp_path / "analysis"
    score(open_collection(web_coll.root), "tiny_test", res / "scores", device="cpu", num_workers=0,
          progress=False)
    app = create_app(web_coll, results=res, model="auto", device="cpu", background=False, maps=False)
    with TestClient(app) as c:
        status = c.get("/api/status").json()
        assert status["model"] == "tiny_test" and status["scores"]["model"] == "tiny_test"
        r = c.post("/api/upload", files={"file": ("a.jpg", open(web_coll.abs_paths()[0], "rb").read(),
                                                  "image/jpeg")}).json()
        assert r["comparable"] is True
        assert r["rank"] is not None and r["percentile"] == pytest.approx(
            c.get("/api/artwork/0").json()["percentile"])
    job = res / "scores" / "job.json"
    job.write_text(job.read_text().replace('"tiny_test"', '"resmem"'))
    with TestClient(create_app(web_coll, results=res, engine=engine, background=False)) as c:
        r = c.post("/api/upload", files={"file": ("a.png", png_bytes(), "image/png")}).json()
        assert r["comparable"] is False


def test_similar_through_the_index_without_features_in_memory(web_coll, web_results, tmp_path, monkeypatch):
    """Features above the in-memory limit are not loaded: an artwork's neighbours come from its
    own vector in OUT/index, and equal the exact cosine neighbours of the stored features."""
    import shutil

    pytest.importorskip("artmem.retrieval.index")
    from artmem.retrieval.index import build_index
    from artmem.retrieval.store import load_store
    from artmem.web import artefacts
    from artmem.web.app import create_app

    results = tmp_path / "analysis"
    shutil.copytree(web_results["dir"], results)
    build_index(load_store(results / "features", web_coll), results / "index", backend="faiss", kind="flat")
    monkeypatch.setattr(artefacts, "FEATURES_IN_MEMORY_MAX_BYTES", 0)
    with TestClient(create_app(web_coll, results=results, model="none", background=False)) as c:
        assert c.app.state.data.features is None
        assert "through OUT/index only" in c.get("/api/status").json()["artefacts"]["features"]
        v = web_results["vectors"] / np.linalg.norm(web_results["vectors"], axis=1, keepdims=True)
        sims = v @ v[5]
        want = [int(i) for i in np.argsort(-sims) if i != 5]
        got = c.get("/api/artwork/5").json()["similar"]
        assert [s["id"] for s in got] == want[:8]
        assert [s["similarity"] for s in got] == pytest.approx([float(sims[i]) for i in want[:8]], abs=1e-5)
        five = c.get("/api/artwork/5/similar", params={"k": 5}).json()["similar"]
        assert [s["id"] for s in five] == want[:5]
