"""End to end in real headless Chromium (Debian `chromium`, driven by Playwright's Python API):
open the grid, open an artwork, toggle its map, upload an image and see its score."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from web_helpers import png_bytes

pytestmark = pytest.mark.web

CHROMIUM = os.environ.get("ARTMEM_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = os.environ.get("ARTMEM_WEB_SCREENSHOTS")  # folder: save screenshots of each page there


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(web_coll, web_results, engine, tmp_path_factory):
    """uvicorn in a thread on a free loopback port, over the synthetic collection + results."""
    import uvicorn

    from artmem.web.app import create_app

    results = tmp_path_factory.mktemp("browser_res") / "analysis"
    shutil.copytree(web_results["dir"], results)
    app = create_app(web_coll, results=results, engine=engine, background=False, per_page=12)
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}", results
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (`make web-deps`) to run browser tests")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        yield b
        b.close()


def _wait_js(page, expr: str, timeout: float = 30.0) -> None:
    """Poll a JS expression from Python (page.evaluate goes through CDP, so the app's strict CSP,
    which forbids eval, does not apply as it would to page.wait_for_function's in-page polling)."""
    deadline = time.time() + timeout
    while not page.evaluate(expr):
        assert time.time() < deadline, f"timed out waiting for {expr}"
        time.sleep(0.1)


def _shot(page, name):
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def test_grid_artwork_upload(server, browser, web_results, tmp_path):
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
    _wait_js(page, "Array.from(document.querySelectorAll('#grid img')).slice(0, 4)"
                   ".every(i => i.complete && i.naturalWidth > 0)")
    # filter by a label column through the form
    page.select_option("select[name=style]", "style_2")
    page.click("button[type=submit]")
    page.wait_for_url("**style=style_2**")
    labels = page.locator("#grid .labels").all_inner_texts()
    assert labels and all("style_2" in t for t in labels)
    _shot(page, "grid")

    # artwork page: score, percentile, measures, map toggle, similar links
    page.goto(base + "/")
    page.locator("#grid li.tile a").first.click()
    page.wait_for_url("**/artwork/**")
    assert page.locator("#score").inner_text() == f"{best[1]:.3f}"
    assert "percentile" in page.locator(".scorecard").inner_text()
    assert page.locator(".similar li.tile").count() == 8
    page.goto(base + "/artwork/0")  # the one with a stored map
    overlay = page.locator("#overlay")
    assert overlay.is_hidden()
    page.check("#toggle-map")
    assert overlay.is_visible()
    _wait_js(page, "document.getElementById('art').naturalWidth > 0")
    _wait_js(page, "document.getElementById('overlay').naturalWidth > 0")
    _shot(page, "artwork")
    page.locator(".similar li.tile a").first.click()
    page.wait_for_url("**/artwork/**")

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
    assert page.locator("#result-labels h3").first.inner_text() == "style-tiny"
    assert not (results / "uploads").exists()  # not kept unless asked
    if page.locator("#map-tools").is_visible():  # live maps installed: fetched after the score
        _wait_js(page, "!document.getElementById('toggle-map').disabled", timeout=60)
        page.check("#toggle-map")
        assert page.locator("#overlay").is_visible()
    _shot(page, "upload")

    # a non-image shows the server's message, not a crash
    bad = tmp_path / "notes.png"
    bad.write_text("hello")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#upload-error:not([hidden])")
    assert "not an image" in page.locator("#upload-error").inner_text()

    # categories page with its box plot
    page.goto(base + "/categories?column=genre")
    assert page.locator(".plot svg").count() == 1
    _shot(page, "categories")
    assert errors == []
    page.close()
