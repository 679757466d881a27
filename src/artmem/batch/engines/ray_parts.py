"""The Ray engine's files in OUT: per-batch part files written by actors, their compaction into
shard files, and the driver's count of finished images per shard (the pending lists the workers
read are written by `artmem.batch.plan`).

Ray Data hands an actor batches that do not follow shard boundaries, so an actor cannot write a
whole shard. Each actor writes, for every shard a batch touches, one *part* (that batch's result
rows and error rows of the shard) under

    OUT/shards/.parts-<kind>/<run id>/<kind>-<NNNNN>/<hash of the part's paths>.parquet
                                                    /<hash>.errors.parquet

and returns only counts to the driver. When the driver's counts say a shard is complete, a Ray task
(`compact_shard`) reads that shard's parts, puts the rows in the shard's path order, writes the
shard with the engine-independent `write_shard_files` (same atomic files, names and schema as the
local engine) and removes the parts. Result rows never travel to the driver.

A part's name is a hash of its paths, so a batch that Ray re-executes overwrites its own part
instead of adding a copy; compaction still drops duplicate paths and refuses to write a shard whose
parts do not cover its images exactly. The run id keeps parts of a killed run apart from a resumed
run that reuses the same shard numbers; the driver discards every leftover part when a run starts.
"""

from __future__ import annotations

import hashlib
from collections import deque

import numpy as np
import pandas as pd

from artmem.batch import storage
from artmem.batch.job import (
    JobSpec,
    ShardResult,
    _concat,
    _read_shards,
    shard_errors_file,
    shard_file,
    write_shard_files,
)
from artmem.batch.plan import PendingShards
from artmem.batch.results import SHARDS_DIR, atomic_write_parquet, errors_frame
from artmem.batch.storage import Location

_ERRORS_SUFFIX = ".errors.parquet"


def parts_root(out: Location, kind: str) -> Location:
    """Folder of every part file of this job kind (all runs)."""
    return storage.join(out, SHARDS_DIR, f".parts-{kind}")


def shard_parts_dir(run_dir: Location, kind: str, shard_id: int) -> Location:
    return storage.join(run_dir, f"{kind}-{shard_id:05d}")


def write_part(run_dir: Location, kind: str, shard_id: int, paths: list[str],
               rows: pd.DataFrame | None, errors: list[tuple[str, str]]) -> None:
    """Atomically write one batch's rows (and error rows) of one shard as a part (actor side)."""
    d = shard_parts_dir(run_dir, kind, shard_id)
    name = hashlib.sha1("\n".join(paths).encode("utf-8", "surrogatepass")).hexdigest()[:20]
    if errors:
        atomic_write_parquet(errors_frame(errors), storage.join(d, f"{name}{_ERRORS_SUFFIX}"))
    if rows is not None and len(rows):
        atomic_write_parquet(rows.reset_index(drop=True), storage.join(d, f"{name}.parquet"))


def compact_shard(out: str, kind: str, shard_id: int, paths: tuple[str, ...], run_dir: str) -> ShardResult:
    """Ray task: the parts of a complete shard -> its shard files (in path order); parts removed.

    Raises:
        RuntimeError: the parts do not cover the shard's images exactly (e.g. OUT is not one
            filesystem shared by every node, so some parts were written where this task cannot see
            them).
    """
    d = shard_parts_dir(run_dir, kind, shard_id)
    if not storage.is_dir(d):
        if storage.exists(shard_file(out, kind, shard_id)):  # a retried task whose first attempt finished
            return _existing(out, kind, shard_id)
        raise RuntimeError(f"shard {shard_id}: no part files in {d}; OUT must be a filesystem that "
                           "every Ray node can write and read (a shared filesystem or an object store URL)")
    files = [storage.join(d, n) for n in storage.list_names(d) if not n.startswith(".")]
    order = {p: i for i, p in enumerate(paths)}
    table = _read_shards([f for f in files if not storage.name(f).endswith(_ERRORS_SUFFIX)])
    if len(table):
        table = table.drop_duplicates("path", keep="first")
        table = table.iloc[np.argsort([order.get(p, -1) for p in table["path"]], kind="stable")]
        table = table.reset_index(drop=True)
    errs = _concat([storage.read_parquet(f).to_pandas() for f in files if storage.name(f).endswith(_ERRORS_SUFFIX)])
    have = set(table["path"])
    reasons: dict[str, str] = {}  # one reason per image, none for an image that has a result
    for p, r in zip(errs["path"], errs["reason"], strict=True) if len(errs) else ():
        if p not in have:
            reasons.setdefault(str(p), str(r))
    err_rows = sorted(reasons.items(), key=lambda e: order.get(e[0], -1))
    covered = have | {p for p, _ in err_rows}
    if covered != set(paths):
        missing, extra = set(paths) - covered, covered - set(paths)
        raise RuntimeError(
            f"shard {shard_id}: parts in {d} cover {len(covered)} of {len(paths)} image(s) "
            f"({len(missing)} missing, {len(extra)} foreign); OUT must be a filesystem that every "
            "Ray node can write and read (a shared filesystem)")
    result = write_shard_files(out, kind, shard_id, table, err_rows)
    storage.remove_tree(d)
    return result


