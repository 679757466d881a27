"""The explorer's rows, queried per request with DuckDB instead of being held in pandas.

The rows live in one Arrow table with an integer `id` (row position: collection rows first, then
kept uploads), `_root` (0 collection, 1 upload), `path` and the label and numeric columns:

- a small collection (a folder, a CSV, a Parquet file under `LAZY_MIN_ROWS` rows, or a
  `Collection` object) is converted from its pandas table, as before;
- a Parquet collection of `LAZY_MIN_ROWS` rows or more is never loaded: on first start it is
  streamed, row group by row group, into an uncompressed Arrow IPC file in the cache folder
  (`RESULTS/.explorer/`, else `$ARTMEM_CACHE/explorer/`), which is then memory-mapped. The
  operating system pages it in and out; a grid page reads its 48 rows by position, and a filter
  or sort scans only the columns it names.

Grid pages are one SQL query each: filters and text search as WHERE clauses, the sort key as
ORDER BY ... NULLS LAST, id (ties in id order, as the stable sort of earlier versions did), LIMIT
and OFFSET for the page. The score and the measures of a large collection are added to its table
as columns (`add_columns`); other sort keys that are not columns of the table (the score and
measures of a small collection, a prediction column) are arrays aligned with the ids, joined by
position (`POSITIONAL JOIN`).
Once a sort order and the codes of the filtered label columns are ready (`orderings.py`, built
in the background on first use), pages without a text search come from them instead, with the
same result.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from artmem.web.orderings import Orderings, first_matches, label_codes, sort_order

logger = logging.getLogger(__name__)

LAZY_MIN_ROWS = 200_000  # Parquet collections this large are memory-mapped, not loaded into pandas
CACHE_VERSION = 2  # bump when the layout of the Arrow cache file changes
MAX_DICTIONARY = 65_536  # label columns with more distinct values are stored as plain text


def quote_ident(name: str) -> str:
    """A column name as a DuckDB identifier (any name, quotes included)."""
    return '"' + str(name).replace('"', '""') + '"'


def null_nan(col: pa.ChunkedArray | pa.Array):
    """Floating-point NaN as null, so that NULLS LAST puts missing values last in both orders."""
    if pa.types.is_floating(col.type):
        return pc.if_else(pc.is_nan(col), pa.scalar(None, col.type), col)
    return col


def frame_to_arrow(df: pd.DataFrame, label_columns: list[str]) -> pa.Table:
    """The in-memory table (with `_root`) as Arrow: ids added, label values as text, NaN as null."""
    cols = {"id": pa.array(np.arange(len(df), dtype=np.int64)),
            "_root": pa.array(df["_root"].to_numpy(dtype=np.int8)),
            "path": pa.array(df["path"].astype(str).tolist(), pa.string())}
    for c in df.columns:
        if c in ("path", "_root"):
            continue
        s = df[c]
        if c in label_columns or not pd.api.types.is_numeric_dtype(s):
            cols[c] = pa.array([None if v is None or (isinstance(v, float) and v != v) or v is pd.NA else str(v)
                                for v in s.tolist()], pa.string())
        else:
            cols[c] = null_nan(pa.array(s.to_numpy(), from_pandas=True))
    return pa.table(cols)


def file_signature(file: Path) -> str:
    st = file.stat()
    key = f"{CACHE_VERSION}|{file.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def arrow_cache_of_parquet(file: Path, cache_folder: Path) -> Path:
    """The memory-mappable Arrow copy of a Parquet collection, written once (streamed by row
    group: memory stays one row group) and reused while the Parquet file is unchanged."""
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    target = cache_folder / f"collection-{file_signature(file)}.arrow"
    if target.is_file():
        return target
    cache_folder.mkdir(parents=True, exist_ok=True)
    pf = pq.ParquetFile(file)
    schema = pf.schema_arrow
    fields = [pa.field("id", pa.int64()), pa.field("_root", pa.int8()), pa.field("path", pa.string())]
    labels = [f.name for f in schema if f.name != "path" and not _is_number(f.type)]
    dictionaries = _label_dictionaries(pf, labels)
    for f in schema:
        if f.name == "path":
            continue
        if _is_number(f.type):
            fields.append(pa.field(f.name, f.type))
        elif f.name in dictionaries:  # few distinct values over many rows: dictionary-encoded
            fields.append(pa.field(f.name, pa.dictionary(pa.int32(), pa.string())))
        else:
            fields.append(pa.field(f.name, pa.string()))
    out_schema = pa.schema(fields)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")  # two servers may start at once
    start = 0
    with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, out_schema) as writer:
        for g in range(pf.num_row_groups):
            t = pf.read_row_group(g)
            n = t.num_rows
            arrays = [pa.array(np.arange(start, start + n, dtype=np.int64)), pa.array(np.zeros(n, np.int8)),
                      t.column("path").cast(pa.string())]
            for f in fields[3:]:
                col = t.column(f.name)
                if pa.types.is_dictionary(f.type):  # one dictionary for the whole file (IPC files need it)
                    values = dictionaries[f.name]
                    idx = pc.index_in(col.cast(pa.string()), value_set=values).combine_chunks()
                    col = pa.DictionaryArray.from_arrays(idx, values)
                elif pa.types.is_string(f.type):
                    col = col.cast(pa.string())
                else:
                    col = null_nan(col)
                arrays.append(col)
            writer.write_table(pa.Table.from_arrays(arrays, schema=out_schema))
            start += n
    tmp.replace(target)
    logger.info("explorer: %d rows of %s cached as %s", start, file, target)
    return target


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def _label_dictionaries(pf, labels: list[str], max_values: int = MAX_DICTIONARY) -> dict[str, pa.Array]:
    """The distinct values of each label column over the whole file (a first pass reading those
    columns only); columns with more than `max_values` values are left out (kept as plain text)."""
    seen: dict[str, set] = {c: set() for c in labels}
    for batch in pf.iter_batches(columns=labels, batch_size=1 << 20) if labels else []:
        for c in list(seen):
            col = batch.column(c)
            col = col.dictionary if pa.types.is_dictionary(col.type) else pc.unique(col.cast(pa.string()))
            seen[c].update(v for v in col.cast(pa.string()).to_pylist() if v is not None)
            if len(seen[c]) > max_values:
                del seen[c]
    return {c: pa.array(sorted(v), pa.string()) for c, v in seen.items()}


INFO_KEY = b"artmem.explorer.collection"  # the collection's root, name and meta in a cache file


def write_arrow_cache(table: pa.Table, target: Path, info: dict) -> Path:
    """A table made from a collection read into pandas (a large CSV), written as the same
    memory-mappable file as `arrow_cache_of_parquet` (label columns dictionary-encoded) with the
    collection's root and name, so that the next start reads neither the CSV nor pandas."""
    import pyarrow.ipc as ipc

    cols = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        col = col.combine_chunks()  # one chunk, hence one dictionary per column (IPC files need it)
        if pa.types.is_string(col.type) and name != "path" and len(pc.unique(col)) <= MAX_DICTIONARY:
            col = pc.dictionary_encode(col)
        cols[name] = col
    out = pa.table(cols).replace_schema_metadata({INFO_KEY: json.dumps(info, default=str)})
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")  # two servers may start at once
    with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, out.schema) as writer:
        writer.write_table(out)
    tmp.replace(target)
    return target


