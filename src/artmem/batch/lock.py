"""One job at a time per output folder: `OUT/.artmem.lock` holds the writer's pid and host.

Two jobs writing one folder (two `extract` runs with different layers, `score` and `extract`)
would overwrite each other's job record and shards and leave the folder unresumable; the second
job is refused with a one-line message instead.

Local (or shared) folder: the lock file is created with O_EXCL. A lock whose process is gone
(killed job, same host, pid no longer running) is stale and taken over; a lock from another host
cannot be checked, so the message says which file to remove once that job is known to be gone.

Object store (an fsspec URL): the lock is an object created only if absent (a conditional PUT,
If-None-Match, on S3; fsspec's check-then-write on stores without one). Its holder rewrites it
every `HEARTBEAT_S` seconds; a lock whose heartbeat is older than `STALE_AFTER_S` belongs to a job
that is gone (a killed driver cannot remove it) and is taken over with a warning. What this does
not guarantee: two jobs that both find the same stale lock and take it over in the same instant,
and a job paused (suspended, network cut) for longer than `STALE_AFTER_S` that resumes writing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from artmem.batch import storage
from artmem.batch.storage import Location
from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)

LOCK_NAME = ".artmem.lock"
HEARTBEAT_S = 60.0
STALE_AFTER_S = 600.0


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _read(path: Location) -> dict | None:
    try:
        info = json.loads(storage.read_text(path))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _is_stale(info: dict | None, lock_path: Location, remote: bool) -> bool:
    if remote:  # no pid to check across machines: the heartbeat says whether the holder lives
        beat = (info or {}).get("heartbeat")
        if not isinstance(beat, int | float):
            try:
                beat = storage.modified_time(lock_path)
            except (OSError, FileNotFoundError):
                return True
        return time.time() - float(beat) > STALE_AFTER_S
    if info is None:  # unreadable or half-written: stale once older than a writer needs
        try:
            return time.time() - Path(lock_path).stat().st_mtime > 10
        except OSError:
            return True
    return info.get("host") == socket.gethostname() and not _pid_running(int(info.get("pid", -1)))


class _Heartbeat:
    """Rewrites the lock object with a fresh `heartbeat` time until stopped (object stores)."""

    def __init__(self, path: Location, me: dict):
        self.path, self.me = path, me
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="artmem-lock-heartbeat", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            if (_read(self.path) or {}).get("token") != self.me["token"]:
                logger.warning("%s: the lock was taken over by another job", self.path)
                return
            try:
                storage.write_text(self.path, json.dumps({**self.me, "heartbeat": time.time()}))
            except OSError as exc:  # a transient store error: the next beat retries
                logger.warning("%s: could not renew the lock (%s)", self.path, exc)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


@contextlib.contextmanager
def output_lock(out: Location, job: str) -> Iterator[Location]:
    """Hold OUT/.artmem.lock while a job writes OUT (a local folder is created if needed).

    Raises:
        ArtmemError: another live job holds the folder.
    """
    out = storage.location(out)
    remote = storage.is_remote(out)
    storage.make_dirs(out)
    path = storage.join(out, LOCK_NAME)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "job": job,
          "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "token": uuid.uuid4().hex}
    for _ in range(3):
        data = json.dumps({**me, "heartbeat": time.time()} if remote else me).encode()
        with storage.reported(out, "write there"):
            created = storage.create_exclusive(path, data)
        if created:
            break
        info = _read(path)
        if _is_stale(info, path, remote):
            if _read(path) == info:  # not replaced meanwhile by a job that took it over first
                logger.warning("%s: removing the stale lock of a job that is gone (%s)", path, info)
                storage.remove(path)
            continue
        who = "another artmem job" if info is None else (
            f"another artmem job ({info.get('job')}, pid {info.get('pid')} on {info.get('host')}, "
            f"started {info.get('started')})")
        raise ArtmemError(f"{out}: {who} is writing this folder; wait for it to finish or choose "
                          f"another output folder (remove {path} if that job is gone)")
    else:
        raise ArtmemError(f"{out}: could not take the output-folder lock {path}")
    beat = _Heartbeat(path, me) if remote else None
    try:
        yield path
    finally:
        if beat is not None:
            beat.close()
        if (_read(path) or {}).get("token") == me["token"]:
            storage.remove(path)
