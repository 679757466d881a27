"""The measures of a collection above LAZY_MIN_ROWS are never read into pandas: DuckDB joins them
to the ids, they are cached aligned with the ids beside the memory-mapped copy and sorted as
columns of the row table; checked here against pandas on the same rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from artmem.web.data import LAZY_MIN_ROWS

N = LAZY_MIN_ROWS + 1000
STYLES = [f"style_{i}" for i in range(5)]
MEASURES = ["edge_density", "symmetry"]


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """N rows (the images do not exist), no scores, and a measures table: shuffled, 3 % of the
    rows missing, a few paths not in the collection, one path listed twice (its first row counts,
    as pandas' drop_duplicates keeps it), one path absolute under the root, values rounded (many
    ties), some NaN, and a text column."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("bigm")
    df = pd.DataFrame({"path": [f"img/{i:07d}.jpg" for i in range(N)], "style": rng.choice(STYLES, N)})
    df.to_parquet(root / "collection.parquet", index=False, row_group_size=70_000)
    res = root / "results"
    (res / "measures").mkdir(parents=True)
    m = df[["path"]].sample(frac=0.97, random_state=1).reset_index(drop=True)
    m["edge_density"] = rng.random(len(m)).round(2)
    m["symmetry"] = np.where(rng.random(len(m)) < 0.05, np.nan, rng.random(len(m)).round(3))
    m["kind"] = rng.choice(["a", "b"], len(m))
    dup = m.iloc[[10]].assign(edge_density=-1.0, symmetry=-1.0)  # listed again: ignored
    extra = pd.DataFrame({"path": ["not/in/collection.jpg", "img/x.jpg"], "edge_density": [0.5, 0.6],
                          "symmetry": [0.1, 0.2], "kind": ["a", "b"]})
    m = pd.concat([m, dup, extra], ignore_index=True)
    m.loc[20, "path"] = str(root / m.loc[20, "path"])  # absolute under the collection's root
    pq.write_table(pa.Table.from_pandas(m, preserve_index=False), res / "measures" / "measures.parquet",
                   row_group_size=50_000)
    # the reference: pandas, as the small-collection path reads it
    rel = m["path"].str.replace(str(root) + "/", "", regex=False)
    first = m.assign(path=rel).drop_duplicates("path").set_index("path")
    ref = df.join(first, on="path")
    return root, res, ref


