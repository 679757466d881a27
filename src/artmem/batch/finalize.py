"""The end of a batch job: its finished shards become the final tables.

`finalize(spec)` writes OUT/errors.parquet and either the merged OUT/<kind>.parquet (sorted by
path) or the shard dataset's manifest OUT/<kind>.dataset.json (`artmem.batch.dataset`), on a
local folder or an fsspec URL. `load_table` reads a finished job's whole table back.
"""

from __future__ import annotations

import pandas as pd

from artmem.batch import storage
from artmem.batch.dataset import manifest_file, should_merge, write_manifest
from artmem.batch.job import (
    JobResult,
    JobSpec,
    _concat,
    finished_shards,
    shard_errors_file,
)
from artmem.batch.results import errors_frame, write_errors
from artmem.batch.storage import Location


def _read_shards(files: list[Location]) -> pd.DataFrame:
    tables = storage.map_files(storage.read_parquet, list(files))
    return _concat([_arrow_to_frame(t, f) for f, t in zip(files, tables, strict=True) if t.num_rows])


def _arrow_to_frame(t, source) -> pd.DataFrame:
    """An Arrow results table as pandas, an `embedding` column as one float32 array per row."""
    from artmem.batch.results import arrow_vectors

    if "embedding" not in t.column_names:
        return t.to_pandas()
    vec = arrow_vectors(t, source)
    df = t.drop_columns(["embedding"]).to_pandas()
    df["embedding"] = list(vec)
    return df


def load_table(out: Location, kind: str) -> pd.DataFrame:
    """A finished job's whole table of `kind` (merged file or shard dataset), sorted by path."""
    from artmem.batch.dataset import open_dataset

    t = open_dataset(out, kind).to_table()
    if t.num_rows == 0:
        return _empty_table(kind)
    df = _arrow_to_frame(t, out)
    return df.sort_values("path", kind="stable").reset_index(drop=True)


def _shard_errors(spec: JobSpec, shard_ids, wanted: set[str]) -> pd.DataFrame:
    """The errors of the finished shards, for current images, one (the latest) per image."""
    names = set(storage.list_names(spec.shard_dir))
    files = [f for f in (shard_errors_file(spec.out, spec.kind, i) for i in shard_ids) if storage.name(f) in names]
    errs = _concat([t.to_pandas() for t in storage.map_files(storage.read_parquet, files)])
    if len(errs):
        errs = errs[errs["path"].isin(wanted)].drop_duplicates("path", keep="last")
    return errs


def _scan(f: Location):
    """(rows, uncompressed column bytes, path column or None) of one shard."""
    pf = storage.parquet_file(f)
    meta = pf.metadata
    nbytes = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    return meta.num_rows, nbytes, pf.read(columns=["path"]).column("path") if meta.num_rows else None


def finalize(spec: JobSpec) -> JobResult:
    """Write the job's final tables: OUT/errors.parquet and either the merged OUT/<kind>.parquet
    or the shard dataset's manifest OUT/<kind>.dataset.json (`spec.merge`; None = merged below
    `should_merge`'s limits, or whenever CSV copies are asked for).

    Rows are restricted to the collection's current images (for a shard dataset, shards holding
    images that left the collection are rewritten without them), de-duplicated by path; the
    merged file is sorted by path. An error is kept only for images that have no result.
    """
    import pyarrow.compute as pc

    shard_files = finished_shards(spec.out, spec.kind)
    wanted = set(spec.all_paths())
    errs = _shard_errors(spec, shard_files, wanted)
    err_paths = set(errs["path"]) if len(errs) else set()
    wanted_arrow = None
    # One pass over the shards' path columns: row and byte counts (the merge decision), stale rows.
    stats: dict[int, tuple[int, int]] = {}  # shard id: (rows, column bytes)
    stale: dict[int, object] = {}  # shard id: mask of its rows that are current images
    have_err: set[str] = set()  # images with an error row that do have a result
    for sid, (n, nbytes, paths) in zip(shard_files, storage.map_files(_scan, list(shard_files.values())),
                                       strict=True):
        stats[sid] = (n, nbytes)
        if not n:
            continue
        if err_paths:
            have_err.update(p for p in paths.to_pylist() if p in err_paths)
        if wanted_arrow is None:
            import pyarrow as pa

            wanted_arrow = pa.array(sorted(wanted), pa.string())
        keep = pc.is_in(paths, value_set=wanted_arrow)
        if not pc.all(keep).as_py():  # images removed from the collection since this shard ran
            stale[sid] = keep
            stats[sid] = (pc.sum(keep).as_py() or 0, stats[sid][1])
    n_rows = sum(n for n, _ in stats.values())
    merge = spec.merge
    if merge is None:
        merge = spec.csv or should_merge(n_rows, sum(b for _, b in stats.values()))
    if len(errs):
        errs = errs[~errs["path"].isin(have_err)].sort_values("path").reset_index(drop=True)
    errs = errors_frame(errs if len(errs) else None)
    table = None
    if merge:
        table = _read_shards(list(shard_files.values()))
        if len(table):
            table = table[table["path"].isin(wanted)].drop_duplicates("path", keep="first")
            table = table.sort_values("path", kind="stable").reset_index(drop=True)
        else:
            table = _empty_table(spec.kind)
        n_rows = len(table)
        written = spec.processor.write_final(spec.out, table, csv=spec.csv)
        storage.remove(manifest_file(spec.out, spec.kind))
    else:
        for sid, keep in stale.items():  # the dataset must hold exactly the current images
            storage.write_parquet(storage.read_parquet(shard_files[sid]).filter(keep), shard_files[sid])
        for name in (f"{spec.kind}.parquet", f"{spec.kind}.csv"):  # an earlier merged run's, now stale
            storage.remove(storage.join(spec.out, name))
        entries = [(storage.name(shard_files[sid]), n) for sid, (n, _) in stats.items()]
        written = [write_manifest(spec.out, spec.kind, entries)]
        written += _write_dataset_meta(spec, n_rows)
    written += write_errors(spec.out, errs, csv=spec.csv)
    return JobResult(out=spec.out, kind=spec.kind, errors=errs, written=written, n_total=len(wanted),
                     backend=getattr(spec.processor, "active_backend", None), n_rows=n_rows, merged=merge,
                     _table=table)


def _write_dataset_meta(spec: JobSpec, n_rows: int) -> list[Location]:
    """The processor's sidecar files for a shard dataset (features.json for features)."""
    hook = getattr(spec.processor, "write_dataset_meta", None)
    if hook is None:
        return []
    dim = 0
    if n_rows:
        from artmem.batch.dataset import open_dataset

        field_type = open_dataset(spec.out, spec.kind).schema.field("embedding").type \
            if spec.kind == "features" else None
        dim = int(getattr(field_type, "list_size", 0) or 0)
    return hook(spec.out, n_rows, dim)


def _empty_table(kind: str) -> pd.DataFrame:
    if kind == "scores":
        return pd.DataFrame({"path": pd.Series([], dtype="str"), "score": pd.Series([], dtype="float64")})
    if kind == "features":
        return pd.DataFrame({"path": pd.Series([], dtype="str"), "embedding": pd.Series([], dtype=object)})
    return pd.DataFrame({"path": pd.Series([], dtype="str")})
