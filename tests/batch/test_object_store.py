"""Batch jobs writing to an object store: a real S3 API (a moto server started here, reached by
s3fs over HTTP), not a mock of fsspec.

The server runs as a subprocess (`moto_server -p PORT`); artmem reaches it through the standard
AWS variables (AWS_ENDPOINT_URL, credentials), as a user pointing at MinIO or Ceph would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("s3fs", reason="s3fs is not installed (pip install 'artmem[dev]')")

from artmem.batch import storage  # noqa: E402
from artmem.batch.api import extract, run_job, score  # noqa: E402
from artmem.batch.dataset import open_dataset  # noqa: E402
from artmem.batch.results import iter_feature_batches, read_errors, read_features, read_scores  # noqa: E402
from artmem.errors import ArtmemError  # noqa: E402
from browser_support import free_port  # noqa: E402

BUCKET = "artmem-test"


def _moto_server() -> str:
    exe = Path(sys.executable).with_name("moto_server")
    if not exe.exists():
        found = shutil.which("moto_server")
        if found is None:
            pytest.skip("moto_server not found (pip install 'moto[server]')")
        exe = Path(found)
    return str(exe)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on a free port, the AWS variables pointing at it, and a fresh bucket."""
    import s3fs

    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([_moto_server(), "-H", "127.0.0.1", "-p", str(port)], stdout=fh, stderr=fh)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"moto_server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    s3fs.S3FileSystem.clear_instance_cache()
    fs, _ = storage.filesystem(f"s3://{BUCKET}")
    fs.mkdir(BUCKET)
    try:
        yield fs
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        s3fs.S3FileSystem.clear_instance_cache()


def _keys(fs, prefix: str) -> list[str]:
    return sorted(k.split(f"{prefix}/", 1)[1] for k in fs.find(f"{BUCKET}/{prefix}"))


JOB = {"shard_size": 16, "num_workers": 0, "progress": False, "batch_size": 8}


def test_score_to_s3_resumes_and_reads_back_like_a_local_folder(s3, synthetic_collection, tmp_path):
    local = score(synthetic_collection, "tiny_test", tmp_path / "local", **JOB)
    n = len(local)
    assert n == len(synthetic_collection.paths) == 48

    url = f"s3://{BUCKET}/scores"
    # a run killed after its first shard (the callback stands in for Ctrl-C)
    def stop(res):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(synthetic_collection, _processor(synthetic_collection, "scores"), url, merge=False,
                on_shard_done=stop, **JOB)
    assert _keys(s3, "scores/shards") == ["scores-00000.errors.parquet", "scores-00000.parquet"]
    assert ".artmem.lock" not in _keys(s3, "scores")

    written = []
    resumed = run_job(synthetic_collection, _processor(synthetic_collection, "scores"), url, merge=False,
                      on_shard_done=written.append, **JOB)
    assert [r.shard_id for r in written] == [1, 2] and (resumed.n_resumed, resumed.n_processed) == (16, 32)
    keys = _keys(s3, "scores")
    assert "scores.dataset.json" in keys and "scores.parquet" not in keys and "errors.parquet" in keys
    assert not [k for k in keys if k.endswith(".tmp") or ".artmem.lock" in k]  # nothing partial, no lock
    manifest = json.loads(storage.read_text(f"{url}/scores.dataset.json"))
    assert manifest["rows"] == n and [s["file"] for s in manifest["shards"]] == [
        f"scores-0000{i}.parquet" for i in range(3)]

    got = read_scores(url)
    pd.testing.assert_frame_equal(got[["path", "score"]], local[["path", "score"]], check_exact=False, rtol=1e-6)
    assert open_dataset(url, "scores").count_rows() == n
    assert read_errors(url).empty

    # one shard lost: only its images are computed again, under the next shard number
    before = {k: s3.info(f"{BUCKET}/scores/shards/{k}")["ETag"] for k in ("scores-00000.parquet", "scores-00002.parquet")}
    storage.remove(f"{url}/shards/scores-00001.parquet")
    written.clear()
    again = run_job(synthetic_collection, _processor(synthetic_collection, "scores"), url, merge=False,
                    on_shard_done=written.append, **JOB)
    assert [(r.shard_id, r.n_ok) for r in written] == [(3, 16)] and again.n_processed == 16
    assert {k: s3.info(f"{BUCKET}/scores/shards/{k}")["ETag"] for k in before} == before
    pd.testing.assert_frame_equal(read_scores(url)[["path", "score"]], local[["path", "score"]],
                                  check_exact=False, rtol=1e-6)

    # --merge: one scores.parquet object, the manifest gone
    merged = score(synthetic_collection, "tiny_test", url, merge=True, **JOB)
    keys = _keys(s3, "scores")
    assert "scores.parquet" in keys and "scores.dataset.json" not in keys and len(merged) == n
    pd.testing.assert_frame_equal(read_scores(f"{url}/scores.parquet")[["path", "score"]],
                                  local[["path", "score"]], check_exact=False, rtol=1e-6)


