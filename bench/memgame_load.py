"""Load test of `artmem memgame serve`: N simulated participants play their whole session at once
against one server on loopback (127.0.0.1 only), then the database is checked against what they
were told was stored.

Each participant (its own cookie jar) opens the page, starts, fetches its level's images (the
page's preload), and posts every trial in order, `--pace` seconds apart (the real game: 1.4 s),
until its session is finished; every loop is bounded (a session has a fixed number of trials, and
`--timeout` stops everything). Reports the p50/p99 latency of storing a trial (POST /api/trial,
as the client sees it: it includes the fsync of the commit), the throughput against the named
baseline "N participants at the game's real pace" (N / 1.4 s trials per second), 5xx and
transport errors (a post that fails is resent, as the page does; a 409 "replay" then means it
was stored), the server's CPU time per request, and lost responses (acknowledged but not in the
database, or the reverse). Exits 1 on any 5xx or lost response.

    .venv/bin/python bench/memgame_load.py                      # 100 participants, 198 trials each (~5 min)
    .venv/bin/python bench/memgame_load.py --participants 10 --pace 0.1   # a small, fast run
    .venv/bin/python bench/memgame_load.py --timeout 90         # 100 at the real pace, 90 s
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

REAL_PACE_S = 1.4  # 600 ms image + 800 ms fixation


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_study(folder: Path, participants: int, seed: int) -> Path:
    """A LaMem-shaped study (66 targets + 30 fillers + 12 vigilance per level, 12 practice trials)
    over tiny synthetic images, with at least one session per participant."""
    from PIL import Image

    from artmem.memgame.design import DesignConfig, design_study

    images = folder / "images"
    images.mkdir(parents=True)
    n_images, responses = 330, max(1, -(-participants * 66 // 330))
    rng = np.random.default_rng(seed)
    for i in range(n_images):
        Image.new("RGB", (64, 64), tuple(int(c) for c in rng.integers(0, 256, 3))).save(images / f"i{i:04d}.jpg")
    study = folder / "study"
    design_study(images, study, DesignConfig(responses_per_image=responses, seed=seed))
    return study


def start_server(study: Path, port: int, log: Path) -> subprocess.Popen:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "artmem.cli", "-q", "memgame", "serve", str(study), "--host", "127.0.0.1",
           "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start in 60 s")


async def participant(base: str, k: int, pace: float, delay: float, deadline: float, out: dict) -> None:
    """One participant's whole session, arriving `delay` s after the start; records (kind,
    status, seconds) and acknowledged trials."""
    rng = random.Random(k)
    await asyncio.sleep(delay)
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        async def call(kind, method, url, **kw):
            t0 = time.perf_counter()
            try:
                r = await c.request(method, url, **kw)
                status = r.status_code
            except httpx.HTTPError as exc:
                r, status = None, f"transport:{type(exc).__name__}"
            out["records"].append((kind, status, time.perf_counter() - t0))
            return r

        r = await call("page", "GET", "/")
        study_id = re.search(r'data-study="([0-9a-f]+)"', r.text).group(1) if r is not None else ""
        r = await call("start", "POST", "/api/start",
                       json={"study": study_id, "consent": True, "participant": f"load_{k:04d}"})
        if r is None or r.status_code != 200:
            return
        state = r.json()
        while state["status"] in ("practice", "playing") and time.perf_counter() < deadline:
            srcs = sorted({t["src"] for t in state["trials"]})
            for i in range(0, len(srcs), 6):  # the page's preload (a browser fetches 6 at a time)
                if time.perf_counter() >= deadline:
                    return
                await asyncio.gather(*(call("stimulus", "GET", "/" + s) for s in srcs[i: i + 6]))
            for t in state["trials"][state["next_position"]:]:
                if time.perf_counter() >= deadline:
                    return
                # the practice tells which images are repeats: pass it; then press at random
                pressed = bool(t["repeat"]) if "repeat" in t else rng.random() < 0.5
                body = {"study": study_id, "level": state["level"], "position": t["position"],
                        "pressed": pressed, "rt_ms": 500.0 if pressed else None, "onset_ms": 1.0,
                        "offset_ms": 601.0, "end_ms": 1401.0, "input": "key" if pressed else "none"}
                for _ in range(5):  # like the page: resend after a transport error
                    r = await call("trial", "POST", "/api/trial", json=body)
                    if r is not None:
                        break
                    await asyncio.sleep(1.0)
                # 201 stored now; 409 "replay": stored by a try whose answer was lost
                if r is not None and (r.status_code == 201 or (r.status_code == 409 and r.json().get("reason") == "replay")):
                    out["acked"].add((f"load_{k:04d}", state["level"], t["position"]))
                elif r is not None:
                    return
                await asyncio.sleep(pace * rng.uniform(0.8, 1.2))
            r = await call("state", "GET", "/api/state")
            if r is None or r.status_code != 200:
                return
            state = r.json()


async def run(base: str, n: int, pace: float, ramp: float, timeout: float) -> tuple[dict, float]:
    out = {"records": [], "acked": set()}
    t0 = time.perf_counter()
    await asyncio.gather(*(participant(base, k, pace, ramp * k / n, t0 + timeout, out) for k in range(n)))
    return out, time.perf_counter() - t0


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def stored_trials(study: Path) -> set:
    with sqlite3.connect(study / "memgame.sqlite") as con:
        rows = con.execute("SELECT p.code, t.level, t.position FROM trials t "
                           "JOIN participants p ON p.id = t.participant").fetchall()
    return set(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--participants", type=int, default=100)
    ap.add_argument("--pace", type=float, default=REAL_PACE_S,
                    help="seconds between a participant's trials (the real game: 1.4)")
    ap.add_argument("--ramp", type=float, default=30,
                    help="participants arrive evenly over this many seconds (0: all at once)")
    ap.add_argument("--timeout", type=float, default=600, help="stop every participant after this")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="artmem_memgame_load_"))
    study = make_study(tmp, args.participants, args.seed)
    port = free_port()
    server = start_server(study, port, tmp / "server.log")
    cpu0 = process_cpu_s(server.pid)
    try:
        out, elapsed = asyncio.run(run(f"http://127.0.0.1:{port}", args.participants, args.pace, args.ramp,
                                 args.timeout))
        server_cpu = process_cpu_s(server.pid) - cpu0
    finally:
        server.terminate()
        server.wait(30)
    records = out["records"]
    statuses = Counter(str(s) for _, s, _ in records)
    stored = stored_trials(study)
    lost = out["acked"] - stored
    unacked = stored - out["acked"]
    trial_lat = np.array([s for kind, st, s in records if kind == "trial" and st == 201]) * 1000
    n_trials = len(trial_lat)
    need = args.participants / REAL_PACE_S
    print(f"participants {args.participants}, pace {args.pace:g} s/trial, {elapsed:.1f} s, "
          f"{len(records)} requests")
    print(f"trials stored {n_trials} ({n_trials / elapsed:.0f}/s); baseline (all at the real pace "
          f"of {REAL_PACE_S} s/trial): {need:.0f}/s -> {n_trials / elapsed / need:.1f}x")
    if n_trials:
        print(f"store latency (POST /api/trial): p50 {np.percentile(trial_lat, 50):.1f} ms, "
              f"p99 {np.percentile(trial_lat, 99):.1f} ms, max {trial_lat.max():.1f} ms")
    stim_lat = np.array([s for kind, st, s in records if kind == "stimulus" and st == 200]) * 1000
    if len(stim_lat):
        print(f"stimulus latency (preload GET): p50 {np.percentile(stim_lat, 50):.1f} ms, "
              f"p99 {np.percentile(stim_lat, 99):.1f} ms over {len(stim_lat)} requests")
    print(f"server CPU: {server_cpu:.1f} s = {1000 * server_cpu / max(len(records), 1):.2f} ms per request "
          f"({server_cpu / elapsed:.0%} of one core)")
    print("statuses:", dict(statuses))
    print(f"acknowledged but not stored (lost): {len(lost)}; stored but not acknowledged: {len(unacked)}")
    transport = sum(n for s, n in statuses.items() if s.startswith("transport"))
    if transport:
        print(f"{transport} transport error(s), each resent as the page does")
    server_errors = sum(n for s, n in statuses.items() if s.startswith("5"))
    return 1 if server_errors or lost else 0


if __name__ == "__main__":
    sys.exit(main())