def _existing(out: str, kind: str, shard_id: int) -> ShardResult:

    f = shard_file(out, kind, shard_id)
    errs = shard_errors_file(out, kind, shard_id)
    n_err = storage.parquet_file(errs).metadata.num_rows if storage.exists(errs) else 0
    return ShardResult(shard_id, storage.parquet_file(f).metadata.num_rows, n_err, f)


def compact_pending_shard(out: str, kind: str, shard_id: int, pending: str, run_dir: str) -> ShardResult:
    """Ray task: `compact_shard` with the shard's paths read from its pending-list file (a local
    path or a URL, through storage), so the driver never holds them."""
    paths = storage.read_parquet(pending, columns=["path"]).column("path").to_pylist()
    return compact_shard(out, kind, shard_id, tuple(paths), run_dir)


class ShardTracker:
    """Driver-side bookkeeping: images still missing per shard, and the compaction of complete shards.

    Per pending shard it holds one count; the compaction task reads the shard's paths from its
    pending-list file. Compactions run one at a time, in the order the shards complete, which
    keeps up with a cluster as long as one shard compacts faster than the cluster fills one:
    `on_shard_done` then always sees every earlier shard written, and a driver stopped by it (or
    killed) leaves at most one shard being compacted; the parts of the others are discarded on
    resume.
    """

    def __init__(self, spec: JobSpec, pending: PendingShards, run_dir: Location, on_shard_done):
        import ray

        self.spec, self.run_dir, self.on_shard_done = spec, run_dir, on_shard_done
        self.pending = pending
        self.size = {int(s): int(n) for s, n in zip(pending.ids, pending.rows, strict=True)}
        self.missing = dict(self.size)
        self.ready: deque[int] = deque()
        self.in_flight = None
        self._task = ray.remote(num_cpus=0, max_retries=1)(compact_pending_shard)

    def add(self, shard_id: int, n: int) -> None:
        self.missing[shard_id] -= n
        if self.missing[shard_id] < 0:
            raise RuntimeError(f"shard {shard_id}: got {-self.missing[shard_id]} result(s) more than "
                               f"its {self.size[shard_id]} images")
        if self.missing[shard_id] == 0:
            del self.missing[shard_id]
            self.ready.append(shard_id)
        self.pump(block=False)

    def pump(self, block: bool) -> None:
        """Collect a finished compaction and start the next; `block` waits until all are done."""
        import ray

        while True:
            if self.in_flight is not None:
                done, _ = ray.wait([self.in_flight], timeout=None if block else 0)
                if not done:
                    return
                res = ray.get(self.in_flight)
                self.in_flight = None
                if self.on_shard_done is not None:
                    self.on_shard_done(res)
            if not self.ready:
                return
            sid = self.ready.popleft()
            self.in_flight = self._task.remote(str(self.spec.out), self.spec.kind, sid,
                                               str(self.pending.file(sid)), str(self.run_dir))

    @property
    def incomplete(self) -> list[int]:
        return sorted(self.missing)
