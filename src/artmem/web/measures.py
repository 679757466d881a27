"""The results' measures (RESULTS/measures/measures.parquet: `path` + one column per measure,
written by `artmem measures`) joined to the explorer's row ids.

- A large (lazy) collection: the table is never read into pandas. DuckDB joins it to the ids,
  scanning the Parquet file (`RowStore.join_by_path`); the measures, aligned with the ids, are
  kept beside the memory-mapped copy of the collection as an Arrow IPC file (named by the copy
  and the measures file's name, size and time, so a restart maps it again and a changed file is
  joined again) and added, zero-copy from that map, as columns of the row table: a
  `measure:NAME` sort is then a column sort (DuckDB, then the kept orders), like the score's.
- A small collection: read into pandas and indexed by row id, as before. Uploads rebuild a small
  collection's row table from its pandas table (`ExplorerData._refresh_store`), which would drop
  added columns, and a table under LAZY_MIN_ROWS rows costs little in pandas; its measure sorts
  stay arrays joined by position.

Both give the same answers: `names` (every measure), `sortable` (the numeric ones; text columns
are shown on the artwork page but not sorted by), `of(id)` and `sort_source(name, n)`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)

COLUMN_PREFIX = "_measure:"  # measures as columns of a large collection's row table (see column_prefix)
ALIGN_BATCH = 1 << 20  # rows aligned and written at a time (memory: one batch of the measures)
ROWS_FOUND_KEY = b"artmem.explorer.measures.rows"  # rows with measures, kept in the cache file


def by_id(series: pd.Series, n: int) -> np.ndarray:
    """Values indexed by row id as an array of n floats (NaN where a row has none)."""
    out = np.full(n, np.nan)
    ids = series.index.to_numpy(dtype=np.int64)
    ok = ids < n
    out[ids[ok]] = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)[ok]
    return out


def _shown(v) -> float | str:
    return float(v) if isinstance(v, (int, float, np.number)) else str(v)


class FrameMeasures:
    """The measures of a small collection: a pandas table indexed by row id (path dropped)."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame
        self.names = list(frame.columns)
        self.sortable = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
        self.n_rows = len(frame)

    def of(self, item_id: int) -> dict[str, float | str]:
        if item_id not in self.frame.index:
            return {}
        row = self.frame.loc[item_id]
        return {k: _shown(v) for k, v in row.items() if pd.notna(v)}

    def sort_source(self, name: str, n: int) -> tuple[str | None, np.ndarray | None]:
        return None, by_id(self.frame[name], n)


class ColumnMeasures:
    """The measures of a large collection as columns of its row table (`columns`: measure name ->
    table column), numeric ones as float64, others as text."""

    def __init__(self, store, columns: dict[str, str], sortable: list[str], n_rows: int):
        self.store = store
        self.columns = columns
        self.names = list(columns)
        self.sortable = sortable
        self.n_rows = n_rows

    def of(self, item_id: int) -> dict[str, float | str]:
        if not 0 <= item_id < len(self.store):
            return {}
        row = self.store.records([item_id])[0]
        out = {}
        for name, col in self.columns.items():
            v = row.get(col)
            if v is not None and v == v:
                out[name] = _shown(v)
        return out

    def sort_source(self, name: str, n: int) -> tuple[str | None, np.ndarray | None]:
        return self.columns[name], None


def column_prefix(existing) -> str:
    """COLUMN_PREFIX, lengthened by '_' until no column of the row table starts with it: a measure
    column then cannot collide with a collection column whatever the collection names its columns
    (nor with `_score`, which does not start with it)."""
    prefix = COLUMN_PREFIX
    while any(str(c).startswith(prefix) for c in existing):
        prefix = "_" + prefix
    return prefix


def measure_fields(file: Path) -> tuple[list[str], list[str]]:
    """(every measure column, the numeric ones) of a measures file, from its footer."""
    import pyarrow.parquet as pq

    schema = pq.read_schema(file)
    if "path" not in schema.names:
        raise ArtmemError(f"{file}: a measures table needs a 'path' column")
    fields = [f for f in schema if f.name != "path"]
    nested = [f.name for f in fields if pa.types.is_nested(f.type)]
    if nested:  # a list or struct has no one-line text form: left out, as it cannot be shown
        logger.warning("%s: measures %s are not shown (not a number nor text)", file, ", ".join(nested))
    names = [f.name for f in fields if f.name not in nested]
    numeric = [f.name for f in fields if _is_number(f.type)]
    return names, numeric


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t)


def join_measures(store, file: Path, root: str, n: int, target: Path) -> Path:
    """The measures of `file` aligned with the first `n` row ids (null where a row has none),
    written to `target` (an Arrow IPC file, one column per measure: numeric as float64, others
    as text). A path listed twice keeps its first row, as the pandas reading did."""
    import pyarrow.dataset as ds
    import pyarrow.ipc as ipc

    from artmem.web.rowstore import null_nan

    names, numeric = measure_fields(file)
    got = store.join_by_path(ds.dataset(str(file), format="parquet"), names, root, arrow=True, row_number=True)
    ids = got.column("id").to_numpy()
    if len(ids) and np.bincount(ids, minlength=n).max() > 1:  # a path listed twice: its first row
        order = np.lexsort((got.column("file_row_number").to_numpy(), ids))
        first = order[np.r_[True, ids[order][1:] != ids[order][:-1]]]
        got, ids = got.take(pa.array(first)), ids[first]
    fields = [pa.field(c, pa.float64() if c in numeric else pa.string()) for c in names]
    values = pa.table([got.column(c).cast(f.type) for c, f in zip(names, fields, strict=True)],
                      schema=pa.schema(fields))
    pos = np.full(n, -1, dtype=np.int64)  # row id -> its row in `values`
    pos[ids] = np.arange(len(ids))
    del got, ids
    schema = pa.schema(fields, metadata={ROWS_FOUND_KEY: str(len(values)).encode()})
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")  # two servers may start at once
    target.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, schema) as writer:
        for start in range(0, n, ALIGN_BATCH):
            part = pos[start: start + ALIGN_BATCH]
            batch = values.take(pa.array(part, mask=part < 0))  # a masked index gives a null row
            batch = pa.table([null_nan(c) for c in batch.columns], schema=schema)
            writer.write_table(batch)
    tmp.replace(target)
    return target


def open_measures(store, file: Path) -> ColumnMeasures:
    """The aligned measures in `file` (memory-mapped) added as columns of the row table."""
    from artmem.web.rowstore import open_arrow_cache

    table = open_arrow_cache(file)
    if table.num_rows != len(store):
        raise ValueError(f"{file}: {table.num_rows} rows for a table of {len(store)}")
    prefix = column_prefix(store.columns)
    columns = {name: prefix + name for name in table.column_names}
    store.add_columns({columns[name]: table.column(name) for name in table.column_names})
    sortable = [f.name for f in table.schema if pa.types.is_floating(f.type)]
    found = int((table.schema.metadata or {}).get(ROWS_FOUND_KEY, b"0"))
    return ColumnMeasures(store, columns, sortable, found)
