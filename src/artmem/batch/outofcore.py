"""DuckDB out of core in a child process: what the job planner (`artmem.batch.plan`) and the
end-of-job shard check (`artmem.batch.shard_check`) share, so that a Ray driver never holds a
collection's paths.

A query runs under a memory limit (DuckDB spills to a temporary folder beyond it) in a child
process started by `run_child`, so DuckDB's and Arrow's working memory is returned to the system
when it exits; the driver sends a JSON request and gets a JSON answer of a size that does not grow
with the collection (larger answers go to files the child writes). `shard_rows` puts the columns
of a job's shard files into DuckDB: read by DuckDB itself from a local filesystem, streamed one
file at a time through `artmem.batch.storage` from an object store (no DuckDB extension or
credentials of its own needed).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from artmem.batch import storage
from artmem.batch.storage import Location
from artmem.errors import ArtmemError

# DuckDB's working memory while it sorts and joins; it spills to disk beyond this.
MEMORY_LIMIT = "256MB"

# Remote shard files fetched at once while streaming their columns into DuckDB (one round trip each).
_REMOTE_FILES_AT_ONCE = 16


def connect(purpose: str, memory_limit: str = MEMORY_LIMIT):
    """(DuckDB connection, its temporary folder): one thread, `memory_limit`, spilling into the
    folder; close the connection, then clean up the folder.

    Raises:
        ArtmemError: DuckDB is not installed (`purpose` says what needed it).
    """
    try:
        import duckdb
    except ImportError as exc:
        raise ArtmemError(f"{purpose} needs DuckDB: pip install 'artmem[scale]'") from exc
    tmp = tempfile.TemporaryDirectory(prefix="artmem-duckdb-")
    con = duckdb.connect(config={"memory_limit": memory_limit, "temp_directory": tmp.name, "threads": 1})
    return con, tmp


def sql_str(s: str | Path) -> str:
    """A string literal for DuckDB SQL."""
    return "'" + str(s).replace("'", "''") + "'"


def shard_rows(con, name: str, files: dict[int, Location], columns: list[str]) -> None:
    """Make `name` (shard BIGINT, row BIGINT, *columns VARCHAR): every row of the Parquet
    `files` {shard id: file}, `row` being its position in its file (a file lacking a column, an
    empty shard's, gives NULLs). Local files are a view DuckDB reads when queried; remote ones
    are streamed into a table (spilled to disk beyond the memory limit like the rest)."""
    import numpy as np
    import pyarrow as pa

    cols = ", ".join(f"CAST({c} AS VARCHAR) AS {c}" for c in columns)
    locs = {sid: storage.location(f) for sid, f in files.items()}
    if locs and not any(storage.is_remote(f) for f in locs.values()):
        con.register(f"{name}_files", pa.table({"filename": pa.array([str(f) for f in locs.values()], pa.string()),
                                                 "shard": pa.array(list(locs), pa.int64())}))
        # The view reads the files list from a table: materialize it so the registration can go.
        con.execute(f"CREATE TABLE {name}_shards AS SELECT * FROM {name}_files")
        con.unregister(f"{name}_files")
        listed = ", ".join(sql_str(f) for f in locs.values())
        con.execute(f"CREATE VIEW {name} AS SELECT s.shard, CAST(r.file_row_number AS BIGINT) AS row, {cols} "
                    f"FROM read_parquet([{listed}], filename = true, file_row_number = true, "
                    f"union_by_name = true) r JOIN {name}_shards s USING (filename)")
        return
    typed = ", ".join(f"{c} VARCHAR" for c in columns)
    con.execute(f"CREATE TABLE {name} (shard BIGINT, row BIGINT, {typed})")
    items = list(locs.items())
    for start in range(0, len(items), _REMOTE_FILES_AT_ONCE):
        chunk = items[start:start + _REMOTE_FILES_AT_ONCE]
        tables = storage.map_files(lambda f: _read_columns(f, columns), [f for _, f in chunk])
        for (sid, _), table in zip(chunk, tables, strict=True):
            if not table.num_rows:
                continue
            table = table.append_column("row", pa.array(np.arange(table.num_rows, dtype=np.int64)))
            con.register("shard_batch", table)
            con.execute(f"INSERT INTO {name} SELECT {sid}, row, {cols} FROM shard_batch")
            con.unregister("shard_batch")


def _read_columns(f: Location, columns: list[str]):
    """`columns` of one Parquet file (NULL strings for a column it lacks)."""
    import pyarrow as pa

    pf = storage.parquet_file(f)
    have = [c for c in columns if c in pf.schema_arrow.names]
    table = pf.read(columns=have)
    for c in columns:
        if c not in have:
            table = table.append_column(c, pa.nulls(table.num_rows, pa.string()))
    return table.select(columns)


def run_child(module: str, request: dict) -> dict:
    """`python -m module` with `request` (JSON) on stdin; its JSON answer on stdout.

    The child inherits this process's environment (an object store's credentials) and imports
    this copy of artmem.

    Raises:
        ArtmemError: the child failed (the last line of its stderr: an `ArtmemError` it raised).
    """
    import json
    import os
    import subprocess
    import sys

    import artmem

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(artmem.__file__).parents[1]),
                                                    env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run([sys.executable, "-m", module], input=json.dumps(request),
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        raise ArtmemError(lines[-1] if lines else f"{module} failed (exit {proc.returncode})")
    return json.loads(proc.stdout)


def child_main(handler) -> int:
    """The child's side of `run_child`: `handler(request) -> answer`; an ArtmemError becomes its
    message on stderr and exit status 2."""
    import json
    import sys

    request = json.loads(sys.stdin.read())
    try:
        answer = handler(request)
    except ArtmemError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(json.dumps(answer))
    return 0
