"""Ray engine: same rows, same errors and same shard files as the local engine; resume across engines."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from artmem.batch.engines.ray import plan_actors
from artmem.errors import ArtmemError
from collection_support import copy_images

# ----------------------------------------------------------------------------- no Ray needed


def test_plan_actors_leaves_cpu_for_decode_tasks():
    p = plan_actors(2)
    assert p.actors == 1 and p.cpus_per_actor <= 1.0
    assert p.actors * p.cpus_per_actor + p.decode_cpus <= 2
    p = plan_actors(2, actors=2)
    assert p.actors == 2 and p.cpus_per_actor == pytest.approx(0.75)
    assert p.threads == 1
    p = plan_actors(64, cpus_per_actor=4)
    assert p.actors == 15 and p.threads == 4 and p.decode_cpus == 1.0
    p = plan_actors(32, 4, gpus_per_actor=1)
    assert p.actors == 4 and p.gpus_per_actor == 1.0
    p = plan_actors(32, 2, gpus_per_actor=0.5)
    assert p.actors == 4
    assert plan_actors(16, max_useful=3).actors == 3
    # per node: 4 nodes x 16 CPUs leave 2 CPUs on each node, not 2 in the whole cluster
    assert plan_actors(64, node_cpus=[16, 16, 16, 16]).actors == 56
    assert plan_actors(36, node_cpus=[0, 4, 32]).actors == 3 + 30  # a CPU-less head node adds none


def test_plan_actors_rejects_impossible_requests():
    with pytest.raises(ArtmemError, match="no GPU"):
        plan_actors(4, 0, gpus_per_actor=1)
    with pytest.raises(ArtmemError, match="CPUs"):
        plan_actors(2, actors=4, cpus_per_actor=1)
    with pytest.raises(ArtmemError, match="GPU"):
        plan_actors(8, 1, actors=2, gpus_per_actor=1)


def _result_frame(paths: list[str], kind: str) -> pd.DataFrame:
    """What a processor returns for `paths` (scores, or float32 vectors), with its `path` column."""
    rng = np.random.default_rng(len(paths))
    if kind == "scores":
        return pd.DataFrame({"path": paths, "score": rng.random(len(paths)).astype(np.float32)})
    return pd.DataFrame({"path": paths, "embedding": list(rng.random((len(paths), 5), dtype=np.float32))})


@pytest.mark.parametrize("kind", ["scores", "features"])
def test_compact_shard_orders_dedups_and_matches_write_shard(tmp_path, kind):
    """Parts arriving in any order, a batch written twice and a retried batch regrouped differently
    give the shard files `write_shard_files` writes for the whole shard at once; parts removed."""
    import pyarrow.parquet as pq

    from artmem.batch.engines.ray_parts import compact_shard, shard_parts_dir, write_part
    from artmem.batch.job import shard_errors_file, shard_file, write_shard_files

    paths = [f"img/{i:03d}.jpg" for i in range(10)]
    bad = {"img/002.jpg": "empty file", "img/007.jpg": "not an image"}
    full = _result_frame([p for p in paths if p not in bad], kind)
    rows = full.set_index("path")

    def part(batch):
        ok = [p for p in batch if p not in bad]
        write_part(tmp_path / "run", kind, 3, batch, rows.loc[ok].reset_index() if ok else None,
                   [(p, bad[p]) for p in batch if p in bad])

    for batch in (paths[6:], paths[:3], paths[3:6], paths[:3], paths[2:5]):  # last two: re-executions
        part(batch)
    res = compact_shard(str(tmp_path / "ray"), kind, 3, tuple(paths), str(tmp_path / "run"))
    ref = write_shard_files(tmp_path / "ref", kind, 3, full, list(bad.items()))
    assert (res.n_ok, res.n_errors) == (ref.n_ok, ref.n_errors) == (8, 2)
    assert not shard_parts_dir(tmp_path / "run", kind, 3).exists()
    for f in (shard_file, shard_errors_file):
        a, b = pq.read_table(f(tmp_path / "ray", kind, 3)), pq.read_table(f(tmp_path / "ref", kind, 3))
        assert a.schema.equals(b.schema) and a.equals(b)


def test_compact_shard_refuses_parts_that_miss_images(tmp_path):
    """A shard is never written with images missing (e.g. parts written on a node-local disk)."""
    from artmem.batch.engines.ray_parts import compact_shard, write_part
    from artmem.batch.job import finished_shards

    paths = [f"img/{i}.jpg" for i in range(4)]
    write_part(tmp_path / "run", "scores", 0, paths[:2], _result_frame(paths[:2], "scores"), [])
    with pytest.raises(RuntimeError, match="2 missing.*shared filesystem"):
        compact_shard(str(tmp_path / "out"), "scores", 0, tuple(paths), str(tmp_path / "run"))
    with pytest.raises(RuntimeError, match="no part files.*shared filesystem"):
        compact_shard(str(tmp_path / "out"), "scores", 1, tuple(paths), str(tmp_path / "run"))
    assert finished_shards(tmp_path / "out", "scores") == {}


# ----------------------------------------------------------------------------- with Ray

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray instance (2 CPUs, small object store) for the whole module."""
    from artmem.batch.engines.ray import init_ray

    if ray.is_initialized():
        ray.shutdown()
    session = init_ray(num_cpus=2, object_store_memory=256 * 1024**2)
    yield session
    ray.shutdown()


