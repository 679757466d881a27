"""A collection above LAZY_MIN_ROWS is paged, not loaded: its grid pages are DuckDB queries on the
memory-mapped copy of its Parquet file, checked here against pandas on the same rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from artmem.web.data import LAZY_MIN_ROWS

N = LAZY_MIN_ROWS + 1000
STYLES = [f"style_{i}" for i in range(7)]


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """N rows written directly (the image files do not exist) and a scores table in two shards,
    shuffled, with 5 % of the rows unscored and a few scored paths that are not in the collection."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("big")
    df = pd.DataFrame({
        "path": [f"img/{i:07d}.jpg" for i in range(N)],
        "style": rng.choice(STYLES, N),
        "genre": rng.choice(["portrait", "landscape", None], N),
        "year": np.where(rng.random(N) < 0.1, np.nan, rng.integers(1400, 2000, N).astype(float)),
    })
    df.to_parquet(root / "collection.parquet", index=False, row_group_size=60_000)  # several row groups
    res = root / "results"
    shards = res / "scores" / "shards"
    shards.mkdir(parents=True)
    scored = df.sample(frac=0.95, random_state=1)[["path"]].copy()
    scored["score"] = rng.random(len(scored)).round(3)  # rounded: many ties, broken by id
    extra = pd.DataFrame({"path": ["not/in/collection.jpg"], "score": [0.5]})
    scored = pd.concat([scored, extra], ignore_index=True)
    half = len(scored) // 2
    for k, part in enumerate([scored.iloc[:half], scored.iloc[half:]]):
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), shards / f"scores-{k:05d}.parquet")
    ref = df.copy()
    ref["score"] = ref["path"].map(scored.set_index("path")["score"])
    return root, res, ref


@pytest.fixture(scope="module")
def client(big):
    from artmem.web.app import create_app

    root, res, _ = big
    app = create_app(root, results=res, model="none", background=False)
    with TestClient(app) as c:
        yield c


def _reference(ref: pd.DataFrame, key: str, ascending: bool, mask=None) -> pd.Series:
    """Ids sorted as the explorer promises: missing values last, ties in id order."""
    rows = ref if mask is None else ref[mask]
    rows = rows.assign(id=rows.index)
    return rows.sort_values([key, "id"], ascending=[ascending, True], na_position="last", kind="mergesort")["id"]


def test_startup_does_not_load_the_table(client, big):
    data = client.app.state.data
    assert data.lazy and data._frame is None
    assert len(data.collection.table) == 0  # schema only
    assert data.n_rows == N
    # the rows are a memory-mapped Arrow file: opening it allocates (almost) nothing
    from artmem.web.rowstore import open_arrow_cache

    cache = next((big[1] / ".explorer").glob("collection-*.arrow"))
    before = pa.total_allocated_bytes()
    table = open_arrow_cache(cache)
    assert table.num_rows == N and pa.total_allocated_bytes() - before < table.nbytes / 20
    assert client.get("/api/status").json()["scores"]["scored"] == int(big[2]["score"].notna().sum())


@pytest.mark.parametrize("sort,order", [("score", "desc"), ("year", "asc"), ("path", "desc")])
def test_filtered_sorted_page_matches_pandas(client, big, sort, order):
    ref = big[2]
    mask = (ref["style"] == "style_3") & (ref["genre"] == "portrait")
    want = _reference(ref, sort, order == "asc", mask)
    page, per = 7, 48
    r = client.get("/api/collection", params={"style": "style_3", "genre": "portrait", "sort": sort,
                                              "order": order, "page": page, "per_page": per}).json()
    assert r["total"] == int(mask.sum())
    got = [it["id"] for it in r["items"]]
    assert got == want.iloc[(page - 1) * per: page * per].tolist()
    item = r["items"][0]
    assert item["path"] == ref.at[got[0], "path"]
    assert item["labels"]["style"] == "style_3"
    if np.isfinite(ref.at[got[0], "score"]):
        assert item["score"] == pytest.approx(ref.at[got[0], "score"])
    if sort == "year":  # the value sorted by is on each card (missing: None)
        assert [it["sort_value"] for it in r["items"]] == [
            None if np.isnan(y) else f"{y:g}" for y in ref.loc[got, "year"]]
    else:
        assert "sort_value" not in item