@pytest.fixture(scope="module")
def data(big, tmp_path_factory):
    import artmem.web.artefacts as artefacts
    from artmem.web.data import ExplorerData

    real = pd.read_parquet

    def no_measures_in_pandas(file, *a, **k):
        if "measures" in str(file):
            raise AssertionError(f"{file} read into pandas")
        return real(file, *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(artefacts.pd, "read_parquet", no_measures_in_pandas)
        return ExplorerData(big[0], big[1])


def _reference(ref: pd.DataFrame, key: str, ascending: bool, mask=None) -> list[int]:
    """Ids sorted as the explorer promises: missing values last, ties in id order."""
    rows = ref if mask is None else ref[mask]
    rows = rows.assign(id=rows.index)
    return rows.sort_values([key, "id"], ascending=[ascending, True], na_position="last",
                            kind="mergesort")["id"].tolist()


def test_measures_are_columns_of_the_row_table(data, big):
    ref = big[2]
    assert data.lazy and data._frame is None
    n_found = int(ref["edge_density"].notna().sum())
    assert data.artefacts["measures"] == f"{n_found} rows, 3 measures"
    assert data.measures.sortable == MEASURES  # the text column is shown, not sorted by
    keys = data.sort_keys()
    assert "measure:edge_density" in keys and "measure:symmetry" in keys and "measure:kind" not in keys
    cols = set(data.store.columns)
    assert {"_measure:edge_density", "_measure:symmetry", "_measure:kind"} <= cols
    assert list(data.rows_copy.parent.glob("measures-*.arrow"))


@pytest.mark.parametrize("item", [0, 10, 20, 777, "missing"])
def test_measures_of_matches_pandas(data, big, item):
    """As the pandas reading gives them: floats and text, NaN left out; a row without measures
    gives none; the duplicate's values (-1) and the absolute path's row are right."""
    ref = big[2]
    if item == "missing":
        item = int(ref.index[ref["edge_density"].isna()][0])
    elif item in (10, 20):  # the rows of the measures table's 11th (listed twice) and 21st path
        m = pd.read_parquet(big[1] / "measures" / "measures.parquet")
        path = m.loc[item, "path"].replace(str(big[0]) + "/", "")
        item = int(ref.index[ref["path"] == path][0])
    row = ref.loc[item, ["edge_density", "symmetry", "kind"]]
    want = {k: (float(v) if isinstance(v, (int, float, np.number)) else str(v)) for k, v in row.items()
            if pd.notna(v)}
    assert data.measures_of(item) == want
    assert -1.0 not in want.values()


@pytest.mark.parametrize("measure,order,style", [("edge_density", "asc", "style_1"),
                                                 ("symmetry", "desc", "style_3"),
                                                 ("symmetry", "asc", None)])
def test_sorted_by_a_measure_matches_pandas(data, big, measure, order, style):
    """A grid sorted by a measure (ties in id order, missing last), with a label filter: through
    DuckDB first, then from the kept sort orders once built; the card shows the measure."""
    ref = big[2]
    filters = {"style": style} if style else {}
    mask = (ref["style"] == style) if style else None
    want = _reference(ref, measure, order == "asc", mask)
    total = len(want)
    pages = [0, 4800, max(0, total - 30)]  # the last page holds the rows without that measure
    data._cache.clear()
    for offset in pages:
        got_total, ids = data.page(filters, sort=f"measure:{measure}", order=order, offset=offset, limit=48)
        assert got_total == total and ids.tolist() == want[offset:offset + 48]
    data.store.orderings.wait()
    data._cache.clear()
    for offset in pages:
        _, ids = data.page(filters, sort=f"measure:{measure}", order=order, offset=offset, limit=48)
        assert ids.tolist() == want[offset:offset + 48]
    column = data.measures.columns[measure]
    where, params = data.store.where(filters, "", data.label_columns)
    assert data.store._page_from_orderings(filters, order, 0, 48, column, None, None) is not None
    assert data.store.page_ids(where, params, order, 0, 48, column=column).tolist() == want[:48]


def test_grid_and_artwork_pages_show_the_measures(big):
    """Through the app (a restart: the cached measures are mapped): the grid sorted by a measure
    shows it on each card, the artwork JSON lists the row's measures."""
    from fastapi.testclient import TestClient

    from artmem.web.app import create_app

    ref = big[2]
    with TestClient(create_app(big[0], results=big[1], model="none", background=False)) as client:
        r = client.get("/api/collection", params={"style": "style_2", "sort": "measure:symmetry",
                                                  "order": "desc", "per_page": 20, "page": 2}).json()
        want = _reference(ref, "symmetry", False, ref["style"] == "style_2")[20:40]
        assert [it["id"] for it in r["items"]] == want
        assert [it["sort_value"] for it in r["items"]] == [f"{v:g}" for v in ref.loc[want, "symmetry"]]
        a = client.get(f"/api/a/{r['items'][0]['key']}").json()
        assert a["measures"] == {"edge_density": ref.at[want[0], "edge_density"],
                                 "symmetry": ref.at[want[0], "symmetry"], "kind": ref.at[want[0], "kind"]}


def test_restart_maps_the_cache_without_joining(data, big, monkeypatch):
    from artmem.web.data import ExplorerData

    def no_join(*a, **k):
        raise AssertionError("joined again")

    monkeypatch.setattr("artmem.web.artefacts.join_measures", no_join)
    before = pa.total_allocated_bytes()
    again = ExplorerData(big[0], big[1])
    assert again.artefacts["measures"] == data.artefacts["measures"]
    assert [again.measures_of(i) for i in range(50)] == [data.measures_of(i) for i in range(50)]
    mapped = sum(again.store.table.column(c).nbytes for c in again.measures.columns.values())
    scores = again.store.table.column("_score").nbytes  # the scores column: made in memory
    assert pa.total_allocated_bytes() - before - scores < mapped / 4  # mapped from the cache file, not copied


def test_a_changed_measures_file_is_joined_again(big, tmp_path, monkeypatch):
    import shutil

    from artmem.web import artefacts
    from artmem.web.data import ExplorerData

    res = tmp_path / "res"
    (res / "measures").mkdir(parents=True)
    (res / ".explorer").mkdir()
    for f in (big[1] / ".explorer").glob("collection-*.arrow"):  # the collection's copy, not its measures
        shutil.copy(f, res / ".explorer" / f.name)
    file = res / "measures" / "measures.parquet"
    m = pd.read_parquet(big[1] / "measures" / "measures.parquet")
    m.head(1000).to_parquet(file, index=False)
    calls = []
    real = artefacts.join_measures
    monkeypatch.setattr(artefacts, "join_measures", lambda *a: calls.append(1) or real(*a))
    first = ExplorerData(big[0], res)
    ExplorerData(big[0], res)
    assert len(calls) == 1  # the second start mapped the cache
    m.head(2000).assign(symmetry=0.25, histogram=[[1, 2]] * 2000).to_parquet(file, index=False)
    second = ExplorerData(big[0], res)
    assert len(calls) == 2 and len(list((res / ".explorer").glob("measures-*.arrow"))) == 2
    assert second.measures.names == ["edge_density", "symmetry", "kind"]  # a list column: left out
    i = int(big[2].index[big[2]["path"] == m.at[1500, "path"]][0])
    assert first.measures_of(i) == {} and second.measures_of(i)["symmetry"] == 0.25