def _tiny_collection(tmp_path_factory, synthetic_collection):
    """A copy of 20 synthetic images plus an empty file, a non-image and a missing file."""
    from artmem.data.collection import Collection

    root = tmp_path_factory.mktemp("ray-coll")
    paths = copy_images(synthetic_collection, root)
    (root / "bad").mkdir()
    (root / "bad" / "empty.jpg").write_bytes(b"")
    (root / "bad" / "notes.png").write_bytes(b"this is not a png")
    table = pd.DataFrame({"path": paths + ["bad/empty.jpg", "bad/notes.png", "bad/missing.jpg"]})
    return Collection(table, str(root), "ray-test")


@pytest.fixture(scope="module")
def tiny_coll(tmp_path_factory, synthetic_collection):
    return _tiny_collection(tmp_path_factory, synthetic_collection)


def _as_url(coll):
    """The same collection with its root given as an fsspec URL (read through fsspec by workers)."""
    from artmem.data.collection import Collection

    return Collection(coll.table.copy(), "local://" + str(coll.root), coll.name)


def _spec(coll, out, model, kind, shard_size=6):
    from artmem.batch.job import JobSpec
    from artmem.batch.processors import ModelProcessor

    return JobSpec(coll, ModelProcessor(model, kind=kind, backend="torch"), out, shard_size=shard_size, device="cpu")


def _local(coll, out, model, kind, shard_size=6, **kw):
    from artmem.batch.engines.local import run_local

    return run_local(_spec(coll, out, model, kind, shard_size), num_workers=0, progress=False, **kw)


def _ray(coll, out, model, kind, shard_size=6, **kw):
    from artmem.batch.engines.ray import run_job

    return run_job(_spec(coll, out, model, kind, shard_size), progress=False, **kw)


def _shard_files(out: Path) -> list[str]:
    return sorted(f.name for f in (out / "shards").iterdir() if not f.name.startswith("."))


def _assert_same_tables(a: pd.DataFrame, b: pd.DataFrame, kind: str, atol: float) -> None:
    assert list(a.columns) == list(b.columns)
    assert a["path"].tolist() == b["path"].tolist()
    if kind == "scores":
        np.testing.assert_allclose(a["score"].to_numpy(), b["score"].to_numpy(), atol=atol, rtol=0)
    else:
        va, vb = np.stack(a["embedding"]), np.stack(b["embedding"])
        assert va.shape == vb.shape and va.dtype == vb.dtype == np.float32
        np.testing.assert_allclose(va, vb, atol=atol, rtol=0)


