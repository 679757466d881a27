"""End to end in real headless Chromium (Debian `chromium`, driven by Playwright's Python API):
open the grid, open an artwork, toggle its map, upload an image and see its score."""

from __future__ import annotations

import pytest
from browser_fixtures import shot, wait_js
from web_helpers import png_bytes

pytestmark = pytest.mark.web


def test_grid_artwork_upload(server, browser, shots, web_results, tmp_path):
    base, results = server
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    # grid: highest score first, 12 tiles, thumbnails actually decoded by the browser
    page.goto(base + "/")
    tiles = page.locator("#grid li.tile")
    assert tiles.count() == 12
    best = max(web_results["scores"].items(), key=lambda kv: kv[1])
    first = tiles.first
    assert first.locator(".score").inner_text() == f"{best[1]:.3f}"
    wait_js(page, "Array.from(document.querySelectorAll('#grid img')).slice(0, 4)"
                   ".every(i => i.complete && i.naturalWidth > 0)")
    # filter by a label column through the form
    page.fill("input[name=style]", "style_2")  # a searchable box with the values as suggestions
    page.click("button[type=submit]")
    page.wait_for_url("**style=style_2**")
    labels = page.locator("#grid .labels").all_inner_texts()
    assert labels and all("style_2" in t for t in labels)
    shot(page, shots, "grid")

    # artwork page: score, percentile, measures, map toggle, similar links
    page.goto(base + "/")
    page.locator("#grid li.tile a").first.click()
    page.wait_for_url("**/a/**")
    assert page.locator("#score").inner_text() == f"{best[1]:.3f}"
    assert "highest in the collection · rank 1 of" in page.locator(".scorecard").inner_text()  # the top image
    assert page.locator(".similar li.tile").count() == 8
    page.goto(base + "/artwork/0")  # the one with a stored map
    overlay = page.locator("#overlay")
    assert overlay.is_hidden()
    page.check("#toggle-map")
    assert overlay.is_visible()
    wait_js(page, "document.getElementById('art').naturalWidth > 0")
    wait_js(page, "document.getElementById('overlay').naturalWidth > 0")
    shot(page, shots, "artwork")
    page.locator(".similar li.tile a").first.click()
    page.wait_for_url("**/a/**")

    # upload: choose a file, see progress, then the score and similar artworks
    img = tmp_path / "upload.png"
    img.write_bytes(png_bytes((80, 60), (220, 180, 40)))
    page.goto(base + "/upload")
    page.set_input_files("#file", str(img))
    page.wait_for_selector("#result:not([hidden])", timeout=30_000)
    score_text = page.locator("#result-score").inner_text()
    assert score_text != "—" and 0.0 <= float(score_text) <= 1.0
    assert "percentile" in page.locator("#result-pct").inner_text()
    assert page.locator("#result-similar li").count() == 8
    assert page.locator("#result-labels h3").first.inner_text() == "style-tiny · tiny_test"  # label · model
    assert not (results / "uploads").exists()  # not kept unless asked
    if page.locator("#map-tools").is_visible():  # live maps installed: fetched after the score
        wait_js(page, "!document.getElementById('toggle-map').disabled", timeout=60)
        page.check("#toggle-map")
        assert page.locator("#overlay").is_visible()
    shot(page, shots, "upload")

    # a non-image shows the server's message, not a crash
    bad = tmp_path / "notes.png"
    bad.write_text("hello")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#upload-error:not([hidden])")
    assert "not an image" in page.locator("#upload-error").inner_text()

    # categories page with its box plot
    page.goto(base + "/categories?column=genre")
    assert page.locator(".plot svg").count() == 1
    shot(page, shots, "categories")
    assert errors == []
    page.close()
