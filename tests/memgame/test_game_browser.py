"""End to end in headless Chromium (Debian `chromium`, driven by Playwright like tests/web): a
scripted participant plays the practice and a 13-trial level with real key presses against
`artmem memgame serve` in a subprocess, which is SIGKILLed mid-level and restarted; the
participant comes back and resumes. The export then holds exactly the presses made, and the
measured image/fixation durations are within a frame of 600/800 ms at the median."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from memgame_helpers import TINY

import artmem
from artmem.memgame.design import DesignConfig, design_study
from artmem.memgame.export import export_study
from artmem.memgame.study import Study
from browser_support import chromium, free_port

pytestmark = pytest.mark.web

FRAME_MS = 17


def _serve(study_dir: Path, port: int, log: Path) -> subprocess.Popen:
    """`artmem memgame serve` in its own process (so it can really be killed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(artmem.__file__).parents[1]), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen([sys.executable, "-m", "artmem.cli", "memgame", "serve", str(study_dir),
                             "--port", str(port)], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the server did not start:\n" + log.read_text())


def _stored(study: Study) -> list[tuple]:
    with sqlite3.connect(study.db_path) as con:
        return con.execute("SELECT level, position, pressed FROM trials ORDER BY level, position").fetchall()


def _wait(page, expr: str, timeout: float = 30.0):
    deadline = time.time() + timeout
    while not (value := page.evaluate(expr)):
        assert time.time() < deadline, f"timed out waiting for {expr}"
        time.sleep(0.05)
    return value


def _play(page, presses: set[int], pressed: dict, level: int, stop_after: int | None = None,
          taps: frozenset = frozenset()) -> None:
    """Press Space (tap the image for positions in `taps`) while the image of each position in
    `presses` is on screen; return when the level has left the screen, or once position
    `stop_after` has been shown."""
    while True:
        phase, pos, shown = page.evaluate(
            "[document.body.dataset.phase, document.body.dataset.position, document.body.dataset.shown]")
        if phase != "playing":
            return
        if pos is None:  # the level has started; its first image comes with the next frame
            time.sleep(0.01)
            continue
        p = int(pos)
        if stop_after is not None and p > stop_after:
            return
        if shown == "image" and p in presses and (level, p) not in pressed:
            if p in taps:
                page.tap("#stage")
            else:
                page.keyboard.press("Space")
            pressed[(level, p)] = 1
        time.sleep(0.02)


@pytest.fixture
def browser():
    with chromium() as b:
        yield b


def test_play_kill_resume_export(browser, image_folder, tmp_path):
    design_study(image_folder, tmp_path / "study", DesignConfig(**TINY, seed=3))
    study = Study.open(tmp_path / "study")
    practice, main = study.level(0, 0), study.level(0, 1)  # the first participant gets session 0
    # the script: press on every repeat; on the main level also once on a new image (a false
    # alarm) and miss one target repeat
    practice_presses = set(practice.loc[practice["repeat"] == 1, "position"])
    target_repeats = main.loc[(main["kind"] == "target") & (main["repeat"] == 1), "position"].tolist()
    main_presses = set(main.loc[main["repeat"] == 1, "position"]) - {target_repeats[-1]}
    main_presses.add(int(main.loc[main["repeat"] == 0, "position"].iloc[0]))
    port, log = free_port(), tmp_path / "server.log"
    base = f"http://127.0.0.1:{port}"
    server = _serve(study.root, port, log)
    try:
        context = browser.new_context(viewport={"width": 900, "height": 800}, has_touch=True)
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        pressed: dict = {}

        page.goto(base + "/?participant=E2E_1")
        _wait(page, "document.body.dataset.phase === 'consent'")
        page.check("#consent-check")
        page.click("#consent-button")
        _wait(page, "document.body.dataset.ready === '1'")
        assert page.locator("#level-title").inner_text().startswith("Practice")
        page.keyboard.press("Space")
        _play(page, practice_presses, pressed, 0)

        _wait(page, "document.body.dataset.ready === '1' && document.body.dataset.level === '1'")
        assert "found 1 of 1" in page.locator("#practice-result").inner_text()
        page.keyboard.press("Space")
        _play(page, main_presses, pressed, 1, stop_after=5)
        deadline = time.time() + 10
        while len(_stored(study)) < len(practice) + 5:  # trials 0-4 of the main level stored
            assert time.time() < deadline
            time.sleep(0.02)
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        before = _stored(study)
        # the trial on screen is finished, its post fails: the page pauses and keeps it
        _play(page, main_presses, pressed, 1)
        _wait(page, "document.body.dataset.phase === 'paused'")
        server = _serve(study.root, port, log)
        after = _stored(study)
        assert after[: len(before)] == before  # nothing acknowledged was lost
        # the page resends what it kept, then offers to continue; the participant reloads instead
        _wait(page, "document.body.dataset.phase === 'ready'", timeout=20)
        page.reload()
        _wait(page, "document.body.dataset.ready === '1'")
        assert page.locator("#resume-note").is_visible()
        resume_at = len(_stored(study)) - len(practice)
        assert resume_at > 5
        page.keyboard.press("Space")
        _wait(page, "document.body.dataset.phase === 'playing'")
        assert int(_wait(page, "document.body.dataset.position")) == resume_at  # drawn on the next frame
        tapped = max(p for p in main_presses if p >= resume_at)  # one answer by touch
        _play(page, main_presses, pressed, 1, taps=frozenset({tapped}))
        _wait(page, "document.body.dataset.phase === 'done'")
        assert len(page.locator("#completion-code").inner_text()) == 8
        assert errors == []
        # the admin token printed at (re)start opens the progress report
        token = re.findall(r"token: (\S+)", log.read_text())[-1]
        assert httpx.get(base + "/admin/api/progress").status_code == 401
        progress = httpx.get(base + "/admin/api/progress", headers={"Authorization": f"Bearer {token}"}).json()
        assert [(p["participant"], p["status"]) for p in progress["participants"]] == [("E2E_1", "finished")]
        page.goto(base + "/admin")  # redirected to the login form
        page.fill("input[name=token]", token)
        page.click("button[type=submit]")
        page.wait_for_url("**/admin")
        assert "E2E_1" in page.locator("#participants").inner_text()
        context.close()
    finally:
        server.kill()
        server.wait(10)

    out = tmp_path / "export"
    export_study(study.root, out)
    trials = pd.read_parquet(out / "trials.parquet")
    # every trial stored exactly once, each with exactly the scripted press
    got = {(r.level, r.position): r.pressed for r in trials.itertuples()}
    want = {(lv, int(p)): int((lv, int(p)) in pressed) for lv, seq in ((0, practice), (1, main))
            for p in seq["position"]}
    assert got == want
    assert trials["resumed"].sum() == 1
    inputs = trials.loc[trials["pressed"] == 1].set_index(["level", "position"])["input"]
    assert inputs.pop((1, tapped)) == "touch" and (inputs == "key").all()
    assert trials.loc[trials["pressed"] == 1, "rt_ms"].between(0, 1400).all()
    responses = pd.read_parquet(out / "responses.parquet")
    assert sorted(responses["position"]) == sorted(target_repeats)
    assert dict(zip(responses["position"], responses["hit"], strict=True)) == {
        p: int(p in main_presses) for p in target_repeats}
    assert (responses["participant"] == "E2E_1").all()
    # rAF timing: image 600 ms and fixation 800 ms within one frame at the median
    print("measured timing:", json.loads((out / "summary.json").read_text())["timing"])
    assert abs(np.median(trials["image_ms"]) - 600) <= FRAME_MS
    assert abs(np.median(trials["fixation_ms"]) - 800) <= FRAME_MS
