"""The plain `ray start` recipe of docs/scaling.md, run on this machine: a head started with
`ray start --head` (its own port, temporary folder and token), then `artmem score
collection.parquet --engine ray --ray-address HOST:PORT` as a separate process attaching to it.
Its scores, errors and shard files equal the local engine's.

The head is stopped by signalling only the processes this test started (its process group, then
any Ray worker carrying this test's marker in its environment): `ray stop` would stop every Ray
instance on the machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from collection_support import copy_images

pytest.importorskip("ray")
pytest.importorskip("duckdb")

RAY = Path(sys.executable).with_name("ray")
MARKER = "ARTMEM_TEST_RAY_HEAD"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _marked_pids(marker: str) -> list[int]:
    """Processes whose environment holds MARKER=marker (the head's Ray workers)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                env = (d / "environ").read_bytes()
            except OSError:
                continue
            if f"{MARKER}={marker}".encode() in env.split(b"\0"):
                pids.append(int(d.name))
    return pids


def _stop(proc: subprocess.Popen, marker: str) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        for pid in _marked_pids(marker):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            continue
        if not _marked_pids(marker):
            return


@pytest.fixture
def ray_head():
    """`ray start --head --block` in its own session; yields (address, env for clients)."""
    if not RAY.exists():
        pytest.skip("the `ray` command is not installed next to this Python")
    tmp = Path(tempfile.mkdtemp(prefix="rh-", dir="/tmp"))  # short: Ray's socket paths are limited
    port, marker = _free_port(), secrets.token_hex(8)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, MARKER: marker, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [str(RAY), "start", "--head", "--block", f"--port={port}", f"--temp-dir={tmp / 'ray'}", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats"],
        cwd=tmp, env=env, stdout=open(tmp / "head.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while "Ray runtime started" not in (tmp / "head.log").read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("ray start --head did not start:\n" + (tmp / "head.log").read_text()[-3000:])
            time.sleep(1)
        yield f"127.0.0.1:{port}", {k: v for k, v in env.items() if k != MARKER}
    finally:
        _stop(proc, marker)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.ray
@pytest.mark.slow  # starts a Ray head and a second driver process: ~1-2 min
@pytest.mark.timeout(900)
def test_plain_ray_start_recipe(ray_head, tiny_collection_file, tmp_path):
    from artmem.batch.results import read_errors, read_scores
    from artmem.cli import main

    address, env = ray_head
    coll = str(tiny_collection_file)
    base = ["score", coll, "--model", "tiny_test", "--device", "cpu", "--no-progress", "--shard-size", "8"]
    assert main(base + ["-o", str(tmp_path / "local"), "--workers", "0"]) == 0
    cmd = [sys.executable, "-m", "artmem.cli", *base, "--engine", "ray", "--ray-address", address,
           "-o", str(tmp_path / "cluster")]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    a, b = read_scores(tmp_path / "local"), read_scores(tmp_path / "cluster")
    assert a["path"].tolist() == b["path"].tolist() and len(a) == 20
    assert (a["score"] - b["score"]).abs().max() < 1e-6
    pd.testing.assert_frame_equal(read_errors(tmp_path / "local"), read_errors(tmp_path / "cluster"))
    shards = sorted(f.name for f in (tmp_path / "cluster" / "shards").iterdir())
    assert shards == sorted(f.name for f in (tmp_path / "local" / "shards").iterdir())


@pytest.fixture
def tiny_collection_file(tmp_path, synthetic_collection):
    """20 synthetic images, an empty file and a missing file, saved as collection.parquet."""
    from artmem.data.collection import Collection

    root = tmp_path / "images"
    paths = copy_images(synthetic_collection, root)
    (root / "bad").mkdir()
    (root / "bad" / "empty.jpg").write_bytes(b"")
    coll = Collection(pd.DataFrame({"path": paths + ["bad/empty.jpg", "bad/missing.jpg"]}), str(root), "cluster-test")
    coll.save(tmp_path / "coll")
    return tmp_path / "coll" / "collection.parquet"