def _assert_same_job(out_local: Path, out_ray: Path, kind: str, atol: float) -> None:
    """Merged tables, error tables, shard layout and Parquet schemas all agree."""
    import pyarrow.parquet as pq

    from artmem.batch.results import read_errors, read_features, read_scores

    if kind == "scores":
        _assert_same_tables(read_scores(out_local), read_scores(out_ray), kind, atol)
    else:
        fa, fb = read_features(out_local), read_features(out_ray)
        assert fa.paths == fb.paths
        np.testing.assert_allclose(fa.vectors, fb.vectors, atol=atol, rtol=0)
        assert {k: fa.meta[k] for k in ("model", "layer", "dim", "count", "backend")} == \
               {k: fb.meta[k] for k in ("model", "layer", "dim", "count", "backend")}
    pd.testing.assert_frame_equal(read_errors(out_local), read_errors(out_ray))
    assert _shard_files(out_local) == _shard_files(out_ray)
    for name in _shard_files(out_local) + [f"{kind}.parquet", "errors.parquet"]:
        fa = out_local / name if (out_local / name).exists() else out_local / "shards" / name
        fb = out_ray / name if (out_ray / name).exists() else out_ray / "shards" / name
        assert pq.read_schema(fa).equals(pq.read_schema(fb)), name
        ta, tb = pq.read_table(fa), pq.read_table(fb)
        assert ta.column("path").to_pylist() == tb.column("path").to_pylist(), name


@pytest.mark.ray
@pytest.mark.parametrize("kind", ["scores", "features"])
def test_tiny_model_same_rows_as_local(ray_session, tiny_coll, tmp_path, kind):
    local = _local(tiny_coll, tmp_path / "local", "tiny_test", kind)
    # The Ray run reads the images through fsspec (a URL root), as a cluster would from storage.
    res = _ray(_as_url(tiny_coll), tmp_path / "ray", "tiny_test", kind, actors=2)
    assert res.n_total == 23 and res.n_processed == 23 and res.n_resumed == 0
    assert len(res.table) == 20 and len(res.errors) == 3
    reasons = dict(zip(res.errors["path"], res.errors["reason"], strict=True))
    assert set(reasons) == {"bad/empty.jpg", "bad/notes.png", "bad/missing.jpg"}
    assert "empty" in reasons["bad/empty.jpg"] and "not found" in reasons["bad/missing.jpg"]
    assert res.ray["plan"].actors == 2
    assert sum(w["images"] for w in res.ray["workers"].values()) == 23
    _assert_same_job(tmp_path / "local", tmp_path / "ray", kind, atol=1e-5)
    assert len(local.table) == 20


@pytest.fixture(scope="module")
def photo_coll(tmp_path_factory, real_images):
    """4 real photographs/paintings (bundled with the installed packages)."""
    from artmem.data.collection import Collection

    root = tmp_path_factory.mktemp("photos")
    picks = [p for p in sorted(real_images, key=lambda p: p.name) if real_images[p] != "madonna"][:2]
    picks += [p for p in sorted(real_images, key=lambda p: p.name) if real_images[p] == "madonna"][:2]
    for p in picks:
        shutil.copy(p, root / p.name)
    return Collection(pd.DataFrame({"path": sorted(p.name for p in picks)}), str(root), "photos")


@pytest.mark.slow  # loads a big pretrained network
@pytest.mark.ray
@pytest.mark.parametrize("kind", ["scores", "features"])
def test_resmem_real_images_same_as_local(ray_session, photo_coll, tmp_path, kind):
    _local(photo_coll, tmp_path / "local", "resmem", kind, shard_size=3)
    res = _ray(photo_coll, tmp_path / "ray", "resmem", kind, shard_size=3, actors=1)
    assert len(res.table) == 4 and len(res.errors) == 0
    _assert_same_job(tmp_path / "local", tmp_path / "ray", kind, atol=1e-4)
    if kind == "scores":
        scores = res.table["score"]
        assert scores.between(0, 1).all() and scores.std() > 1e-3  # real, varied scores
    else:
        assert np.stack(res.table["embedding"]).shape[1] >= 512


class _Stop(Exception):
    pass


def _stop_after(n: int):
    done = []

    def hook(res):
        done.append(res.shard_id)
        if len(done) >= n:
            raise _Stop

    return hook


