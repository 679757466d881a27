"""`finalize` with the collection left in its Parquet file (`CollectionFile`, what the Ray driver
gets) checks the shards against it out of core (`artmem.batch.shard_check`, DuckDB in a child
process): the driver never loads the collection's paths, and the job ends with the same files,
rows and errors as with the collection in memory, both equal to a pandas reference computed from
the shard files (tests/finalize_support.py)."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from finalize_support import (
    REMOVED,
    ScoresStub,
    current_paths,
    read_manifest,
    reference,
    write_collection,
    write_finished_shards,
)

pytest.importorskip("duckdb")


def _spec(coll, out, merge):
    from artmem.batch.job import JobSpec

    return JobSpec(coll, ScoresStub(), out, shard_size=10, merge=merge)


def _collection(kind: str, tmp_path):
    """The collection without REMOVED: its Parquet file, or the same table in memory."""
    from artmem.batch.plan import CollectionFile
    from artmem.data.collection import Collection

    file = write_collection(tmp_path / "coll", current_paths())
    if kind == "file":
        return CollectionFile(file)
    return Collection(pd.DataFrame({"path": current_paths()}), str(tmp_path / "coll"), "coll")


@pytest.fixture
def no_paths_in_driver(monkeypatch):
    """Every way of getting a collection's paths into this process raises."""
    from artmem.batch.job import JobSpec
    from artmem.batch.plan import CollectionFile

    def refuse(*_a, **_k):
        raise AssertionError("finalize loaded the collection's paths")

    monkeypatch.setattr(JobSpec, "all_paths", refuse)
    for name in ("paths", "table"):
        monkeypatch.setattr(CollectionFile, name, property(refuse))
    monkeypatch.setattr(CollectionFile, "load", refuse)


def _shard(out, sid: int) -> pd.DataFrame:
    return pd.read_parquet(out / "shards" / f"scores-{sid:05d}.parquet")


def _check_dataset(res, out, ref) -> None:
    assert not res.merged and not (out / "scores.parquet").exists()
    # stale rows (images removed after their shard ran) are gone from exactly the shards holding them
    for sid, want in ref["shards"].items():
        pd.testing.assert_frame_equal(_shard(out, sid), want)
    assert not set(REMOVED) & set(pd.concat([_shard(out, sid) for sid in ref["shards"]])["path"])
    manifest = read_manifest(out)
    assert [(s["file"], s["rows"]) for s in manifest["shards"]] == [
        (f"scores-{sid:05d}.parquet", len(df)) for sid, df in ref["shards"].items()]
    assert res.n_rows == manifest["rows"] == sum(len(df) for df in ref["shards"].values())


def _check_common(res, out, ref) -> None:
    from artmem.batch.results import read_errors

    assert res.n_total == ref["n_total"]
    pd.testing.assert_frame_equal(res.errors, ref["errors"])
    pd.testing.assert_frame_equal(read_errors(out), ref["errors"])
    assert res.errors["path"].tolist() == ["many/011.jpg", "many/013.jpg", "many/014.jpg", "many/015.jpg"]
    assert res.errors["reason"].tolist() == ["bad 6", "bad 2", "bad 1", "bad 2"]  # the latest error kept


def test_shard_dataset_of_a_collection_file_never_loads_its_paths(tmp_path, no_paths_in_driver):
    from artmem.batch.finalize import finalize

    out = tmp_path / "out"
    write_finished_shards(out)
    ref = reference(out)  # before finalize rewrites the shards holding stale rows
    assert sum(len(df) for df in ref["shards"].values()) < 43  # there are stale rows to drop
    res = finalize(_spec(_collection("file", tmp_path), out, merge=False))
    _check_dataset(res, out, ref)
    _check_common(res, out, ref)


@pytest.mark.parametrize("kind", ["file", "memory"])
@pytest.mark.parametrize("merge", [False, True, None])
def test_finalize_equals_the_pandas_reference(tmp_path, kind, merge):
    """The out-of-core check (a collection file) and the in-memory one (a loaded collection)
    against the reference, for either layout; the default (None) merges a table this small."""
    from artmem.batch.finalize import finalize
    from artmem.batch.results import read_scores

    out = tmp_path / "out"
    write_finished_shards(out)
    ref = reference(out)
    res = finalize(_spec(_collection(kind, tmp_path), out, merge=merge))
    _check_common(res, out, ref)
    if merge is False:
        _check_dataset(res, out, ref)
        pd.testing.assert_frame_equal(res.table.reset_index(drop=True)[["path", "score"]],
                                      pd.concat(list(ref["shards"].values())).sort_values("path", kind="stable")
                                      .reset_index(drop=True))
        return
    assert res.merged and not (out / "scores.dataset.json").exists()
    pd.testing.assert_frame_equal(res.table, ref["merged"])
    pd.testing.assert_frame_equal(read_scores(out)[["path", "score"]], ref["merged"])
    assert res.n_rows == len(ref["merged"])


def test_merged_table_of_a_collection_file_never_loads_its_paths(tmp_path, no_paths_in_driver):
    from artmem.batch.finalize import finalize

    out = tmp_path / "out"
    write_finished_shards(out)
    ref = reference(out)
    res = finalize(_spec(_collection("file", tmp_path), out, merge=True))
    pd.testing.assert_frame_equal(res.table, ref["merged"])
    _check_common(res, out, ref)


def test_both_checks_write_the_same_files(tmp_path):
    """Out of core and in memory, on copies of the same shards: every file written is equal."""
    from artmem.batch.finalize import finalize

    write_finished_shards(tmp_path / "shards-only")
    results = {}
    for kind in ("file", "memory"):
        out = tmp_path / kind
        shutil.copytree(tmp_path / "shards-only", out)
        results[kind] = finalize(_spec(_collection(kind, tmp_path / f"coll-{kind}"), out, merge=False))
    names = sorted(p.relative_to(tmp_path / "file") for p in (tmp_path / "file").rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(tmp_path / "memory") for p in (tmp_path / "memory").rglob("*")
                           if p.is_file())
    for name in names:
        a, b = tmp_path / "file" / name, tmp_path / "memory" / name
        if name.suffix == ".parquet":
            pd.testing.assert_frame_equal(pd.read_parquet(a), pd.read_parquet(b))
        else:
            assert a.read_bytes() == b.read_bytes(), name
    f, m = results["file"], results["memory"]
    assert (f.n_total, f.n_rows, f.merged) == (m.n_total, m.n_rows, m.merged)
    pd.testing.assert_frame_equal(f.errors, m.errors)