def test_last_page_holds_the_unscored_rows(client, big):
    ref = big[2]
    mask = ref["style"] == "style_0"
    total = int(mask.sum())
    pages = -(-total // 100)
    r = client.get("/api/collection", params={"style": "style_0", "per_page": 100, "page": pages}).json()
    want = _reference(ref, "score", False, mask).iloc[(pages - 1) * 100:].tolist()
    assert [it["id"] for it in r["items"]] == want
    assert r["items"][-1]["score"] is None


def test_search_and_percentile(client, big):
    ref = big[2]
    r = client.get("/api/collection", params={"q": "IMG/00012", "sort": "path", "order": "asc"}).json()
    want = ref.index[ref["path"].str.contains("img/00012", regex=False)].tolist()
    assert r["total"] == len(want) and [it["id"] for it in r["items"]] == want[:48]
    top = client.get("/api/collection", params={"per_page": 1}).json()["items"][0]
    scores = ref["score"].dropna().to_numpy()
    assert top["percentile"] == pytest.approx(100.0 * (scores <= top["score"]).mean())


def test_artwork_by_key_and_categories(client, big):
    ref = big[2]
    item = client.get("/api/collection", params={"genre": "landscape", "per_page": 1, "page": 3}).json()["items"][0]
    a = client.get(f"/api/a/{item['key']}").json()
    assert a["id"] == item["id"] and a["path"] == ref.at[item["id"], "path"]
    assert a["labels"]["genre"] == "landscape"
    cats = {c["value"]: c for c in client.get("/api/categories", params={"column": "style"}).json()["categories"]}
    for style, g in ref.groupby("style"):
        s = g["score"].dropna()
        assert cats[style]["n"] == len(g) and cats[style]["n_scored"] == len(s)
        assert cats[style]["mean"] == pytest.approx(s.mean())
        assert cats[style]["q1"] == pytest.approx(np.quantile(s, 0.25))
        assert cats[style]["std"] == pytest.approx(s.std(ddof=1))


def test_uploads_are_not_added_to_a_large_collection(client):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buf, "PNG")
    r = client.post("/api/upload", params={"add": "true"}, files={"file": ("x.png", buf.getvalue(), "image/png")})
    assert r.status_code == 400 and "memory-mapped" in r.json()["error"]
    assert client.get("/api/status").json()["collection"]["uploads"] == 0


def test_thumbnails_rendered_once_then_read_from_disk(tmp_path, monkeypatch):
    """A thumbnail is made when first asked for and kept on disk: a new cache (a restarted
    server) serves the same bytes without decoding the original. (The big collection above has no
    image files at all: starting it reads none.)"""
    from PIL import Image

    from artmem.web import thumbs

    img = tmp_path / "a.jpg"
    Image.new("RGB", (300, 200), (10, 120, 200)).save(img)
    first = thumbs.ThumbCache(folder=tmp_path / "thumbs")
    body, tag = first.get(img, 128)
    assert first.misses == 1 and Image.open(__import__("io").BytesIO(body)).size == (128, 85)
    assert len(list((tmp_path / "thumbs").rglob("*.jpg"))) == 1

    def no_render(path, size):
        raise AssertionError("rendered again")

    monkeypatch.setattr(thumbs, "render_jpeg", no_render)
    second = thumbs.ThumbCache(folder=tmp_path / "thumbs")
    assert second.get(img, 128) == (body, tag) and second.disk_hits == 1


def test_large_csv_is_copied_once_then_served_without_pandas(big, tmp_path, monkeypatch):
    """A CSV collection of LAZY_MIN_ROWS rows is read once, copied, and the next start opens the
    copy without reading the CSV (open_collection is not called); pages agree with pandas."""
    from artmem.web import collection_rows
    from artmem.web.data import ExplorerData

    ref = big[2]
    folder = tmp_path / "csvcoll"
    folder.mkdir()
    ref.drop(columns="score").to_csv(folder / "collection.csv", index=False)
    first = ExplorerData(folder, big[1])
    assert first.lazy and first.n_rows == N

    def no_read(source):
        raise AssertionError("the CSV was read again")

    monkeypatch.setattr(collection_rows, "open_collection", no_read)
    again = ExplorerData(folder, big[1])
    assert again.lazy and len(again.collection.table) == 0
    # the scores aligned with the ids and their sorted copy come from the first start's files
    assert list(again.rows_copy.parent.glob("scores-*.sorted.npy"))
    np.testing.assert_array_equal(again.scores, first.scores)
    np.testing.assert_array_equal(again.collection_scores(), np.sort(ref["score"].dropna().to_numpy()))
    key = again.key_of(123)
    assert again.id_of_key(key) == 123 and again.rows_copy.with_suffix(".keys.npy").is_file()
    assert str(again.collection.root) == str(folder.resolve())
    total, ids = again.page({"style": "style_5"}, sort="year", order="desc", offset=96, limit=48)
    want = _reference(ref, "year", False, ref["style"] == "style_5")
    assert total == int((ref["style"] == "style_5").sum()) and ids.tolist() == want.iloc[96:144].tolist()