@pytest.mark.ray
def test_resume_across_engines(ray_session, tiny_coll, tmp_path):
    """local killed after 2 shards -> Ray killed after 1 more -> local finishes == uninterrupted."""
    ref = _local(tiny_coll, tmp_path / "ref", "tiny_test", "scores", shard_size=4)
    out = tmp_path / "mixed"
    with pytest.raises(_Stop):
        _local(tiny_coll, out, "tiny_test", "scores", shard_size=4, on_shard_done=_stop_after(2))
    assert _shard_files(out) == ["scores-00000.errors.parquet", "scores-00000.parquet",
                                 "scores-00001.errors.parquet", "scores-00001.parquet"]
    kept = {f: (out / "shards" / f).stat().st_mtime_ns for f in _shard_files(out)}
    with pytest.raises(_Stop):
        _ray(tiny_coll, out, "tiny_test", "scores", shard_size=4, on_shard_done=_stop_after(1))
    ray_shards = [f for f in _shard_files(out) if f not in kept]
    assert len(ray_shards) == 2  # one more shard (results + errors), numbered after the local ones
    assert all(int(f.split("-")[1][:5]) >= 2 for f in ray_shards)
    assert {f: (out / "shards" / f).stat().st_mtime_ns for f in kept} == kept  # nothing redone
    final = _local(tiny_coll, out, "tiny_test", "scores", shard_size=4)
    # sorted paths put the 3 unreadable files in shard 0; failed images are retried on resume
    assert final.n_resumed >= 5 + 1 and final.n_resumed + final.n_processed == 23
    from artmem.batch.results import read_errors, read_scores

    _assert_same_tables(read_scores(tmp_path / "ref"), read_scores(out), "scores", atol=1e-6)
    pd.testing.assert_frame_equal(read_errors(tmp_path / "ref"), read_errors(out))
    assert len(ref.errors) == 3


@pytest.mark.ray
def test_ray_finishes_a_local_job(ray_session, tiny_coll, tmp_path):
    """Ray picks up exactly the shards a killed local run did not finish."""
    ref = tmp_path / "ref"
    _local(tiny_coll, ref, "tiny_test", "features", shard_size=8)
    out = tmp_path / "job"
    with pytest.raises(_Stop):
        _local(tiny_coll, out, "tiny_test", "features", shard_size=8, on_shard_done=_stop_after(1))
    res = _ray(tiny_coll, out, "tiny_test", "features", shard_size=8)
    assert res.n_resumed == 5 and res.n_processed == 18  # shard 0: 5 results + 3 errors (retried)
    from artmem.batch.results import read_errors, read_features

    fa, fb = read_features(ref), read_features(out)
    assert fa.paths == fb.paths
    np.testing.assert_allclose(fa.vectors, fb.vectors, atol=1e-5, rtol=0)
    pd.testing.assert_frame_equal(read_errors(ref), read_errors(out))
    # A second run only retries the 3 unreadable files, and reports them again.
    again = _ray(tiny_coll, out, "tiny_test", "features", shard_size=8)
    assert again.n_processed == 3 and again.n_resumed == 20 and len(again.errors) == 3
    assert read_features(out).paths == fa.paths


@pytest.mark.ray
def test_cli_engine_ray(ray_session, tiny_coll, tmp_path, capsys):
    """`artmem score FOLDER --engine ray` == `--engine local`: same files listed, rows and errors."""
    from artmem.batch.results import read_errors, read_scores
    from artmem.cli import main

    base = ["score", str(tiny_coll.root), "--model", "tiny_test", "--device", "cpu", "--no-progress",
            "--shard-size", "8"]
    assert main(base + ["-o", str(tmp_path / "local"), "--workers", "0"]) == 0
    local_out = capsys.readouterr().out.split()
    assert main(base + ["-o", str(tmp_path / "ray"), "--engine", "ray", "--actors", "1",
                        "--cpus-per-actor", "0.5"]) == 0
    ray_out = capsys.readouterr().out.split()
    assert [Path(p).name for p in ray_out] == [Path(p).name for p in local_out]
    assert (tmp_path / "ray" / "scores.parquet").exists()
    _assert_same_tables(read_scores(tmp_path / "local"), read_scores(tmp_path / "ray"), "scores", 1e-6)
    errs = read_errors(tmp_path / "ray")
    assert sorted(errs["path"]) == ["bad/empty.jpg", "bad/notes.png"]  # folder import: no missing file
    pd.testing.assert_frame_equal(read_errors(tmp_path / "local"), errs)