def cache_info(table: pa.Table) -> dict | None:
    raw = (table.schema.metadata or {}).get(INFO_KEY)
    return json.loads(raw) if raw else None


def open_arrow_cache(file: Path) -> pa.Table:
    import pyarrow.ipc as ipc

    return ipc.open_file(pa.memory_map(str(file), "r")).read_all()  # zero-copy: pages stay on disk


def parquet_collection_info(file: Path) -> tuple[int, pa.Schema, dict | None]:
    """(rows, schema, the artmem collection metadata) of a Parquet collection, from its footer."""
    import pyarrow.parquet as pq

    from artmem.data.collection import META_KEY

    meta = pq.read_metadata(file)
    schema = meta.schema.to_arrow_schema()
    raw = (schema.metadata or {}).get(META_KEY)
    return meta.num_rows, schema, json.loads(raw) if raw else None


class RowStore:
    """The rows as one Arrow table registered with DuckDB. Each thread queries through its own
    cursor (a DuckDB connection is not shared between threads), so that pages are computed
    concurrently; each query also uses DuckDB's own threads."""

    def __init__(self, table: pa.Table, threads: int | None = None, orderings: Orderings | None = None):
        import duckdb

        self.con = duckdb.connect(config={"threads": threads} if threads else {})
        self.lock = threading.Lock()
        self._local = threading.local()
        self._generation = 0
        self._sort_tables: dict[tuple, pa.Table] = {}
        self.orderings = orderings if orderings is not None else Orderings()
        self.set_table(table)

    def set_table(self, table: pa.Table) -> None:
        with self.lock:
            self.table = table
            self.columns = {f.name: f.type for f in table.schema}
            self._generation += 1
            self._snapshot = (table, self._generation)  # read as one: orders never mix two tables
        self.orderings.clear()

    def add_column(self, name: str, values: np.ndarray) -> None:
        """A column of per-row values (NaN as null) added to the table DuckDB sees: the scores of a
        large collection, which never change while it is served, are then sorted like any column,
        with the filter pushed into the scan (a quarter cheaper than a positional join)."""
        self.add_columns({name: values})

    def add_columns(self, columns: dict) -> None:
        """Several such columns at once (one new table, one reset of the kept orders). Arrow
        columns (the measures mapped from their cache file, NaN already null) are added as they
        are, zero-copy."""
        table = self.table
        for name, values in columns.items():
            arrow = isinstance(values, (pa.Array, pa.ChunkedArray))
            table = table.append_column(name, values if arrow else null_nan(pa.array(np.asarray(values))))
        self.set_table(table)

    def _cursor(self):
        """This thread's cursor, with the current table registered as `items`."""
        loc = self._local
        if getattr(loc, "generation", None) != self._generation:
            with self.lock:
                cur = self.con.cursor()
                cur.register("items", self.table)
                loc.cursor, loc.generation = cur, self._generation
        return loc.cursor

    def __len__(self) -> int:
        return self.table.num_rows

    def is_float(self, column: str) -> bool:
        return pa.types.is_floating(self.columns[column])

    # ------------------------------------------------------------------ reading rows
    def take(self, ids) -> pd.DataFrame:
        """Rows by id (= position), label columns decoded to text, as a pandas table."""
        t = self._take(ids)
        cols = {}
        for name, col in zip(t.column_names, t.columns, strict=True):
            cols[name] = col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col
        return pa.table(cols).to_pandas()

    def records(self, ids) -> list[dict]:
        """Rows by id as dicts (label values as text, missing as None): what a page of the grid
        needs, without building a pandas table (a quarter of a grid request's CPU before)."""
        return self._take(ids).to_pylist()

    def _take(self, ids) -> pa.Table:
        """Rows by id (= position). Taken record batch by record batch: `Table.take` over a
        chunked memory-mapped table concatenates whole columns first (190 ms for 48 rows of 10 M)."""
        ids = np.asarray(ids, dtype=np.int64)
        batches, starts = self._batches()
        which = np.searchsorted(starts, ids, side="right") - 1
        parts, order = [], []
        for b in np.unique(which):
            sel = np.nonzero(which == b)[0]
            parts.append(batches[b].take(pa.array(ids[sel] - starts[b])))
            order.append(sel)
        t = pa.Table.from_batches(parts, schema=self.table.schema) if parts else self.table.slice(0, 0)
        if len(parts) > 1:  # back to the order of `ids` (from one batch they already are)
            t = t.take(pa.array(np.argsort(np.concatenate(order), kind="stable")))
        return t

    def _batches(self) -> tuple[list[pa.RecordBatch], np.ndarray]:
        """The table's record batches (zero-copy) and the id of each one's first row."""
        table = self.table
        cached = getattr(self, "_batch_index", None)
        if cached is None or cached[0] is not table:
            batches = table.to_batches()
            starts = np.cumsum([0] + [b.num_rows for b in batches])[:-1].astype(np.int64)
            cached = self._batch_index = (table, batches, starts)
        return cached[1], cached[2]

    def path_of(self, item_id: int) -> str:
        return str(self.table.column("path")[int(item_id)].as_py())

    def root_of(self, item_id: int) -> int:
        return int(self.table.column("_root")[int(item_id)].as_py())

    def sql(self, query: str, params: list | None = None, arrow: bool = False, **tables):
        """Run a query (extra Arrow tables registered under the given names) -> numpy columns,
        or an Arrow table with `arrow` (list columns stay flat arrays, no Python object a value)."""
        cur = self._cursor()
        for name, t in tables.items():
            cur.register(name, t)
        try:
            if arrow:  # a relation straight to Arrow (a DB-API result would copy the rows once more)
                return cur.sql(query, params=params or None).to_arrow_table()
            return cur.execute(query, params or []).fetchnumpy()
        finally:
            for name in tables:
                cur.unregister(name)

    # ------------------------------------------------------------------ grid queries
    def where(self, filters: dict[str, str], text: str, text_columns: list[str]) -> tuple[str, list]:
        """The WHERE clause of a grid query: every label filter, and the search text as a
        case-insensitive substring of the path or of any label value (missing values never match)."""
        clauses, params = ["TRUE"], []
        for col, val in filters.items():
            clauses.append(f"CAST({quote_ident(col)} AS VARCHAR) = ?")
            params.append(str(val))
        needle = text.strip().lower()
        if needle:
            ors = [f"contains(lower(CAST({quote_ident(c)} AS VARCHAR)), ?)" for c in ["path", *text_columns]]
            clauses.append("(" + " OR ".join(f"coalesce({o}, FALSE)" for o in ors) + ")")
            params += [needle] * len(ors)
        return " AND ".join(clauses), params

    def count(self, where: str, params: list) -> int:
        return int(self._cursor().execute(f"SELECT count(*) FROM items WHERE {where}", params).fetchall()[0][0])

    def counts_by(self, columns: list[str]) -> dict[tuple, int]:
        """Rows per combination of values of `columns` (as text; rows missing one are left out,
        as a filter never matches them): one GROUP BY answers the count of every later filter
        on the same columns."""
        cols = ", ".join(f"CAST({quote_ident(c)} AS VARCHAR)" for c in columns)
        notnull = " AND ".join(f"{quote_ident(c)} IS NOT NULL" for c in columns)
        rows = self._cursor().execute(f"SELECT {cols}, count(*) FROM items WHERE {notnull} GROUP BY ALL").fetchall()
        return {tuple(r[:-1]): int(r[-1]) for r in rows}

    def _sort_table(self, key: tuple, values: np.ndarray, n: int) -> pa.Table:
        """`values` (aligned with the ids of a table of `n` rows) as a one-column Arrow table, NaN
        as null; kept per `key` (the data version and the sort key) so that paging does not
        rebuild it. Used by DuckDB's query and by the kept order's build alike."""
        hit = self._sort_tables.get(key)
        if hit is None:
            v = np.asarray(values)
            arr = pa.array(v.astype(np.float64) if v.dtype.kind in "biuf" else v, from_pandas=True)
            hit = pa.table({"v": arr})
            with self.lock:
                if len(self._sort_tables) > 8:
                    self._sort_tables.clear()
                self._sort_tables[key] = hit
        if len(hit) != n:
            raise ValueError(f"sort values for {len(hit)} rows, table has {n}")
        return hit

    def page_ids(self, where: str, params: list, order: str, offset: int, limit: int,
                 column: str | None = None, values: np.ndarray | None = None,
                 values_key: tuple | None = None, filters: dict[str, str] | None = None) -> np.ndarray:
        """Ids of one page sorted by a table `column`, or by `values` (one per row, by id).
        `filters` (the label filters of `where`, given when `where` holds nothing else) lets the
        kept orders answer once they are ready."""
        if filters is not None:
            ids = self._page_from_orderings(filters, order, offset, limit, column, values, values_key)
            if ids is not None:
                return ids
        direction = "ASC" if order == "asc" else "DESC"
        tail = f"{direction} NULLS LAST, id ASC LIMIT {int(limit)} OFFSET {int(offset)}"
        if column is not None:
            q = f"SELECT id FROM items WHERE {where} ORDER BY {quote_ident(column)} {tail}"
            return self.sql(q, params)["id"].astype(np.int64)
        sv = self._sort_table(values_key, values, len(self.table))
        q = f"SELECT id FROM items POSITIONAL JOIN sort_values WHERE {where} ORDER BY v {tail}"
        return self.sql(q, params, sort_values=sv)["id"].astype(np.int64)

    def _page_from_orderings(self, filters, order, offset, limit, column, values, values_key):
        """The page from the kept sort order and label codes, or None while one is not ready."""
        table, gen = self._snapshot
        n = table.num_rows
        if column is not None:
            key = ("order", gen, "column", column, order)
            ids = self.orderings.get(key, lambda: sort_order(null_nan(table.column(column)), order), 4 * n)
        else:
            ids = self.orderings.get(("order", gen, "values", values_key, order),
                                     lambda: sort_order(self._sort_table(values_key, values, n).column("v"), order),
                                     4 * n)
        wanted = []  # (codes of a filtered column, the code of its value)
        for col, val in filters.items():
            got = self.orderings.get(("codes", gen, col), lambda c=col: label_codes(table.column(c)), 4 * n)
            if got is not None:
                codes, lookup = got
                if str(val) not in lookup:  # a value no row has
                    return np.empty(0, dtype=np.int64) if ids is not None else None
                wanted.append((codes, lookup[str(val)]))
        if ids is None or len(wanted) < len(filters):
            return None

        def keep(part: np.ndarray) -> np.ndarray:
            ok = wanted[0][0][part] == wanted[0][1]
            for codes, code in wanted[1:]:
                ok &= codes[part] == code
            return ok
        return first_matches(ids, keep if wanted else None, offset, limit)

    def distinct(self, column: str, limit: int) -> list[str]:
        q = (f"SELECT DISTINCT CAST({quote_ident(column)} AS VARCHAR) AS v FROM items "
             f"WHERE {quote_ident(column)} IS NOT NULL LIMIT {int(limit)}")
        return [r[0] for r in self._cursor().execute(q).fetchall()]

    def ids_for_paths(self, paths, root: str) -> np.ndarray:
        """The collection id of each path (relative, or absolute under `root`), -1 where none."""
        if not isinstance(paths, (pa.Array, pa.ChunkedArray)):
            paths = pa.array([str(x) for x in paths], pa.string())
        q = pa.table({"pos": pa.array(np.arange(len(paths), dtype=np.int64)), "path": paths.cast(pa.string())})
        got = self.join_by_path(q, ["pos"], root)
        out = np.full(len(paths), -1, dtype=np.int64)
        out[got["pos"]] = got["id"]
        return out

    def join_by_path(self, source, columns: list[str], root: str, arrow: bool = False, row_number: bool = False):
        """`id` and `columns` of the rows of `source` (an Arrow table or dataset with `path`,
        scanned by DuckDB, never loaded whole) whose path is a collection row, as numpy columns
        (or, with `arrow`, an Arrow table: text columns stay Arrow strings, not Python objects).

        With `row_number`, also `file_row_number` (the row's position in its file), so that a
        caller can keep the first row of a path listed twice. `arrow` and `row_number` need a
        source of Parquet files."""
        prefix = str(root).replace("\\", "/").rstrip("/") + "/"
        norm = "replace(s.path, '\\', '/')"
        rel = f"CASE WHEN starts_with({norm}, ?) THEN substr({norm}, ?) ELSE {norm} END"
        cols = ", ".join(f"s.{quote_ident(c)}" for c in columns)
        files = [str(f) for f in getattr(source, "files", [])]
        if files and all(f.endswith(".parquet") for f in files):
            # DuckDB's own Parquet reader (faster and leaner than scanning the pyarrow dataset), in a
            # connection of its own: closing it hands the join's hash table back at once
            import duckdb

            con = duckdb.connect()
            try:
                con.register("items", self.table)
                number = ("s.file_row_number, ", ", file_row_number = true") if row_number else ("", "")
                q = (f"SELECT i.id, {number[0]}{cols} FROM read_parquet(?, union_by_name = true{number[1]}) s "
                     f"JOIN items i ON i.path = {rel} AND i._root = 0")
                params = [files, prefix, len(prefix) + 1]
                return con.sql(q, params=params).to_arrow_table() if arrow else con.execute(q, params).fetchnumpy()
            finally:
                con.close()
        if arrow or row_number:
            raise ValueError("arrow and row_number need a source of Parquet files")
        return self.sql(f"SELECT i.id, {cols} FROM src s JOIN items i ON i.path = {rel} AND i._root = 0",
                        [prefix, len(prefix) + 1], src=source)
