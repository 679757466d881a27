"""A job's finished shards checked against its collection, for `artmem.batch.finalize`.

`finalize` keeps only rows of the collection's current images (a shard may hold images that left
the collection since it ran: stale rows) and only the errors of current images that have no
result, the latest one per image; it reports the number of distinct images. `check_shards` works
these out once, in one of two ways with the same answer (`ShardCheck`):

- in memory, for a `Collection` (the local engines hold its paths anyway): the collection's path
  set against each shard's `path` column;
- out of core, for a `CollectionFile` (the Ray driver never loads its paths): DuckDB in a child
  process (`artmem.batch.outofcore`, as the planner runs) anti-joins the shards' `path` columns
  with the collection file's and filters the shards' errors. The driver gets the counts and two
  small files: the stale rows' paths (normally none) and the errors to keep. Apart from the
  errors, which the job reports anyway, the driver holds O(number of shards).

Tests: tests/batch/test_finalize_out_of_core.py checks both against a pandas reference.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from artmem.batch import storage
from artmem.batch.job import JobSpec, _concat, shard_errors_file
from artmem.batch.results import errors_frame
from artmem.batch.storage import Location


@dataclass
class ShardCheck:
    """The finished shards against the collection.

    Attributes:
        n_wanted: distinct images of the collection.
        rows: {shard id: rows of current images} of every finished shard.
        nbytes: {shard id: uncompressed column bytes (the whole shard)}.
        stale_rows: {shard id: rows of images that left the collection}, only shards with some.
        errors: the errors to report (`path`, `reason`): current images with no result in any
            shard, the latest error of each (by shard id, then row), sorted by path.
    """

    n_wanted: int
    rows: dict[int, int]
    nbytes: dict[int, int]
    stale_rows: dict[int, int]
    errors: pd.DataFrame
    _stale_of: Callable

    def stale_paths(self, shard_id: int | None = None):
        """The paths of the stale rows of one shard (or of all shards) as an Arrow string array."""
        return self._stale_of(shard_id)


@contextlib.contextmanager
def check_shards(spec: JobSpec, shard_files: dict[int, Location]) -> Iterator[ShardCheck]:
    """The `ShardCheck` of the finished shards `shard_files` {id: results file} of `spec`
    (out of core when the collection is a `CollectionFile`); valid inside the `with` block."""
    from artmem.batch.plan import CollectionFile

    names = set(storage.list_names(spec.shard_dir))
    error_files = {sid: f for sid, f in ((i, shard_errors_file(spec.out, spec.kind, i)) for i in shard_files)
                   if storage.name(f) in names}
    if isinstance(spec.collection, CollectionFile):
        with tempfile.TemporaryDirectory(prefix="artmem-finalize-") as tmp:
            yield _out_of_core(spec.collection.file, shard_files, error_files, Path(tmp))
    else:
        yield _in_memory(spec, shard_files, error_files)


def _scan(f: Location, with_paths: bool):
    """(rows, uncompressed column bytes, path column or None) of one shard."""
    pf = storage.parquet_file(f)
    meta = pf.metadata
    nbytes = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    paths = pf.read(columns=["path"]).column("path") if with_paths and meta.num_rows else None
    return meta.num_rows, nbytes, paths


def _in_memory(spec: JobSpec, shard_files: dict[int, Location], error_files: dict[int, Location]) -> ShardCheck:
    import pyarrow as pa
    import pyarrow.compute as pc

    wanted = set(spec.all_paths())
    errs = _concat([t.to_pandas() for t in storage.map_files(storage.read_parquet, list(error_files.values()))])
    if len(errs):
        errs = errs[errs["path"].isin(wanted)].drop_duplicates("path", keep="last")
    err_paths = set(errs["path"]) if len(errs) else set()
    have_result: set[str] = set()  # images with an error row that do have a result
    wanted_arrow = None
    rows, nbytes, stale = {}, {}, {}
    scans = storage.map_files(lambda f: _scan(f, with_paths=True), list(shard_files.values()))
    for sid, (n, size, paths) in zip(shard_files, scans, strict=True):
        rows[sid], nbytes[sid] = n, size
        if not n:
            continue
        if err_paths:
            have_result.update(p for p in paths.to_pylist() if p in err_paths)
        if wanted_arrow is None:
            wanted_arrow = pa.array(sorted(wanted), pa.string())
        keep = pc.is_in(paths, value_set=wanted_arrow)
        if not pc.all(keep).as_py():
            stale[sid] = paths.filter(pc.invert(keep)).combine_chunks()
            rows[sid] = n - len(stale[sid])
    if len(errs):
        errs = errs[~errs["path"].isin(have_result)].sort_values("path").reset_index(drop=True)

    def stale_of(shard_id):
        arrays = [stale[shard_id]] if shard_id is not None else list(stale.values())
        return pa.concat_arrays([a.cast(pa.string()) for a in arrays]) if arrays else pa.array([], pa.string())

    return ShardCheck(len(wanted), rows, nbytes, {sid: len(a) for sid, a in stale.items()},
                      errors_frame(errs if len(errs) else None), stale_of)


def _out_of_core(collection_file: Path, shard_files: dict[int, Location], error_files: dict[int, Location],
                 folder: Path) -> ShardCheck:
    """The check by DuckDB in a child process, which writes folder/stale.parquet (shard, path)
    and folder/errors.parquet (path, reason); the driver reads each shard's metadata only."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from artmem.batch.outofcore import run_child

    scans = storage.map_files(lambda f: _scan(f, with_paths=False), list(shard_files.values()))
    answer = run_child("artmem.batch.shard_check", {
        "collection": str(collection_file), "folder": str(folder),
        "shards": [[sid, str(f)] for sid, f in shard_files.items()],
        "errors": [[sid, str(f)] for sid, f in error_files.items()]})
    stale_rows = {int(sid): int(n) for sid, n in answer["stale_rows"]}
    rows = {sid: n - stale_rows.get(sid, 0) for sid, (n, _, _) in zip(shard_files, scans, strict=True)}
    nbytes = {sid: size for sid, (_, size, _) in zip(shard_files, scans, strict=True)}
    errs = pq.read_table(folder / "errors.parquet").to_pandas()
    stale_file = folder / "stale.parquet"

    def stale_of(shard_id):
        if not stale_rows or (shard_id is not None and shard_id not in stale_rows):
            return pa.array([], pa.string())
        filters = None if shard_id is None else [("shard", "==", int(shard_id))]
        return pq.read_table(stale_file, columns=["path"], filters=filters).column("path").combine_chunks()

    return ShardCheck(int(answer["n_wanted"]), rows, nbytes, stale_rows,
                      errors_frame(errs if len(errs) else None), stale_of)