@pytest.mark.ray
def test_measures_job_on_ray_same_as_local(ray_session, tiny_coll, tmp_path):
    """Any processor runs on Ray unchanged: the image-measures job gives the local engine's table."""
    analysis_jobs = pytest.importorskip("artmem.analysis.jobs")
    coll = tiny_coll.subset(list(range(6)) + [20, 21])  # 6 images + 2 unreadable files
    t_local, e_local, _ = analysis_jobs.run_measures(coll, tmp_path / "local", engine="local",
                                                     num_workers=0, shard_size=4, progress=False)
    t_ray, e_ray, written = analysis_jobs.run_measures(coll, tmp_path / "ray", engine="ray", actors=1,
                                                       shard_size=4, progress=False)
    assert len(t_ray) == 6 and len(e_ray) == 2
    assert t_ray["path"].tolist() == t_local["path"].tolist()
    assert list(t_ray.columns) == list(t_local.columns)
    num = [c for c in t_local.columns if pd.api.types.is_numeric_dtype(t_local[c])]
    assert num
    np.testing.assert_allclose(t_ray[num].to_numpy(float), t_local[num].to_numpy(float), atol=1e-5, rtol=1e-5)
    pd.testing.assert_frame_equal(e_local.reset_index(drop=True), e_ray.reset_index(drop=True))
    assert _shard_files(tmp_path / "local") == _shard_files(tmp_path / "ray")


@pytest.mark.ray
def test_scale_simulation_workers_write_driver_counts(ray_session, tmp_path, monkeypatch):
    """3,000 rows (links to 40 real JPEGs), shards of 500: every image exactly once, in shard path
    order, and the driver only ever receives counts, never a result row."""
    import pyarrow.parquet as pq
    import ray.data

    from artmem.batch.engines.ray_parts import parts_root, write_part
    from artmem.batch.scale_sim import build_scale_collection

    n = 3000
    coll = build_scale_collection(tmp_path / "coll", n, distinct=40)
    out = tmp_path / "out"
    first = sorted(coll.paths)[0]
    # a killed earlier run left a part for shard 0 (a number this run reuses) with a bogus score
    write_part(parts_root(out, "scores") / "oldrun", "scores", 0, [first],
               pd.DataFrame({"path": [first], "score": np.float32([99.0])}), [])
    received: list[dict] = []
    iter_batches = ray.data.Dataset.iter_batches

    def spy(self, *args, **kwargs):  # every batch that reaches the driver
        for batch in iter_batches(self, *args, **kwargs):
            received.append({k: len(v) for k, v in batch.items()})
            yield batch

    monkeypatch.setattr(ray.data.Dataset, "iter_batches", spy)
    done = []
    res = _ray(coll, out, "tiny_test", "scores", shard_size=500, batch_size=64, on_shard_done=done.append)
    assert received and set().union(*received) == {"shard", "n", "seconds", "worker", "backend"}
    assert sum(b["n"] for b in received) <= n // 64 + 2 * 6  # one row per (batch, shard), not per image
    assert sorted(r.shard_id for r in done) == list(range(6)) and sum(r.n_ok for r in done) == n
    assert not parts_root(out, "scores").exists()  # stale and own parts are gone

    seen: list[str] = []
    for sid in range(6):
        shard = pq.read_table(out / "shards" / f"scores-{sid:05d}.parquet")
        assert shard.num_rows == 500 and pq.read_table(out / "shards" / f"scores-{sid:05d}.errors.parquet").num_rows == 0
        seen += shard.column("path").to_pylist()
    assert seen == sorted(coll.paths) and len(set(seen)) == n  # exactly once, in path order
    # the same image behind many links gets the same score as the local engine gives it
    local = _local(coll.subset(list(range(40))), tmp_path / "local", "tiny_test", "scores")
    by_image = {Path(coll.abs_path(p)).resolve(): s for p, s in zip(local.table["path"], local.table["score"], strict=True)}
    want = [by_image[Path(coll.abs_path(p)).resolve()] for p in res.table["path"]]
    np.testing.assert_allclose(res.table["score"].to_numpy(), want, atol=1e-6, rtol=0)