def _processor(coll, kind, **kw):
    from artmem.batch.api import backend_for, model_processor

    return model_processor(coll, "tiny_test", kind, backend=backend_for("auto", len(coll)), **kw)


def test_extract_to_s3_as_a_shard_dataset(s3, synthetic_collection, tmp_path):
    local = extract(synthetic_collection, "tiny_test", "conv2", tmp_path / "local", **JOB)
    url = f"file://{tmp_path}/viafile"  # file:// is a plain folder
    extract(synthetic_collection, "tiny_test", "conv2", url, merge=False, **JOB)
    assert (tmp_path / "viafile" / "features.dataset.json").exists()
    url = f"s3://{BUCKET}/features"
    df = extract(synthetic_collection, "tiny_test", "conv2", url, merge=False, **JOB)
    assert "features.parquet" not in _keys(s3, "features")
    want = np.stack(local["embedding"].to_list())
    np.testing.assert_allclose(np.stack(df["embedding"].to_list()), want, rtol=1e-5, atol=1e-6)
    fs = read_features(url)
    assert fs.paths == local["path"].tolist() and fs.meta["layer"] == "conv2" and fs.meta["dim"] == 16
    assert fs.meta["count"] == len(local)
    np.testing.assert_allclose(fs.vectors, want, rtol=1e-5, atol=1e-6)
    streamed = list(iter_feature_batches(url, batch_rows=10))
    paths = [p for chunk, _ in streamed for p in chunk]
    assert sorted(paths) == fs.paths and all(len(v) <= 10 for _, v in streamed)


def test_cli_extract_to_s3(s3, synthetic_collection, tmp_path, capsys):
    """`artmem extract COLL -o s3://... --no-merge` prints the objects it wrote; --merge then
    turns the same job into one features.parquet without recomputing anything."""
    from artmem.cli import main

    url = f"s3://{BUCKET}/cli"
    base = ["extract", str(synthetic_collection.root), "--model", "tiny_test", "--layer", "conv2", "--device", "cpu",
            "--no-progress", "--shard-size", "16", "--workers", "0", "-o", url]
    assert main(base + ["--no-merge"]) == 0
    printed = capsys.readouterr()
    assert printed.out.split() == [f"{url}/features.dataset.json", f"{url}/features.json", f"{url}/errors.parquet"]
    assert "48 of 48 image(s) done" in printed.err
    assert main(base + ["--merge"]) == 0
    printed = capsys.readouterr()
    assert f"{url}/features.parquet" in printed.out.split() and "(48 from earlier runs)" in printed.err
    assert "features.dataset.json" not in _keys(s3, "cli")
    assert read_features(url).meta["count"] == 48


def test_lock_on_an_object_store(s3, monkeypatch):
    from artmem.batch import lock

    url = f"s3://{BUCKET}/locked"
    with lock.output_lock(url, "scores") as held:
        info = json.loads(storage.read_text(held))
        assert info["job"] == "scores" and info["pid"] == os.getpid()
        with pytest.raises(ArtmemError, match="another artmem job .scores, pid"):
            with lock.output_lock(url, "features"):
                pass
    assert not storage.exists(f"{url}/.artmem.lock")
    # a lock whose holder stopped beating (a killed driver on another machine) is taken over
    stale = {"pid": 1, "host": "gone", "job": "features", "token": "x", "heartbeat": time.time() - 3600}
    storage.write_text(f"{url}/.artmem.lock", json.dumps(stale))
    with lock.output_lock(url, "scores") as held:
        assert json.loads(storage.read_text(held))["job"] == "scores"
    # the heartbeat renews the lock object while the job runs
    monkeypatch.setattr(lock, "HEARTBEAT_S", 0.2)
    with lock.output_lock(url, "scores") as held:
        first = json.loads(storage.read_text(held))["heartbeat"]
        time.sleep(1.0)
        assert json.loads(storage.read_text(held))["heartbeat"] > first


