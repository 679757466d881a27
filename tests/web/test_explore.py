"""Search, sort keys, stable artwork URLs, similar images, the embedding map's data, and the words
the pages use (percentiles, measure names, classifier titles), against naive recomputations."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def app_and_results(web_coll, web_results, engine, tmp_path_factory):
    from artmem.web.app import create_app

    results = tmp_path_factory.mktemp("explore_res") / "analysis"
    shutil.copytree(web_results["dir"], results)
    app = create_app(web_coll, results=results, engine=engine, background=False, per_page=50)
    with TestClient(app) as c:
        yield c, results


@pytest.fixture(scope="module")
def client(app_and_results):
    return app_and_results[0]


def _paths(resp) -> list[str]:
    return [it["path"] for it in resp.json()["items"]]


def test_search_matches_paths_and_label_values(client, web_coll):
    t = web_coll.table
    for q in ("PORTRAIT_00", "style_2", "landscape"):
        got = client.get("/api/collection", params={"q": q}).json()
        naive = [p for p, s, g in zip(t["path"], t["style"].astype(str), t["genre"].astype(str), strict=True)
                 if q.lower() in p.lower() or q.lower() in s.lower() or q.lower() in g.lower()]
        assert got["total"] == len(naive) and sorted(_paths_of(got)) == sorted(naive)
    both = client.get("/api/collection", params={"q": "portrait", "style": "style_1"}).json()
    assert both["total"] == int(((t["genre"] == "portrait") & (t["style"] == "style_1")).sum())
    assert client.get("/api/collection", params={"q": "no such thing"}).json()["total"] == 0
    page = client.get("/", params={"q": "style_2"}).text
    assert 'value="style_2"' in page and "“style_2”" in page


def _paths_of(body) -> list[str]:
    return [it["path"] for it in body["items"]]


def test_sort_by_a_measure_and_by_a_prediction(client, web_results):
    keys = client.get("/api/filters").json()["sort_keys"]
    assert "measure:edge_density" in keys and "pred:predictions:prob" in keys and "pred:predictions:correct" in keys
    m = pd.read_parquet(web_results["dir"] / "measures" / "measures.parquet")
    got = _paths(client.get("/api/collection", params={"sort": "measure:symmetry", "order": "asc"}))
    assert got == m.sort_values("symmetry", kind="mergesort")["path"].tolist()
    pred = _paths(client.get("/api/collection", params={"sort": "pred:predictions:prob", "order": "desc"}))
    assert pred[:2] == [web_results["paths"][0], web_results["paths"][1]]  # prob 0.9, 0.6; the rest have none
    grid = client.get("/", params={"sort": "measure:edge_density"}).text
    assert '<option value="measure:edge_density" selected>edge density</option>' in grid
    assert client.get("/api/collection", params={"sort": "measure:nope"}).status_code == 400


def test_stable_urls_by_path_hash(client, web_results):
    path = web_results["paths"][5]
    key = hashlib.sha1(f"0:{path}".encode()).hexdigest()[:12]
    art = client.get(f"/api/a/{key}").json()
    assert art["path"] == path and art["id"] == 5 and art["url"] == f"/a/{key}"
    r = client.get("/artwork/5", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == f"/a/{key}"
    assert client.get("/a/000000000000").status_code == 404
    items = client.get("/api/collection").json()["items"]
    assert all(it["url"] == "/a/" + hashlib.sha1(f"0:{it['path']}".encode()).hexdigest()[:12] for it in items)


def test_similar_endpoint_is_the_exact_cosine_top_k(client, web_results):
    v = web_results["vectors"] / np.linalg.norm(web_results["vectors"], axis=1, keepdims=True)
    sims = v @ v[3]
    sims[3] = -np.inf
    naive = np.argsort(-sims, kind="stable")[:5]
    got = client.get("/api/artwork/3/similar", params={"k": 5}).json()["similar"]
    assert [s["id"] for s in got] == naive.tolist()
    assert [s["similarity"] for s in got] == pytest.approx(sims[naive].tolist(), abs=1e-5)


def test_embedding_map_layout_is_computed_once_and_cached(client, app_and_results, web_coll, web_results, engine):
    from artmem.web.app import create_app

    _, results = app_and_results
    d = client.get("/api/map").json()
    n = len(web_results["paths"])
    assert d["available"] and d["n"] == n and sorted(d["paths"]) == sorted(web_results["paths"])
    assert d["layout"]["method"] in ("t-SNE", "umap")
    if d["layout"]["method"] == "t-SNE":
        assert d["layout"]["perplexity"] == pytest.approx((n - 1) / 3)
    xy = np.array([d["x"], d["y"]]).T
    assert xy.min() >= 0 and xy.max() == pytest.approx(1.0)
    assert (results / "embedding_map" / "layout.parquet").exists()
    mtime = (results / "embedding_map" / "layout.parquet").stat().st_mtime_ns
    # a restarted server reads the cached layout instead of computing it again
    with TestClient(create_app(web_coll, results=results, engine=engine, background=False)) as c2:
        again = c2.get("/api/map").json()
    assert again["x"] == d["x"] and again["keys"] == d["keys"]
    assert (results / "embedding_map" / "layout.parquet").stat().st_mtime_ns == mtime
    first = d["paths"].index(web_results["paths"][0])
    assert d["score"][first] == pytest.approx(web_results["scores"][web_results["paths"][0]], abs=1e-5)
    assert d["labels"]["style"][first] == web_coll.table.set_index("path").loc[web_results["paths"][0], "style"]


def test_words_on_the_pages(client, web_results):
    from artmem.web.labels import classifier_title, measure_label, ordinal, percentile_text

    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st", "111th"]
    assert percentile_text(100.0, rank=1) == "highest in the collection"
    assert percentile_text(99.96, rank=2) == "99th percentile" and percentile_text(50.0, 12) == "50th percentile"
    assert measure_label("symmetry_conv5").startswith("left-right symmetry") and measure_label("p_cat") == "probability of cat"

    class Trained:
        trained_config = {"label": "style", "base_model": "efficientnet_lite0"}

    assert classifier_title("runs/x", Trained()) == "style · efficientnet_lite0"
    best = max(web_results["scores"], key=web_results["scores"].get)
    key = hashlib.sha1(f"0:{best}".encode()).hexdigest()[:12]
    page = client.get(f"/a/{key}").text
    assert "highest in the collection" in page and "100.0th" not in page and "100th" not in page
    assert "edge density" in page  # measures by their human names
    assert "style-tiny · tiny_test" in page  # the classifier panel: what it predicts (its run) · its model
    assert "Box: middle 50 %" in client.get("/categories").text


def test_sort_by_predicted_vs_true(client, web_results):
    got = _paths(client.get("/api/collection", params={"sort": "pred:predictions:correct", "order": "desc"}))
    # row 0: predicted style_0 = true style_0; row 1: predicted style_1, true style_0; others: none
    assert got[:2] == [web_results["paths"][0], web_results["paths"][1]]
