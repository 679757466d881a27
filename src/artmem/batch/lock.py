"""One job at a time per output folder: `OUT/.artmem.lock` holds the writer's pid and host.

Two jobs writing one folder (two `extract` runs with different layers, `score` and `extract`)
would overwrite each other's job record and shards and leave the folder unresumable; the second
job is refused with a one-line message instead. A lock whose process is gone (killed job, same
host, pid no longer running) is stale and taken over; a lock from another host cannot be
checked, so the message says which file to remove once that job is known to be gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)

LOCK_NAME = ".artmem.lock"


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _is_stale(info: dict | None, lock_path: Path) -> bool:
    if info is None:  # unreadable or half-written: stale once older than a writer needs
        try:
            return time.time() - lock_path.stat().st_mtime > 10
        except OSError:
            return True
    return info.get("host") == socket.gethostname() and not _pid_running(int(info.get("pid", -1)))


@contextlib.contextmanager
def output_lock(out: str | Path, job: str) -> Iterator[Path]:
    """Hold OUT/.artmem.lock while a job writes OUT (created if needed).

    Raises:
        ArtmemError: another live job holds the folder.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(), "job": job,
          "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            info = _read(path)
            if _is_stale(info, path):
                if _read(path) == info:  # not replaced meanwhile by a job that took it over first
                    logger.warning("%s: removing the stale lock of a job that is gone (%s)", path, info)
                    path.unlink(missing_ok=True)
                continue
            who = "another artmem job" if info is None else (
                f"another artmem job ({info.get('job')}, pid {info.get('pid')} on {info.get('host')}, "
                f"started {info.get('started')})")
            raise ArtmemError(f"{out}: {who} is writing this folder; wait for it to finish or choose "
                              f"another output folder (remove {path} if that job is gone)") from None
        with os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
        break
    else:
        raise ArtmemError(f"{out}: could not take the output-folder lock {path}")
    try:
        yield path
    finally:
        if (_read(path) or {}).get("pid") == me["pid"]:
            path.unlink(missing_ok=True)
