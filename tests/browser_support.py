"""What every browser test shares: Debian's headless Chromium driven by Playwright, and a free
loopback port for the server under test."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("ARTMEM_CHROMIUM", "/usr/bin/chromium")
# the background-networking flags keep Chromium from calling out of this offline machine
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def chromium():
    """A launched headless Chromium; skips the test when Chromium or Playwright is missing."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (`make web-deps`) to run browser tests")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()