def test_ray_plan_with_out_on_s3_equals_prepare_job(s3, synthetic_collection):
    """The Ray engine's out-of-core plan with OUT on S3: finished shards there are subtracted
    (their path columns streamed into DuckDB) and the pending lists are written there, shard by
    shard, exactly as `prepare_job` cuts them in memory."""
    pytest.importorskip("duckdb")
    from artmem.batch.job import JobSpec, open_job, prepare_job, write_shard_files
    from artmem.batch.plan import decode_abs_path, plan_pending

    coll = synthetic_collection
    url = f"s3://{BUCKET}/plan"
    spec = JobSpec(coll, _processor(coll, "scores"), url, shard_size=7, device="cpu")
    wanted = spec.all_paths()
    write_shard_files(url, "scores", 0, pd.DataFrame({"path": wanted[:5], "score": [0.5] * 5}),
                      [(wanted[5], "broken")])  # a failed image is tried again
    write_shard_files(url, "scores", 2, pd.DataFrame({"path": wanted[20:23], "score": [0.1] * 3}), [])
    plan = plan_pending(coll, open_job(spec), spec.shard_size, f"{url}/pending", decode_block=4)
    got = []
    for sid, n, groups in zip(plan.shards.ids, plan.shards.rows, plan.shards.groups, strict=True):
        f = storage.parquet_file(plan.shards.file(int(sid)))
        t = f.read()
        assert t.num_rows == n and f.num_row_groups == groups
        got.append((int(sid), t.column("path").to_pylist(),
                    [decode_abs_path(b) for b in t.column("abs_path").to_pylist()]))
    expected = [(s.id, list(s.paths), [coll.abs_path(p) for p in s.paths]) for s in prepare_job(spec)]
    assert got == expected and got[0][0] == 3
    assert plan.n_wanted == len(wanted) and plan.n_pending == len(wanted) - 8
    assert _keys(s3, "plan/pending") == [f"{sid:05d}.parquet" for sid, _, _ in expected]


def test_finalize_out_of_core_with_shards_on_s3(s3, tmp_path):
    """`finalize` of a shard dataset whose collection stays in its Parquet file, the shards on S3:
    their path and error columns are streamed into DuckDB (in the child process); the stale rows,
    errors and counts equal the pandas reference, as for a local folder
    (tests/batch/test_finalize_out_of_core.py)."""
    pytest.importorskip("duckdb")
    from artmem.batch.finalize import finalize
    from artmem.batch.job import JobSpec
    from artmem.batch.plan import CollectionFile
    from finalize_support import (
        ScoresStub,
        current_paths,
        read_manifest,
        reference,
        write_collection,
        write_finished_shards,
    )

    url = f"s3://{BUCKET}/finalize"
    write_finished_shards(url)
    ref = reference(url)
    coll = CollectionFile(write_collection(tmp_path / "coll", current_paths()))
    res = finalize(JobSpec(coll, ScoresStub(), url, shard_size=10, merge=False))
    assert not res.merged and res.n_total == ref["n_total"]
    for sid, want in ref["shards"].items():
        got = storage.read_parquet(f"{url}/shards/scores-{sid:05d}.parquet").to_pandas()
        pd.testing.assert_frame_equal(got, want)
    manifest = read_manifest(url)
    assert [(s["file"], s["rows"]) for s in manifest["shards"]] == [
        (f"scores-{sid:05d}.parquet", len(df)) for sid, df in ref["shards"].items()]
    assert res.n_rows == manifest["rows"]
    pd.testing.assert_frame_equal(res.errors, ref["errors"])
    pd.testing.assert_frame_equal(read_errors(url), ref["errors"])


@pytest.mark.ray
@pytest.mark.slow  # starts a local Ray instance
def test_ray_engine_writes_to_s3(s3, synthetic_collection, tmp_path):
    """Ray actors write their part files and the compaction tasks the shards straight to S3; the
    result equals the local engine's in a local folder, and no part file is left."""
    ray = pytest.importorskip("ray")
    from artmem.batch.engines.ray import init_ray
    from artmem.batch.engines.ray import run_job as ray_run_job
    from artmem.batch.job import JobSpec

    if ray.is_initialized():  # workers must start with the AWS variables set by the fixture
        ray.shutdown()
    init_ray(num_cpus=2, object_store_memory=256 * 1024**2)
    try:
        coll = synthetic_collection
        local = score(coll, "tiny_test", tmp_path / "local", **JOB)
        url = f"s3://{BUCKET}/ray"
        spec = JobSpec(coll, _processor(coll, "scores"), url, shard_size=16, device="cpu", merge=False)
        result = ray_run_job(spec, progress=False, batch_size=8)
        assert result.n_rows == len(local) and not result.merged
        assert not [k for k in _keys(s3, "ray") if ".parts-" in k or k.endswith(".tmp")]
        assert _keys(s3, "ray/shards") == sorted(
            f"scores-0000{i}{ext}" for i in range(3) for ext in (".parquet", ".errors.parquet"))
        pd.testing.assert_frame_equal(read_scores(url)[["path", "score"]], local[["path", "score"]],
                                      check_exact=False, rtol=1e-5)
    finally:
        ray.shutdown()


def test_store_refusals_are_one_line_errors(s3, synthetic_collection):
    """A missing bucket (or missing credentials, an access denied) is a user error naming the URL."""
    from artmem.cli import main

    with pytest.raises(ArtmemError, match=r"s3://no-such-bucket/out: no scores.parquet"):
        read_scores("s3://no-such-bucket/out")
    assert main(["score", str(synthetic_collection.root), "--model", "tiny_test", "--no-progress",
                 "-o", "s3://no-such-bucket/out"]) == 2