# Rows per row group of stale.parquet (sorted by shard): reading one shard's stale paths skips
# the other groups by their statistics.
_STALE_GROUP_ROWS = 65536


def _check_request(req: dict) -> dict:
    """`python -m artmem.batch.shard_check`: {collection, folder, shards, errors} -> the files
    folder/stale.parquet and folder/errors.parquet written, {n_wanted, stale_rows}."""
    from artmem.batch.outofcore import connect, shard_rows, sql_str

    folder = Path(req["folder"])
    con, tmp = connect("finalizing a job whose collection stays in its Parquet file")
    try:
        con.execute("CREATE VIEW wanted AS SELECT DISTINCT CAST(path AS VARCHAR) AS path "
                    f"FROM read_parquet({sql_str(req['collection'])})")
        shard_rows(con, "results", {int(sid): storage.location(f) for sid, f in req["shards"]}, ["path"])
        shard_rows(con, "errs", {int(sid): storage.location(f) for sid, f in req["errors"]}, ["path", "reason"])
        n_wanted = int(con.sql("SELECT count(*) FROM wanted").fetchall()[0][0])
        stale = folder / "stale.parquet"
        con.execute("COPY (SELECT shard, path FROM results ANTI JOIN wanted USING (path) ORDER BY shard, row) "
                    f"TO {sql_str(stale)} (FORMAT parquet, ROW_GROUP_SIZE {_STALE_GROUP_ROWS})")
        stale_rows = con.sql(f"SELECT shard, count(*) FROM read_parquet({sql_str(stale)}) "
                             "GROUP BY shard ORDER BY shard").fetchall()
        # The latest error of each current image (shards in id order, rows in file order), kept
        # only when no shard holds a result for it.
        con.execute(
            "COPY (SELECT path, reason FROM ("
            "  SELECT path, reason, row_number() OVER (PARTITION BY path ORDER BY shard DESC, row DESC) AS latest"
            "  FROM errs SEMI JOIN wanted USING (path)) current_errs "
            "ANTI JOIN results USING (path) WHERE latest = 1 ORDER BY path) "
            f"TO {sql_str(folder / 'errors.parquet')} (FORMAT parquet)")
    finally:
        con.close()
        tmp.cleanup()
    return {"n_wanted": n_wanted, "stale_rows": [[int(s), int(n)] for s, n in stale_rows]}


if __name__ == "__main__":
    from artmem.batch.outofcore import child_main

    raise SystemExit(child_main(_check_request))
