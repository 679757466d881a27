"""The explorer in headless Chromium: the embedding map (box and lasso selection fill the grid
below and export as CSV), search, sort by a measure, and every page at desktop and phone widths
(screenshots saved; no page scrolls sideways on a phone)."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest
from browser_fixtures import DESKTOP, PHONE, no_horizontal_overflow, shot, wait_js
from web_helpers import png_bytes

pytestmark = pytest.mark.web


def _in_polygon(x, y, poly) -> bool:
    inside = False
    for a in range(len(poly)):
        (xa, ya), (xb, yb) = poly[a], poly[a - 1]
        if (ya > y) != (yb > y) and x < (xb - xa) * (y - ya) / (yb - ya) + xa:
            inside = not inside
    return inside


def _open_map(page, base):
    page.goto(base + "/map")
    wait_js(page, "window.artmemMap && window.artmemMap.ready", timeout=120)
    box = page.locator("#map").bounding_box()
    pts = page.evaluate("window.artmemMap.screenPoints()")
    keys = page.evaluate("window.artmemMap.keys()")
    return box, pts, keys


def _selected_tiles(page) -> list[str]:
    return page.locator("#sel-grid li.tile").evaluate_all("els => els.map(e => e.dataset.key)")


def test_embedding_map_selection_filters_the_grid(server, browser, shots, web_results):
    base, _ = server
    page = browser.new_page(viewport=DESKTOP, accept_downloads=True)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    box, pts, keys = _open_map(page, base)
    assert len(pts) == len(web_results["paths"])
    assert page.locator("#sel-grid li").count() == 0

    # box selection: the left half of the points (by screen x), dragged on the canvas
    xs = sorted(x for x, _ in pts)
    mid = (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2
    y0, y1 = min(y for _, y in pts) - 5, max(y for _, y in pts) + 5
    x0 = xs[0] - 5
    expected = {k for k, (x, y) in zip(keys, pts, strict=True) if x0 <= x <= mid and y0 <= y <= y1}
    page.click("button[data-mode=box]")
    page.mouse.move(box["x"] + x0, box["y"] + y0)
    page.mouse.down()
    page.mouse.move(box["x"] + mid, box["y"] + y1, steps=8)
    page.mouse.up()
    assert 0 < len(expected) < len(keys)
    assert set(_selected_tiles(page)) == expected == set(page.evaluate("window.artmemMap.selectedKeys()"))
    assert page.locator("#sel-count").inner_text() == f"{len(expected)} selected"
    shot(page, shots, "map-selection")

    # the CSV export holds exactly the selection, with paths and scores
    with page.expect_download() as dl:
        page.click("#sel-csv")
    rows = list(csv.DictReader(io.StringIO(open(dl.value.path(), encoding="utf-8").read())))
    assert {r["key"] for r in rows} == expected
    scores = web_results["scores"]
    for r in rows:
        if r["path"] in scores:
            assert float(r["score"]) == pytest.approx(scores[r["path"]], abs=1e-4)

    # lasso: a triangle around part of the map
    cx = sum(x for x, _ in pts) / len(pts)
    tri = [(cx, y0), (xs[-1] + 5, y1), (x0, y1)]
    expected = {k for k, (x, y) in zip(keys, pts, strict=True) if _in_polygon(x, y, tri)}
    page.click("button[data-mode=lasso]")
    page.mouse.move(box["x"] + tri[0][0], box["y"] + tri[0][1])
    page.mouse.down()
    for x, y in (*tri[1:], tri[0]):
        page.mouse.move(box["x"] + x, box["y"] + y, steps=12)
    page.mouse.up()
    assert expected and set(_selected_tiles(page)) == expected
    # colour by a label: the legend lists its values
    page.select_option("#color-by", "style")
    assert "style_0" in page.locator("#map-legend").inner_text()
    page.click("#sel-clear")
    assert page.locator("#sel-grid li").count() == 0
    assert errors == []
    page.close()


def test_search_and_sort_by_a_measure(server, browser, web_results, web_coll):
    base, results = server
    page = browser.new_page(viewport=DESKTOP)
    page.goto(base + "/")
    page.fill("#q", "landscape")
    page.press("#q", "Enter")
    page.wait_for_url("**q=landscape**")
    titles = page.locator("#grid li.tile a").evaluate_all("els => els.map(e => e.title)")
    n = int((web_coll.table["genre"] == "landscape").sum())
    assert page.locator("#total").inner_text() == str(n)
    assert titles and all("landscape" in t for t in titles)

    page.goto(base + "/")
    page.select_option("#sort", "measure:edge_density")
    page.select_option("select[name=order]", "desc")
    page.click("button[type=submit]")
    page.wait_for_url("**sort=measure%3Aedge_density**")
    m = pd.read_parquet(results / "measures" / "measures.parquet").sort_values("edge_density", ascending=False)
    first = page.locator("#grid li.tile a").first.get_attribute("title")
    assert first == m["path"].iloc[0]
    page.close()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_every_page_fits_and_is_screenshot(server, browser, shots, viewport, tmp_path):
    base, _ = server
    page = browser.new_page(viewport=viewport)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    pages = {"grid": "/", "search": "/?q=portrait&style=style_1", "artwork": "/artwork/0",
             "categories": "/categories?column=style", "api": "/api", "error": "/a/000000000000",
             "upload": "/upload"}
    for name, url in pages.items():
        page.goto(base + url)
        if name in ("grid", "search"):
            wait_js(page, "Array.from(document.querySelectorAll('#grid img')).slice(0, 4)"
                          ".every(i => i.complete && i.naturalWidth > 0)")
        if name == "artwork":
            wait_js(page, "document.getElementById('art').naturalWidth > 0")
            page.check("#toggle-map")
            wait_js(page, "document.getElementById('overlay').naturalWidth > 0")
        shot(page, shots, name)
        assert no_horizontal_overflow(page), f"{name} scrolls sideways at {viewport['width']} px"
    # the upload flow, then its result
    img = tmp_path / "upload.png"
    img.write_bytes(png_bytes((120, 90), (40, 120, 200)))
    page.set_input_files("#file", str(img))
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    assert "percentile" in page.locator("#result-pct").inner_text() or "highest" in page.locator("#result-pct").inner_text()
    shot(page, shots, "upload-result")
    assert no_horizontal_overflow(page)
    # the map, with the thumbnails drawn when zoomed in
    page.goto(base + "/map")
    wait_js(page, "window.artmemMap && window.artmemMap.ready", timeout=120)
    for _ in range(3):
        page.click("#zoom-in")
    page.wait_for_timeout(600)
    shot(page, shots, "map")
    assert no_horizontal_overflow(page)
    assert errors == []
    page.close()