def test_many_pages_do_not_evict_the_sorted_scores(client):
    """Past PAGE_CACHE cached pages the pages go, the sorted scores (seconds to remake at 10 M
    rows) stay."""
    from artmem.web.data import PAGE_CACHE

    data = client.app.state.data
    ref = data.collection_scores()
    for k in range(PAGE_CACHE + 10):
        data.page({"style": STYLES[k % len(STYLES)]}, sort="year", order="asc", offset=k, limit=3)
    assert data.collection_scores() is ref
    assert sum(1 for key in data._cache if key[0] == "page") <= PAGE_CACHE


def test_kept_sort_orders_answer_as_duckdb_does(client, big):
    """Once the kept sort orders and label codes are built (`orderings.py`), pages come from them;
    every page equals both pandas' and DuckDB's answer: missing values last, ties (scores rounded
    to 3 decimals, years) in id order, missing labels never matching, unknown values matching
    nothing, pages past the matches empty."""
    data = client.app.state.data
    store = data.store
    ref = big[2]
    rng = np.random.default_rng(3)
    queries = [({}, "score", "desc", 0), ({"genre": "portrait"}, "year", "asc", 5000),
               ({"style": "style_9"}, "score", "asc", 0), ({"style": "style_2"}, "path", "asc", 10**6)]
    for _ in range(24):
        filters = {"style": str(rng.choice(STYLES))}
        if rng.random() < 0.5:
            filters["genre"] = str(rng.choice(["portrait", "landscape"]))
        queries.append((filters, str(rng.choice(["score", "year", "path"])), str(rng.choice(["asc", "desc"])),
                        int(rng.integers(0, 4000))))
    for filters, sort, order, _ in queries:  # starts the builds (DuckDB answers meanwhile)
        data.page(filters, sort=sort, order=order, offset=0, limit=1)
    store.orderings.wait()
    kept = 0
    for filters, sort, order, offset in queries:
        column = "_score" if sort == "score" else sort
        where, params = store.where(filters, "", data.label_columns)
        fast = store.page_ids(where, params, order, offset, 48, column=column, filters=filters)
        slow = store.page_ids(where, params, order, offset, 48, column=column)  # DuckDB's query
        mask = np.ones(len(ref), bool)
        for c, v in filters.items():
            mask &= (ref[c] == v).to_numpy()
        want = _reference(ref.rename(columns={"score": "_score"}), column, order == "asc", mask)
        assert fast.tolist() == slow.tolist() == want.iloc[offset:offset + 48].tolist(), (filters, sort, order)
        kept += store._page_from_orderings(filters, order, offset, 48, column, None, None) is not None
    assert kept == len(queries)  # every one of them was answered from the kept orders


def test_index_hits_map_to_rows_through_the_key_index(client, big):
    """Similar-artwork hits (paths from the index) become row ids by the URL-key index, equal to
    DuckDB's join over every path; a path not in the collection is -1, and a second row sharing
    a hit's 48-bit key is told apart by its path."""
    data = client.app.state.data
    ref = big[2]
    ids = np.random.default_rng(5).integers(0, N, 8)
    paths = [ref.at[int(i), "path"] for i in ids]
    paths[1] = str(big[0] / paths[1])  # absolute under the root
    paths[2] = "img/not-there.jpg"
    want = data._ids_for(paths)  # DuckDB
    assert want[2] == -1 and (want[[0, 1, 3]] == ids[[0, 1, 3]]).all()
    assert data._ids_of_paths(paths).tolist() == want.tolist()
    keys, kid = data._large_keys()
    j = int(np.flatnonzero(kid == ids[0])[0])
    data._key_index = (np.insert(keys, j, keys[j]), np.insert(kid, j, (ids[0] + 1) % N))  # a twin key first
    try:
        assert data._ids_of_paths([paths[0]]).tolist() == [ids[0]]
    finally:
        data._key_index = (keys, kid)


def test_scores_per_category_match_pandas(client, big):
    """The boxplot's finite scores per label value (missing values as "(none)") equal pandas'."""
    data = client.app.state.data
    ref = big[2]
    got = data.scores_for("genre")
    labels = ref["genre"].fillna("(none)")
    want = {g: np.sort(ref.loc[(labels == g) & ref["score"].notna(), "score"].to_numpy()) for g in labels.unique()}
    assert sorted(got) == sorted(want)
    for g, v in want.items():
        np.testing.assert_array_equal(np.sort(got[g]), v)


def test_a_summary_missed_by_many_requests_at_once_is_computed_once(client):
    """Concurrent misses of one cache key wait for the first computation instead of each running
    it (20 clients opening the categories of 10 M rows ran 20 DuckDB quantile queries at once)."""
    import threading
    import time

    data = client.app.state.data
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.3)
        return "done"

    results = []
    threads = [threading.Thread(target=lambda: results.append(data._cached(("test-once", data.version), slow)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["done"] * 8 and len(calls) == 1 and not data._computing
