"""Fixtures of the browser tests: the explorer served by uvicorn on a free loopback port, headless
Chromium (Debian's, driven by Playwright), and screenshots saved into one folder.

Screenshots go to $ARTMEM_SCREENSHOTS when set, else to a pytest temporary folder; the folder is
printed at the end of the run.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from browser_support import chromium, free_port

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def server(web_coll, web_results, engine, tmp_path_factory):
    """uvicorn in a thread on a free loopback port, over the synthetic collection + results."""
    import uvicorn

    from artmem.web.app import create_app

    results = tmp_path_factory.mktemp("browser_res") / "analysis"
    shutil.copytree(web_results["dir"], results)
    app = create_app(web_coll, results=results, engine=engine, background=False, per_page=12)
    port = free_port()
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
    with chromium() as b:
        yield b


@pytest.fixture(scope="session")
def shots(request, tmp_path_factory) -> Path:
    """The screenshot folder ($ARTMEM_SCREENSHOTS or a temporary one), printed at the end."""
    folder = Path(os.environ.get("ARTMEM_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    n = len(list(folder.glob("*.png")))
    if reporter is not None:
        reporter.write_line(f"\nbrowser screenshots ({n}): {folder}")


def shot(page, folder: Path, name: str) -> Path:
    """A full-page screenshot `name`.png, named by the viewport width (e.g. grid-390.png)."""
    path = folder / f"{name}-{page.viewport_size['width']}.png"
    # lazy images below the fold would be blank in a full-page picture: load them all first
    page.evaluate("document.querySelectorAll('img[loading=lazy]').forEach(i => { i.loading = 'eager'; })")
    wait_js(page, "Array.from(document.querySelectorAll('img')).every(i => i.complete)")
    page.screenshot(path=str(path), full_page=True)
    return path


def wait_js(page, expr: str, timeout: float = 30.0) -> None:
    """Poll a JS expression from Python (page.evaluate goes through CDP, so the app's strict CSP,
    which forbids eval, does not apply as it would to page.wait_for_function's in-page polling)."""
    deadline = time.time() + timeout
    while not page.evaluate(expr):
        assert time.time() < deadline, f"timed out waiting for {expr}"
        time.sleep(0.1)


def no_horizontal_overflow(page) -> bool:
    """Nothing on the page is wider than the viewport (no sideways scrolling on a phone)."""
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
