"""The Ray engine's out-of-core plan (`artmem.batch.plan`) makes exactly the shards `prepare_job`
makes in memory: same ids, same paths in the same order, with and without finished shards."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

pytest.importorskip("duckdb")


class _Proc:
    """The least a job needs of a processor for planning (no model)."""

    kind = "scores"

    def spec(self) -> dict:
        return {"processor": "plan-test"}


# Duplicates, case, digits, accents, a private-use character (how a table stores a non-UTF-8 byte,
# see artmem.data.pathnames), characters beyond the BMP and a quote: Python's `sorted` (code
# points) and DuckDB's ORDER BY (UTF-8 bytes) must agree on all of them.
_PATHS = (["b/x.jpg", "B/x.jpg", "a/10.jpg", "a/9.jpg", "a/9.jpg", "é/1.jpg", "e/1.jpg",
           "caf\uefe9.jpg", "caf\u00e9.jpg", "\U0001f3a8/art.png", "z'quote.jpg", "a b/c.jpg"]
          + [f"many/{i:03d}.jpg" for i in range(25)])


def _collection(root: Path):
    from artmem.data.collection import Collection

    return Collection(pd.DataFrame({"path": _PATHS}), str(root), "plan-test")


def _spec(coll, out: Path, shard_size: int):
    from artmem.batch.job import JobSpec

    return JobSpec(coll, _Proc(), out, shard_size=shard_size)


def _planned(spec, resume: bool = True) -> list[tuple[int, list[str], list[str]]]:
    """(shard id, paths, abs paths) of every pending-list file the plan writes (in a child
    process, as the Ray engine runs it)."""
    from artmem.batch.job import open_job
    from artmem.batch.plan import decode_abs_path, plan_pending

    plan = plan_pending(spec.collection, open_job(spec, resume), spec.shard_size, spec.out / "pending",
                        decode_block=4)
    shards = plan.shards
    assert plan.n_wanted == len(set(_PATHS)) and plan.n_pending == int(shards.rows.sum())
    assert not (spec.out / "pending" / "collection-paths.parquet").exists()
    got = []
    for sid, n, groups in zip(shards.ids, shards.rows, shards.groups, strict=True):
        f = pq.ParquetFile(shards.file(int(sid)))
        t = f.read()
        assert t.num_rows == n and f.num_row_groups == groups
        assert set(t.column("shard").to_pylist()) == {sid}
        got.append((int(sid), t.column("path").to_pylist(), [decode_abs_path(b) for b in t.column("abs_path").to_pylist()]))
    return got


def _expected(spec) -> list[tuple[int, list[str], list[str]]]:
    from artmem.batch.job import prepare_job

    return [(s.id, list(s.paths), [spec.collection.abs_path(p) for p in s.paths])
            for s in prepare_job(spec, resume=True)]


@pytest.mark.parametrize("shard_size", [1, 4, 7, 100])
def test_plan_equals_prepare_job(tmp_path, shard_size):
    spec = _spec(_collection(tmp_path / "root"), tmp_path / "out", shard_size)
    got = _planned(spec)
    assert got == _expected(spec)
    assert [p for _, paths, _ in got for p in paths] == sorted(set(_PATHS))


def test_plan_after_finished_shards_equals_prepare_job(tmp_path):
    """Finished shards (an out-of-order one, errors retried, an empty one) are subtracted the same
    way and new shards are numbered after the last finished one."""
    from artmem.batch.job import write_shard_files

    spec = _spec(_collection(tmp_path / "root"), tmp_path / "out", 5)
    wanted = sorted(set(_PATHS))
    ok = pd.DataFrame({"path": wanted[:4] + [wanted[20]], "score": [0.5] * 5})
    write_shard_files(spec.out, "scores", 0, ok, [(wanted[4], "broken")])  # failed: retried
    write_shard_files(spec.out, "scores", 3, pd.DataFrame({"path": wanted[10:12], "score": [0.1, 0.2]}), [])
    write_shard_files(spec.out, "scores", 7, pd.DataFrame({"path": pd.Series([], dtype="str")}), [])
    got = _planned(spec)
    assert got == _expected(spec)
    assert got[0][0] == 8
    done = set(wanted[:4]) | {wanted[20]} | set(wanted[10:12])
    assert [p for _, paths, _ in got for p in paths] == [p for p in wanted if p not in done]


def test_plan_of_collection_file_equals_loaded_collection(tmp_path):
    """A `CollectionFile` (never loaded) plans what the loaded `Collection` plans; its root,
    name, length and absolute paths are the loaded collection's."""
    from artmem.batch.plan import CollectionFile
    from artmem.data.collection import Collection

    coll = _collection(tmp_path / "root")
    coll.save(tmp_path / "c")
    lazy, loaded = CollectionFile(tmp_path / "c" / "collection.parquet"), Collection.load(tmp_path / "c" / "collection.parquet")
    assert (lazy.root, lazy.name, len(lazy)) == (loaded.root, loaded.name, len(loaded))
    assert lazy.paths == loaded.paths and lazy.abs_paths() == loaded.abs_paths()
    a = _planned(_spec(lazy, tmp_path / "out-lazy", 6))
    b = _planned(_spec(loaded, tmp_path / "out-loaded", 6))
    assert a == b and a == _expected(_spec(loaded, tmp_path / "out-ref", 6))


def test_plan_of_nothing_is_an_error(tmp_path):
    from artmem.batch.job import open_job
    from artmem.batch.plan import plan_pending
    from artmem.data.collection import Collection
    from artmem.errors import ArtmemError

    spec = _spec(Collection(pd.DataFrame({"path": pd.Series([], dtype="str")}), str(tmp_path), "empty"),
                 tmp_path / "out", 4)
    with pytest.raises(ArtmemError, match="^the collection has no images$"):
        plan_pending(spec.collection, open_job(spec), spec.shard_size, tmp_path / "pending", 32)


def test_locate_unit_walks_the_shards_row_groups():
    import numpy as np

    from artmem.batch.plan import PendingShards, locate_unit

    shards = PendingShards(Path("."), np.array([4, 5, 9]), np.array([10, 3, 7]), np.array([3, 1, 2]))
    starts = shards.unit_starts()
    got = [locate_unit(u, shards.ids, starts) for u in range(shards.n_units)]
    assert got == [(4, 0), (4, 1), (4, 2), (5, 0), (9, 0), (9, 1)]
