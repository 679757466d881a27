"""Where the explorer's rows come from (see `rowstore.py` for how they are queried).

- A Parquet collection of LAZY_MIN_ROWS rows or more: its memory-mapped Arrow copy, made once by
  streaming the file row group by row group; the Parquet file is never loaded.
- A CSV collection: its memory-mapped copy when an earlier start made one (neither the CSV nor
  pandas is read); otherwise read as always, and copied when it has LAZY_MIN_ROWS rows or more.
- Anything else (a folder, a small file, a `Collection`): the pandas table, as always.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa

from artmem.data.collection import SIDECAR, Collection, _is_url, open_collection
from artmem.web.rowstore import (
    LAZY_MIN_ROWS,
    arrow_cache_of_parquet,
    cache_info,
    file_signature,
    frame_to_arrow,
    open_arrow_cache,
    parquet_collection_info,
    write_arrow_cache,
)
from artmem.web.uploads_table import COLLECTION


def _parquet_collection_file(source) -> Path | None:
    """The Parquet file `open_collection` would read for `source`, when it is one."""
    if not isinstance(source, (str, Path)):
        return None
    p = Path(source)
    if p.is_dir():
        p = p / "collection.parquet"
    return p if p.is_file() and p.suffix.lower() in (".parquet", ".pq") else None


def _csv_collection_file(source) -> Path | None:
    """The CSV file `open_collection` would read for `source`, when it is one."""
    if not isinstance(source, (str, Path)):
        return None
    p = Path(source)
    if p.is_dir():
        if (p / "collection.parquet").exists():
            return None
        p = p / "collection.csv"
    return p if p.is_file() and p.suffix.lower() == ".csv" else None


def _schema_only_collection(file: Path, info: dict | None, empty: pd.DataFrame) -> Collection:
    """A `Collection` with the file's columns and root but no rows (name, root, paths and the
    label/numeric columns work; the rows stay in the memory-mapped cache). Root resolution as in
    `Collection.load`."""
    if info is None and (file.parent / SIDECAR).exists():
        info = json.loads((file.parent / SIDECAR).read_text())
    if info is None:
        info = {"root": str(file.parent.resolve()), "name": file.parent.name, "meta": {}}
    root = info["root"]
    if not _is_url(root) and not Path(root).is_absolute():
        root = str((file.parent / root).resolve())
    return Collection(empty, root, info.get("name", "collection"), info.get("meta", {}))


def _open_csv_copy(source, candidates: list[Path], cache_folder: Callable[[], Path]):
    """(collection, table, copy file) of a CSV collection served from its copy, or (collection,
    None, None) when it is read into pandas (small), or None when `source` is not a CSV collection."""
    csv = _csv_collection_file(source)
    if csv is None:
        return None
    name = f"collection-{file_signature(csv)}.arrow"
    cached = next((f / name for f in candidates if (f / name).is_file()), None)
    if cached is None:
        coll = open_collection(source)
        if len(coll) < LAZY_MIN_ROWS:
            return coll, None, None
        frame = coll.table.assign(_root=COLLECTION)
        cached = write_arrow_cache(frame_to_arrow(frame, list(coll.label_columns)), cache_folder() / name,
                                   {"root": coll.root, "name": coll.name, "meta": coll.meta})
        del coll, frame
    table = open_arrow_cache(cached)
    info = cache_info(table)
    empty = table.schema.empty_table().drop_columns(["id", "_root"]).to_pandas()
    return Collection(empty, info["root"], info.get("name", "collection"), info.get("meta", {})), table, cached


def open_rows(source, candidates: list[Path], cache_folder: Callable[[], Path]
              ) -> tuple[Collection, pa.Table, pd.DataFrame | None, Path | None]:
    """(collection, Arrow table of the rows, the pandas table or None when memory-mapped, the
    memory-mapped copy or None).

    Args:
        source: anything `open_collection` accepts.
        candidates: folders where a copy may already be.
        cache_folder: where to write a new copy (called only when one is written).
    """
    got = _open_csv_copy(source, candidates, cache_folder)
    if got is not None and got[1] is not None:
        return got[0], got[1], None, got[2]
    file = _parquet_collection_file(source)
    n, schema, info = parquet_collection_info(file) if file is not None else (0, None, None)
    if file is not None and n >= LAZY_MIN_ROWS:
        collection = _schema_only_collection(file, info, schema.empty_table().to_pandas())
        copy = arrow_cache_of_parquet(file, cache_folder())
        return collection, open_arrow_cache(copy), None, copy
    collection = got[0] if got is not None else open_collection(source)
    frame = collection.table.copy()
    frame["_root"] = COLLECTION
    frame = frame.reset_index(drop=True)
    return collection, frame_to_arrow(frame, list(collection.label_columns)), frame, None
