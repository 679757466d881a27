"""The end of a batch job: its finished shards become the final tables.

`finalize(spec)` writes OUT/errors.parquet and either the merged OUT/<kind>.parquet (sorted by
path) or the shard dataset's manifest OUT/<kind>.dataset.json (`artmem.batch.dataset`), on a
local folder or an fsspec URL. `load_table` reads a finished job's whole table back.
"""

from __future__ import annotations

import pandas as pd

from artmem.batch import storage
from artmem.batch.dataset import manifest_file, should_merge, write_manifest
from artmem.batch.job import JobResult, JobSpec, _concat, finished_shards
from artmem.batch.results import write_errors
from artmem.batch.shard_check import check_shards
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


def finalize(spec: JobSpec) -> JobResult:
    """Write the job's final tables: OUT/errors.parquet and either the merged OUT/<kind>.parquet
    or the shard dataset's manifest OUT/<kind>.dataset.json (`spec.merge`; None = merged below
    `should_merge`'s limits, or whenever CSV copies are asked for).

    Rows are restricted to the collection's current images (for a shard dataset, shards holding
    images that left the collection are rewritten without them), de-duplicated by path; the
    merged file is sorted by path. An error is kept only for images that have no result.
    With a `CollectionFile` the check against the collection runs out of core
    (`artmem.batch.shard_check`): a shard dataset is then finished holding O(number of shards)
    in this process, the collection's paths never loaded.
    """
    import pyarrow.compute as pc

    shard_files = finished_shards(spec.out, spec.kind)
    with check_shards(spec, shard_files) as check:
        n_rows = sum(check.rows.values())
        merge = spec.merge
        if merge is None:
            merge = spec.csv or should_merge(n_rows, sum(check.nbytes.values()))
        table = None
        if merge:
            table = _read_shards(list(shard_files.values()))
            if len(table):
                if check.stale_rows:  # images removed from the collection since their shard ran
                    table = table[~table["path"].isin(set(check.stale_paths().to_pylist()))]
                table = table.drop_duplicates("path", keep="first")
                table = table.sort_values("path", kind="stable").reset_index(drop=True)
            else:
                table = _empty_table(spec.kind)
            n_rows = len(table)
            written = spec.processor.write_final(spec.out, table, csv=spec.csv)
            storage.remove(manifest_file(spec.out, spec.kind))
        else:
            for sid in check.stale_rows:  # the dataset must hold exactly the current images
                shard = storage.read_parquet(shard_files[sid])
                keep = pc.invert(pc.is_in(shard.column("path"), value_set=check.stale_paths(sid)))
                storage.write_parquet(shard.filter(keep), shard_files[sid])
            for name in (f"{spec.kind}.parquet", f"{spec.kind}.csv"):  # an earlier merged run's, now stale
                storage.remove(storage.join(spec.out, name))
            entries = [(storage.name(shard_files[sid]), n) for sid, n in check.rows.items()]
            written = [write_manifest(spec.out, spec.kind, entries)]
            written += _write_dataset_meta(spec, n_rows)
        errs = check.errors
        written += write_errors(spec.out, errs, csv=spec.csv)
    return JobResult(out=spec.out, kind=spec.kind, errors=errs, written=written, n_total=check.n_wanted,
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
