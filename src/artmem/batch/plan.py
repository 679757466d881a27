"""A job's pending work planned on disk, so the driver's memory does not grow with the collection.

`prepare_job` (used by the local engines) holds every path of the collection as Python strings:
fine on one machine, but ~0.3 KB per image in a Ray driver that should only coordinate. This
module plans the same shards out of core: DuckDB (with a memory limit; it spills to a temporary
folder beyond it) de-duplicates and sorts the collection's paths and removes the ones already done
in finished shards (an anti-join with their `path` columns), and the sorted result is streamed,
one shard at a time, into one pending-list Parquet file per shard. All of this runs in a child
process (`plan_pending` -> `python -m artmem.batch.plan`), so DuckDB's and Arrow's working memory
is returned when it exits; the driver gets a count per shard and nothing per image.

The pending lists are written through `artmem.batch.storage`, so they sit in OUT also when OUT is
an object store URL (workers read them there). Finished shards on a local filesystem are read by
DuckDB itself; on an object store their `path` columns are streamed (a few files at a time,
through storage) into a DuckDB table, which spills to disk beyond the memory limit like the rest.
The DuckDB connection, the shard columns and the child process are `artmem.batch.outofcore`'s,
shared with the end-of-job check (`artmem.batch.shard_check`).

The plan is the one `prepare_job` makes, by construction: the collection's unique paths in code
point order (DuckDB compares strings byte-wise, and UTF-8 byte order is code point order, the
order of Python's `sorted`), minus the paths of readable finished shards, cut into `shard_size`
runs numbered after the last finished shard; `tests/batch/test_ray_plan.py` checks the two agree.

`CollectionFile` is a collection that stays in its Parquet file: the plan reads its `path` column
with DuckDB, so a driver given one never loads the table at all.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from artmem.batch import storage
from artmem.batch.outofcore import MEMORY_LIMIT, child_main, connect, run_child, shard_rows, sql_str
from artmem.batch.storage import Location
from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)


class CollectionFile:
    """A collection read from its Parquet file when needed, never held whole by the driver.

    It offers what a batch job needs of a `Collection` (`root`, `name`, `len`, `abs_path`,
    `paths`); `paths`, `table` and `load()` read the whole file (the local engines and the merge
    of `finalize` use them), while the Ray engine's plan streams the `path` column with DuckDB.
    """

    def __init__(self, file: str | Path):
        import json

        import pandas as pd
        import pyarrow.parquet as pq

        from artmem.data.collection import META_KEY, SIDECAR, Collection, CollectionError

        self.file = Path(file)
        try:
            parquet = pq.ParquetFile(self.file)
        except Exception as exc:
            raise CollectionError(self.file, f"not a readable Parquet file ({exc})") from exc
        if "path" not in parquet.schema_arrow.names:
            raise CollectionError(self.file, "no 'path' column (was it written by `artmem collection import`?)")
        self._rows = parquet.metadata.num_rows
        # Root, name and provenance by the rules of `Collection.load`: the file's metadata, else
        # the sidecar beside it, else its folder.
        raw = (parquet.schema_arrow.metadata or {}).get(META_KEY)
        sidecar = self.file.parent / SIDECAR
        if raw:
            info = json.loads(raw)
        elif sidecar.exists():
            info = json.loads(sidecar.read_text())
        else:
            info = {"root": str(self.file.parent.resolve()), "name": self.file.parent.name, "meta": {}}
        root = info["root"]
        if "://" not in root and not Path(root).is_absolute():
            root = str((self.file.parent / root).resolve())
        # An empty Collection with that root resolves paths exactly as the loaded one would.
        self._resolver = Collection(pd.DataFrame({"path": pd.Series([], dtype="str")}), root,
                                    info.get("name", "collection"), info.get("meta", {}))

    @property
    def root(self) -> str:
        return self._resolver.root

    @property
    def name(self) -> str:
        return self._resolver.name

    @property
    def meta(self) -> dict:
        return self._resolver.meta

    def __len__(self) -> int:
        return self._rows

    def abs_path(self, rel: str) -> str:
        return self._resolver.abs_path(rel)

    def load(self):
        """The whole collection in memory (`artmem.data.collection.Collection`)."""
        from artmem.data.collection import Collection

        return Collection.load(self.file)

    @property
    def table(self):
        return self.load().table

    @property
    def paths(self) -> list[str]:
        import pyarrow.parquet as pq

        return [str(p) for p in pq.read_table(self.file, columns=["path"]).column("path").to_pylist()]

    def abs_paths(self) -> list[str]:
        return [self.abs_path(p) for p in self.paths]

    def subset(self, mask_or_index):
        return self.load().subset(mask_or_index)


def collection_file_of(source) -> Path | None:
    """The Parquet collection file `source` names (the file, or a folder holding
    collection.parquet), else None."""
    if isinstance(source, (list, tuple)) and len(source) == 1:
        source = source[0]
    if not isinstance(source, (str, Path)) or "://" in str(source):
        return None
    path = Path(source)
    if path.is_dir():
        path = path / "collection.parquet"
    return path if path.is_file() and path.suffix.lower() in (".parquet", ".pq") else None


@contextlib.contextmanager
def open_job_inputs(source, engine: str):
    """`open_inputs` for a job: with the Ray engine a Parquet collection file (or a folder holding
    collection.parquet) stays on disk as a `CollectionFile` that the driver never loads."""
    from artmem.data.collection import open_inputs

    file = collection_file_of(source) if engine == "ray" else None
    if isinstance(source, CollectionFile):
        yield source
    elif file is not None:
        yield CollectionFile(file)
    else:
        with open_inputs(source) as coll:
            yield coll


@dataclass
class PendingShards:
    """The pending-list files of a plan: shard `ids[k]` has `rows[k]` images in
    `folder/<id:05d>.parquet`, in `groups[k]` row groups (a decode task's unit of work); `folder`
    is a local path or an fsspec URL (`artmem.batch.storage`)."""

    folder: Location
    ids: np.ndarray
    rows: np.ndarray
    groups: np.ndarray

    def file(self, shard_id: int) -> Location:
        return pending_file(self.folder, shard_id)

    @property
    def n_units(self) -> int:
        return int(self.groups.sum())

    def unit_starts(self) -> np.ndarray:
        """First unit number of each shard (units are numbered shard after shard)."""
        return np.concatenate([[0], np.cumsum(self.groups)[:-1]]).astype(np.int64)


def encode_abs_path(abs_path: str) -> bytes:
    """An absolute path as stored in a pending list: its exact bytes (a non-UTF-8 file name is a
    surrogate-escaped str, which Arrow strings cannot hold; see artmem.data.pathnames)."""
    return abs_path.encode("utf-8", "surrogateescape")


def decode_abs_path(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def pending_file(folder: Location, shard_id: int) -> Location:
    return storage.join(folder, f"{shard_id:05d}.parquet")


def locate_unit(unit: int, shard_ids: np.ndarray, unit_starts: np.ndarray) -> tuple[int, int]:
    """(shard id, row group) of decode unit number `unit`."""
    k = int(np.searchsorted(unit_starts, unit, side="right")) - 1
    return int(shard_ids[k]), int(unit - unit_starts[k])


class PendingPlan:
    """The images still to do, counted and sorted out of core; `write` puts them on disk by shard.

    Args:
        collection: a `Collection` (its path column is handed to DuckDB as Arrow) or a
            `CollectionFile` (DuckDB reads the file; nothing is loaded in this process).
        done_files: {shard id: results file} of the readable finished shards (`open_job`).
        shard_size: images per shard.
    """

    def __init__(self, collection, done_files: dict[int, Location], shard_size: int,
                 memory_limit: str = MEMORY_LIMIT):
        self.collection = collection
        self.shard_size = shard_size
        self.first_id = max(done_files) + 1 if done_files else 0
        self.con, self._tmp = connect("--engine ray (planning the job)", memory_limit)
        if isinstance(collection, CollectionFile):
            src = f"read_parquet({sql_str(collection.file)})"
        else:
            import pyarrow as pa

            self.con.register("collection_arrow", pa.table({"path": pa.array(collection.table["path"], pa.string())}))
            src = "collection_arrow"
        self.con.execute(f"CREATE VIEW wanted AS SELECT DISTINCT CAST(path AS VARCHAR) AS path FROM {src}")
        shard_rows(self.con, "done", done_files, ["path"])
        self._pending_sql = "SELECT path FROM wanted ANTI JOIN done USING (path)"
        self.n_wanted = int(self.con.sql("SELECT count(*) FROM wanted").fetchall()[0][0])
        if not self.n_wanted:
            self.close()
            raise ArtmemError("the collection has no images")
        self.n_pending = int(self.con.sql(f"SELECT count(*) FROM ({self._pending_sql})").fetchall()[0][0])
        n_done = self.n_wanted - self.n_pending
        if n_done:
            logger.info("resuming: %d of %d images already done in %d shard(s); %d to go",
                        n_done, self.n_wanted, len(done_files), self.n_pending)

    def write(self, folder: Location, group_rows: int) -> PendingShards:
        """One Parquet file per pending shard (path, abs_path as bytes, shard) in row groups of
        <= `group_rows`, streamed from the sorted plan: this process holds one shard at a time."""
        import pyarrow as pa

        storage.make_dirs(folder)
        reader = self.con.sql(f"{self._pending_sql} ORDER BY path").to_arrow_reader(self.shard_size)
        ids, rows, groups = [], [], []
        buf: list = []
        n_buf = 0

        def flush(chunk: pa.Array) -> None:
            sid = self.first_id + len(ids)
            paths = chunk.to_pylist()
            table = pa.table({
                "path": chunk,
                "abs_path": pa.array([encode_abs_path(self.collection.abs_path(p)) for p in paths], pa.binary()),
                "shard": pa.array(np.full(len(paths), sid, dtype=np.int64)),
            })
            storage.write_parquet(table, pending_file(folder, sid), row_group_size=group_rows)
            ids.append(sid)
            rows.append(len(paths))
            groups.append(math.ceil(len(paths) / group_rows))

        for batch in reader:
            buf.append(batch.column(0).cast(pa.string()))
            n_buf += len(batch)
            while n_buf >= self.shard_size:
                merged = pa.concat_arrays(buf)
                flush(merged.slice(0, self.shard_size))
                rest = merged.slice(self.shard_size)
                buf, n_buf = ([rest] if len(rest) else []), len(rest)
        if n_buf:
            flush(pa.concat_arrays(buf))
        if sum(rows) != self.n_pending:
            raise RuntimeError(f"the plan wrote {sum(rows)} pending image(s), expected {self.n_pending}")
        return PendingShards(folder, np.array(ids, dtype=np.int64), np.array(rows, dtype=np.int64),
                             np.array(groups, dtype=np.int64))

    def close(self) -> None:
        """Release DuckDB's memory and temporary files (idempotent)."""
        if self.con is not None:
            self.con.close()
            self.con = None
            self._tmp.cleanup()

    def __enter__(self) -> PendingPlan:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# Fewest decode units a small job is cut into, so that several actors get work.
MIN_UNITS = 8


def group_rows_for(n_pending: int, decode_block: int) -> int:
    """Images per decode unit: `decode_block`, smaller on a job too small for MIN_UNITS units."""
    return max(1, min(decode_block, math.ceil(n_pending / MIN_UNITS)))


@dataclass
class PlanResult:
    n_wanted: int
    n_pending: int
    shards: PendingShards


def plan_pending(collection, done_files: dict[int, Location], shard_size: int, folder: Location,
                 decode_block: int) -> PlanResult:
    """Plan the pending shards into `folder` (one pending list per shard) in a child process.

    DuckDB's working memory (up to `outofcore.MEMORY_LIMIT`, growing with the collection until it
    spills) and Arrow's buffers are then released with that process instead of staying in the
    driver's heap (`artmem.batch.outofcore.run_child`). The child gets the collection as its Parquet file (a `CollectionFile`), or an
    in-memory collection's path column written to a local temporary file. `folder` (the pending
    lists) may be an fsspec URL; the child inherits this process's environment (credentials).

    Raises:
        ArtmemError: the collection has no images (or the planner failed: its message).
    """
    folder = storage.location(folder)
    with tempfile.TemporaryDirectory(prefix="artmem-plan-") as tmp:
        if isinstance(collection, CollectionFile):
            source = {"file": str(collection.file)}
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.table({"path": pa.array(collection.table["path"], pa.string())})
            pq.write_table(table, Path(tmp) / "collection-paths.parquet")
            del table
            source = {"paths": str(Path(tmp) / "collection-paths.parquet"), "root": collection.root,
                      "name": collection.name}
        request = {"source": source, "done": [str(f) for f in done_files.values()],
                   "first_id": max(done_files) + 1 if done_files else 0, "shard_size": shard_size,
                   "folder": str(folder), "decode_block": decode_block}
        out = run_child("artmem.batch.plan", request)
    shards = PendingShards(folder, np.array(out["ids"], dtype=np.int64), np.array(out["rows"], dtype=np.int64),
                           np.array(out["groups"], dtype=np.int64))
    n_done = out["n_wanted"] - out["n_pending"]
    if n_done:
        logger.info("resuming: %d of %d images already done in %d shard(s); %d to go",
                    n_done, out["n_wanted"], len(done_files), out["n_pending"])
    return PlanResult(out["n_wanted"], out["n_pending"], shards)


def _plan_request(req: dict) -> dict:
    """`python -m artmem.batch.plan`: a planning request -> pending lists written,
    {n_wanted, n_pending, ids, rows, groups}."""
    import pandas as pd

    from artmem.data.collection import Collection

    src = req["source"]
    if "file" in src:
        coll = CollectionFile(src["file"])
    else:  # the path column only; `abs_path` needs just the root
        coll = _PathsFile(src["paths"], Collection(pd.DataFrame({"path": pd.Series([], dtype="str")}),
                                                   src["root"], src["name"]))
    done = {i: storage.location(f) for i, f in enumerate(req["done"])}
    with PendingPlan(coll, done, req["shard_size"]) as plan:
        plan.first_id = req["first_id"]
        shards = plan.write(storage.location(req["folder"]), group_rows_for(plan.n_pending, req["decode_block"]))
        n_wanted, n_pending = plan.n_wanted, plan.n_pending
    return {"n_wanted": n_wanted, "n_pending": n_pending, "ids": shards.ids.tolist(),
            "rows": shards.rows.tolist(), "groups": shards.groups.tolist()}


class _PathsFile(CollectionFile):
    """A path column in a Parquet file plus the collection's root (the planner's view of an
    in-memory collection)."""

    def __init__(self, file: str | Path, resolver):
        self.file = Path(file)
        self._resolver = resolver
        self._rows = 0


if __name__ == "__main__":
    raise SystemExit(child_main(_plan_request))
