"""The explorer's kept sort orders and label codes (`web/orderings.py`), against numpy and pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from artmem.web.orderings import Orderings, first_matches, label_codes, sort_order


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_sort_order_puts_missing_last_and_ties_in_id_order(order):
    rng = np.random.default_rng(0)
    v = rng.integers(0, 20, 5000).astype(float)  # many ties
    v[rng.random(5000) < 0.1] = np.nan
    got = sort_order(pa.array(v, from_pandas=True), order)
    ref = pd.DataFrame({"v": v, "id": np.arange(5000)}).sort_values(
        ["v", "id"], ascending=[order == "asc", True], na_position="last", kind="mergesort")["id"].to_numpy()
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, ref)


def test_sort_order_of_text_is_bytewise():
    words = ["b", "A", "a", None, "ä", "B", "a"]
    got = sort_order(pa.array(words), "asc").tolist()
    present = sorted((w.encode(), i) for i, w in enumerate(words) if w is not None)
    assert got == [i for _, i in present] + [3]


def test_label_codes_of_chunks_with_different_dictionaries():
    a = pa.array(["x", "y", None, "x"]).dictionary_encode()
    b = pa.array(["z", "x", None]).dictionary_encode()
    plain = pa.chunked_array([pa.array(["x", "y", None, "x", "z", "x", None])])
    for column in (pa.chunked_array([a, b]), plain):
        codes, lookup = label_codes(column)
        assert codes.dtype == np.int8 and sorted(lookup) == ["x", "y", "z"]
        decoded = [None if c < 0 else {v: k for k, v in lookup.items()}[c] for c in codes]
        assert decoded == ["x", "y", None, "x", "z", "x", None]


def test_first_matches_equals_filtering_the_whole_order():
    rng = np.random.default_rng(1)
    order = rng.permutation(300_000).astype(np.int32)
    for density in (0.9, 0.01, 0.0002, 0.0):
        mask = rng.random(300_000) < density
        whole = order[mask[order]]
        for offset in (0, 48, 5000, len(whole) - 10, len(whole) + 5):
            offset = max(0, offset)
            got = first_matches(order, lambda ids, m=mask: m[ids], offset, 48)
            np.testing.assert_array_equal(got, whole[offset:offset + 48])
    np.testing.assert_array_equal(first_matches(order, None, 96, 48), order[96:144])


def test_orderings_build_once_in_the_background_and_stay_within_budget():
    calls = []

    def build(k):
        calls.append(k)
        return np.zeros(100, np.int32)  # 400 bytes

    kept = Orderings(budget_bytes=1000)
    assert kept.get(("a",), lambda: build("a"), 400) is None  # not ready yet: the caller uses DuckDB
    kept.wait()
    assert kept.get(("a",), lambda: build("a"), 400) is not None and calls == ["a"]
    kept.get(("b",), lambda: build("b"), 400)
    kept.wait()
    kept.get(("a",), lambda: build("a"), 400)  # a used last: b goes when c comes
    kept.get(("c",), lambda: build("c"), 400)
    kept.wait()
    assert set(k for k, in kept._kept) == {"a", "c"}
    assert kept.get(("huge",), lambda: build("huge"), 10_000) is None
    kept.wait()
    assert "huge" not in calls  # larger than the whole budget: never built


def test_a_failed_build_leaves_the_caller_on_duckdb(caplog):
    kept = Orderings(background=False)

    def broken():
        raise ValueError("sort values for 3 rows, table has 4")

    assert kept.get(("x",), broken, 10) is None
    assert "could not prepare" in caplog.text


def test_small_collection_pages_from_kept_orders_and_after_an_upload(web_coll, web_results, tmp_path):
    """A small collection sorts by arrays aligned with the ids (scores, measures): once their
    orders are kept, pages come from them and equal pandas; an upload (a new table) starts new
    orders, and until they are ready DuckDB answers with the new row in place."""
    import io
    import shutil

    from PIL import Image

    from artmem.web.data import ExplorerData

    res = tmp_path / "res"
    shutil.copytree(web_results["dir"], res)
    data = ExplorerData(web_coll, res)
    table = web_coll.table.reset_index(drop=True)

    def reference(sort, order, style, n_rows, extra_score=None):
        score = table["path"].map(web_results["scores"]).to_numpy(dtype=float)
        values = {"score": score, "measure:edge_density": np.linspace(0, 1, len(table)),
                  "path": table["path"].to_numpy()}[sort]
        styles = table["style"].to_numpy(dtype=object)
        if n_rows > len(table):  # the upload: a score, no measure, no style
            values = np.append(values, extra_score if sort == "score" else (np.nan if sort != "path" else "uploads/x"))
            styles = np.append(styles, None)
        df = pd.DataFrame({"v": values, "id": np.arange(n_rows), "style": styles})
        if style:
            df = df[df["style"] == style]
        return df.sort_values(["v", "id"], ascending=[order == "asc", True], na_position="last",
                              kind="mergesort")["id"].tolist()

    cases = [(s, o, st) for s in ("score", "measure:edge_density") for o in ("asc", "desc")
             for st in (None, "style_1")]
    for sort, order, style in cases:  # DuckDB answers and the orders start
        filters = {"style": style} if style else {}
        assert data.page(filters, sort=sort, order=order, offset=0, limit=50)[1].tolist() == \
            reference(sort, order, style, len(table))
    data.store.orderings.wait()
    data._cache.clear()  # the page cache would answer otherwise
    for sort, order, style in cases:
        filters = {"style": style} if style else {}
        assert data.page(filters, sort=sort, order=order, offset=2, limit=5)[1].tolist() == \
            reference(sort, order, style, len(table))[2:7]
    kept = data.store.orderings._kept
    assert sum(1 for k in kept if k[0] == "order") == 4 and any(k[0] == "codes" for k in kept)

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buf, "PNG")
    new_id, created = data.add_upload(buf.getvalue(), "PNG", "x.png", score=0.99, labels={})
    assert created and new_id == len(table) and not data.store.orderings._kept  # a new table: orders start over
    n = len(table) + 1
    for _ in range(2):  # first DuckDB, then the new orders
        got = data.page({}, sort="score", order="desc", offset=0, limit=50)[1].tolist()
        assert got == reference("score", "desc", None, n, extra_score=0.99) and got[0] == new_id
        data.store.orderings.wait()
        data._cache.clear()
    assert any(k[0] == "order" and k[3][1] == n for k in data.store.orderings._kept)  # built on the new table


def test_exit_waits_for_the_running_build_and_drops_the_queued_ones(tmp_path):
    """A process that ends while a sort is being built waits for that build only (a daemon thread
    left inside Arrow's sort during interpreter shutdown crashed the process now and then)."""
    import subprocess
    import sys

    script = tmp_path / "exit.py"
    script.write_text(
        "import sys, time\n"
        "import numpy as np\n"
        "from artmem.web.orderings import Orderings\n"
        "kept = Orderings()\n"
        "def slow(name):\n"
        "    time.sleep(0.5)\n"
        "    print(name, 'built', flush=True)\n"
        "    return np.zeros(3, np.int32)\n"
        "kept.get(('a',), lambda: slow('a'), 12)\n"
        "kept.get(('b',), lambda: slow('b'), 12)\n"
        "time.sleep(0.1)\n"  # a is running, b is queued
        "print('exiting', flush=True)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["exiting", "a built"] and "b built" not in done.stdout
