"""The layout of a job's results: one merged Parquet file, or a dataset of Parquet shards.

A finished job leaves its scores / features in one of two layouts (`finalize(merge=...)`):

    OUT/<kind>.parquet                 merged: one file, sorted by path (small results)
    OUT/<kind>.dataset.json            shard dataset: {"kind", "rows", "shards": [{"file", "rows"}]}
    OUT/shards/<kind>-NNNNN.parquet    ... whose shards are read together as one pyarrow dataset

The merged file is the default up to `MERGE_MAX_ROWS` rows and `MERGE_MAX_BYTES` of column data;
above either, merging would load the whole table into one process's memory (and every reader would
load it whole again), so the shards stay as they are and are read as one dataset. An interrupted
job (neither file yet) is read from the finished shards found in OUT/shards, with a warning.

Everything here works on a local folder and on an fsspec URL (see `artmem.batch.storage`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from artmem.batch import storage
from artmem.batch.storage import Location
from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)

# Merge below both: 1 M score rows are ~60 MB of Parquet and ~150 MB in pandas; 1 GiB of column
# data (Parquet's uncompressed size) is ~65 k resmem fc7 vectors (4096 x float32), which one
# process loads in a few seconds and a few GB of memory. Above, the shard dataset streams.
MERGE_MAX_ROWS = 1_000_000
MERGE_MAX_BYTES = 1 << 30

SHARDS_DIR = "shards"
_SHARD_RE = re.compile(r"^(?P<kind>[A-Za-z0-9_]+)-(?P<id>\d{5,})\.parquet$")


def should_merge(rows: int, column_bytes: int) -> bool:
    """The default layout: merged when both the rows and the column data are below the limits."""
    return rows <= MERGE_MAX_ROWS and column_bytes <= MERGE_MAX_BYTES


def manifest_file(out: Location, kind: str) -> Location:
    return storage.join(out, f"{kind}.dataset.json")


def write_manifest(out: Location, kind: str, shards: list[tuple[str, int]]) -> Location:
    """OUT/<kind>.dataset.json: the shard files (names in OUT/shards) and their row counts."""
    from artmem.batch.results import write_json

    return write_json({"kind": kind, "layout": "shards", "rows": int(sum(n for _, n in shards)),
                       "shards": [{"file": f, "rows": int(n)} for f, n in shards]}, manifest_file(out, kind))


def shard_names(out: Location, kind: str) -> dict[int, str]:
    """{shard id: file name} of the finished shards of `kind` in OUT/shards (one listing)."""
    found: dict[int, str] = {}
    for n in storage.list_names(storage.join(out, SHARDS_DIR)):
        m = _SHARD_RE.match(n)
        if m and m["kind"] == kind:
            found[int(m["id"])] = n
    return dict(sorted(found.items()))


@dataclass(frozen=True)
class DatasetSource:
    """Where a job's table of one kind is.

    Attributes:
        folder: the job folder.
        files: the merged file (one), or the shard files.
        sharded: True for shards (a finished job's dataset, or an interrupted job's shards).
        complete: False for an interrupted job's shards.
        rows: row count per file when known without reading (the manifest's), else None.
    """

    folder: Location
    files: list[Location]
    sharded: bool
    complete: bool
    rows: tuple[int, ...] | None = None


def resolve_results(file_or_dir: Location, kind: str) -> DatasetSource:
    """The table of `kind` in a job folder (or the table file itself): the merged file, else the
    shard dataset of the manifest, else an interrupted job's finished shards.

    Raises:
        ArtmemError: nothing of `kind` there, or a named file that does not exist.
    """
    loc = storage.location(file_or_dir)
    with storage.reported(loc, f"read the {kind}"):
        return _resolve(loc, kind)


def _resolve(loc: Location, kind: str) -> DatasetSource:
    from artmem.batch.results import TABLE_SUFFIXES, read_json

    if storage.suffix(loc) in TABLE_SUFFIXES and not storage.is_dir(loc):
        if not storage.exists(loc):
            raise ArtmemError(f"{loc}: no such file")
        return DatasetSource(storage.parent(loc), [loc], sharded=False, complete=True)
    for name in (f"{kind}.parquet", f"{kind}.csv"):
        f = storage.join(loc, name)
        if storage.exists(f):
            return DatasetSource(loc, [f], sharded=False, complete=True)
    manifest = manifest_file(loc, kind)
    if storage.exists(manifest):
        try:
            entries = [(str(e["file"]), int(e["rows"])) for e in read_json(manifest)["shards"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ArtmemError(f"{manifest}: not a readable shard-dataset manifest ({exc})") from exc
        files = [storage.join(loc, SHARDS_DIR, f) for f, _ in entries]
        return DatasetSource(loc, files, sharded=True, complete=True, rows=tuple(n for _, n in entries))
    names = shard_names(loc, kind)
    if names:
        logger.warning("%s: no %s.parquet yet, reading %d finished shard(s)", loc, kind, len(names))
        files = [storage.join(loc, SHARDS_DIR, n) for n in names.values()]
        return DatasetSource(loc, files, sharded=True, complete=False)
    verb = {"scores": "score", "features": "extract"}.get(kind, "the job")
    raise ArtmemError(f"{loc}: no {kind}.parquet (run `artmem {verb}` first)")


def has_results(folder: Location, kind: str, complete: bool = True) -> bool:
    """Whether a job folder holds `kind` results: the merged file or a finished shard dataset
    (with `complete=False`, an interrupted job's shards count too). Never raises for a missing
    folder."""
    try:
        return resolve_results(folder, kind).complete or not complete
    except ArtmemError:
        return False


def open_dataset(file_or_dir: Location, kind: str):
    """The scores or features of a job as one lazy `pyarrow.dataset.Dataset` (nothing read yet).

    The merged OUT/<kind>.parquet, else the shard dataset of a finished job, else the finished
    shards of an interrupted one (shards with no rows, whose schema lacks the result columns, are
    left out). Works on local folders and fsspec URLs. Scan it with `to_batches(columns=...)`,
    count with `count_rows()`, filter with expressions. An interrupted job's shards are not
    restricted to the collection's current images, as `finalize` does.

    Raises:
        ArtmemError: no such results, or a CSV table (lazy reading needs Parquet).
    """
    import pyarrow.dataset as pads

    src = resolve_results(file_or_dir, kind)
    files = list(src.files)
    if any(storage.suffix(f) != ".parquet" for f in files):
        raise ArtmemError(f"{files[0]}: lazy reading needs Parquet, not {storage.suffix(files[0])}")
    if src.sharded:
        rows = src.rows or tuple(storage.parquet_file(f).metadata.num_rows for f in files)
        files = [f for f, n in zip(files, rows, strict=True) if n > 0] or files[:1]
    fs, _ = storage.arrow_source(src.folder)
    try:
        return pads.dataset([storage.arrow_source(f)[1] for f in files], format="parquet", filesystem=fs)
    except Exception as exc:
        raise ArtmemError(f"{file_or_dir}: cannot open the {kind} as a dataset ({exc})") from exc


def iter_feature_batches(file_or_dir: Location, batch_rows: int = 65536):
    """Stream (paths, float32 vectors (n, D)) chunks of a job's features without loading them all."""
    import pyarrow as pa
    import pyarrow.dataset as pads

    from artmem.batch.results import FEATURES, arrow_vectors

    dataset = open_dataset(file_or_dir, FEATURES)
    # Arrow's default scan pre-buffers whole row groups and reads ahead several fragments and
    # batches; on a 5 GB features file it held 2.2 GB after 2 M rows and kept growing. With both
    # off a stream stays near one batch (~0.2 GB measured by bench/search.py --on-disk).
    scan = pads.ParquetFragmentScanOptions(pre_buffer=False)
    for batch in dataset.to_batches(columns=["path", "embedding"], batch_size=batch_rows,
                                    fragment_scan_options=scan, batch_readahead=1, fragment_readahead=1):
        if batch.num_rows:
            table = pa.Table.from_batches([batch])
            yield [str(p) for p in table.column("path").to_pylist()], arrow_vectors(table, file_or_dir)
