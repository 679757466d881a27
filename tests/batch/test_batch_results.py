"""Batch-job output tables: features/scores/errors round trips and the shard fallback."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from artmem.batch.results import (
    FeatureSet,
    atomic_write_parquet,
    read_errors,
    read_features,
    read_scores,
    write_errors,
    write_features,
    write_scores,
)
from artmem.errors import ArtmemError


def test_features_round_trip_parquet_and_csv(tmp_path):
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(5, 7)).astype(np.float32)
    paths = [f"a/{i}.jpg" for i in range(5)]
    written = write_features(tmp_path, paths, vecs, {"model": "m", "layer": "fc7"}, csv=True)
    assert [p.name for p in written] == ["features.parquet", "features.json", "features.csv"]
    for src in (tmp_path, tmp_path / "features.parquet"):
        fs = read_features(src)
        assert fs.paths == paths and fs.vectors.dtype == np.float32
        np.testing.assert_array_equal(fs.vectors, vecs)
        assert fs.meta == {"model": "m", "layer": "fc7", "dim": 7, "count": 5}
    fs_csv = read_features(tmp_path / "features.csv")
    np.testing.assert_allclose(fs_csv.vectors, vecs, rtol=1e-6)
    # pandas users see one float32 vector per row
    df = pd.read_parquet(tmp_path / "features.parquet")
    assert list(df.columns) == ["path", "embedding"] and len(df.embedding[0]) == 7
    norms = np.linalg.norm(fs.normalized(), axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-6)
    sub = fs.select(["a/3.jpg", "a/1.jpg"])
    np.testing.assert_array_equal(sub.vectors, vecs[[3, 1]])


def test_scores_and_errors_round_trip(tmp_path):
    df = pd.DataFrame({"path": ["x.jpg", "y.jpg"], "score": [0.25, 0.75]})
    write_scores(tmp_path, df, csv=True)
    for src in (tmp_path, tmp_path / "scores.parquet", tmp_path / "scores.csv"):
        got = read_scores(src)
        assert got["path"].tolist() == ["x.jpg", "y.jpg"] and got["score"].tolist() == [0.25, 0.75]
    assert read_errors(tmp_path).empty
    write_errors(tmp_path, pd.DataFrame({"path": ["z.jpg"], "reason": ["truncated"]}))
    assert read_errors(tmp_path).to_dict("records") == [{"path": "z.jpg", "reason": "truncated"}]


def test_read_falls_back_to_finished_shards(tmp_path):
    shards = tmp_path / "shards"
    atomic_write_parquet(pd.DataFrame({"path": ["a", "b"], "score": [0.1, 0.2]}), shards / "scores-00000.parquet")
    atomic_write_parquet(pd.DataFrame({"path": ["c"], "score": [0.3]}), shards / "scores-00001.parquet")
    assert read_scores(tmp_path)["path"].tolist() == ["a", "b", "c"]
    emb = pd.DataFrame({"path": ["a"], "embedding": [np.ones(3, np.float32)]})
    atomic_write_parquet(emb, shards / "features-00000.parquet")
    assert read_features(tmp_path).vectors.shape == (1, 3)


def test_clear_errors_for_missing_or_bad_tables(tmp_path):
    with pytest.raises(ArtmemError, match="no scores.parquet"):
        read_scores(tmp_path)
    with pytest.raises(ArtmemError, match="no such file"):
        read_features(tmp_path / "nope.parquet")
    pd.DataFrame({"path": ["a"], "value": [1]}).to_parquet(tmp_path / "scores.parquet")
    with pytest.raises(ArtmemError, match="needs columns path, score"):
        read_scores(tmp_path)
    with pytest.raises(ValueError):
        FeatureSet(["a", "b"], np.zeros((3, 2)))


def test_interrupted_extract_keeps_its_model_and_layer(synthetic_collection, tmp_path):
    """An extract killed after its first shard: the reader takes model/layer from job.json (written
    under `processor`), so training on those features still checks they are of the right model."""
    from artmem.batch.engines.local import run_local
    from artmem.batch.job import JobSpec
    from artmem.batch.processors import ModelProcessor
    from artmem.memorability.features import features_from_store

    class Killed(Exception):
        pass

    def kill(result):
        raise Killed(result.shard_id)

    out = tmp_path / "feats"
    spec = JobSpec(synthetic_collection, ModelProcessor("tiny_test", "features", layer="conv3"), out,
                   shard_size=10, device="cpu")
    with pytest.raises(Killed):
        run_local(spec, batch_size=5, num_workers=0, progress=False, on_shard_done=kill)
    assert not (out / "features.json").exists()
    fs = read_features(out)
    assert (fs.meta["model"], fs.meta["layer"], len(fs)) == ("tiny_test", "conv3", 10)
    X = features_from_store(out, synthetic_collection, "tiny_test", "conv3")
    assert np.isfinite(X).all(axis=1).sum() == 10
    with pytest.raises(ArtmemError, match="features of tiny_test/conv3"):
        features_from_store(out, synthetic_collection, "tiny_test", "fc")
    from artmem.batch.results import read_job_record

    record = read_job_record(out)
    assert (record.kind, record.model, record.layer) == ("features", "tiny_test", "conv3")


def test_job_record_that_is_not_an_object(tmp_path):
    from artmem.batch.results import read_job_record

    assert read_job_record(tmp_path) is None
    (tmp_path / "job.json").write_text("[1, 2]")
    with pytest.raises(ArtmemError, match="job.json: not a job record"):
        read_job_record(tmp_path)


def test_open_dataset_reads_shards_lazily_as_one_table(tmp_path):
    """Finished shards (one of them all errors, so without an embedding column) read as one lazy
    dataset: same paths and vectors as `read_features`, streamed in small chunks."""
    from artmem.batch.job import write_shard_files
    from artmem.batch.results import iter_feature_batches, open_dataset, read_features

    rng = np.random.default_rng(0)
    vectors = rng.random((7, 6), dtype=np.float32)
    paths = [f"img/{i}.jpg" for i in range(7)]
    for sid, rows in enumerate([range(0, 4), range(4, 4), range(4, 7)]):
        frame = pd.DataFrame({"path": [paths[i] for i in rows], "embedding": [vectors[i] for i in rows]})
        if not len(frame):
            frame = pd.DataFrame({"path": pd.Series([], dtype="str")})  # what an all-errors shard holds
        write_shard_files(tmp_path, "features", sid, frame, [("bad.jpg", "empty file")] if not rows else [])
    dataset = open_dataset(tmp_path, "features")
    assert dataset.count_rows() == 7
    chunks = list(iter_feature_batches(tmp_path, batch_rows=2))
    assert max(len(p) for p, _ in chunks) <= 2
    got_paths = [p for ps, _ in chunks for p in ps]
    got = np.concatenate([v for _, v in chunks])
    ref = read_features(tmp_path)
    assert got_paths == ref.paths == paths
    np.testing.assert_array_equal(got, ref.vectors)
    np.testing.assert_array_equal(got, vectors)


def test_open_dataset_prefers_the_merged_table_and_refuses_csv(tmp_path):
    from artmem.batch.results import open_dataset, read_scores, write_scores

    scores = pd.DataFrame({"path": ["a.jpg", "b.jpg", "c.jpg"], "score": [0.25, 0.5, 0.75]})
    write_scores(tmp_path / "job", scores, csv=True)
    table = open_dataset(tmp_path / "job", "scores").to_table().to_pandas()
    pd.testing.assert_frame_equal(table, read_scores(tmp_path / "job"))
    with pytest.raises(ArtmemError, match="needs Parquet"):
        open_dataset(tmp_path / "job" / "scores.csv", "scores")


def _score_job(coll, out, **kw):
    from artmem.batch.api import backend_for, model_processor, run_job

    proc = model_processor(coll, "tiny_test", "scores", backend=backend_for("auto", len(coll)))
    return run_job(coll, proc, out, shard_size=16, num_workers=0, progress=False, batch_size=8, **kw)


def test_shard_dataset_layout_reads_like_the_merged_file(synthetic_collection, tmp_path):
    """--no-merge leaves the shards and a manifest; every reader gives the merged run's table."""
    from artmem.batch.results import has_results, open_dataset, read_scores
    from artmem.report.analyze import _covers
    from artmem.report.data import load_report_data

    merged = _score_job(synthetic_collection, tmp_path / "merged", merge=True)
    dataset = _score_job(synthetic_collection, tmp_path / "dataset", merge=False)
    assert merged.merged and not dataset.merged and dataset.n_rows == merged.n_rows == 48
    assert (tmp_path / "merged" / "scores.parquet").exists()
    assert not (tmp_path / "dataset" / "scores.parquet").exists()
    assert (tmp_path / "dataset" / "scores.dataset.json").exists()
    pd.testing.assert_frame_equal(dataset.table, merged.table)  # loaded on demand, sorted by path
    ref = read_scores(tmp_path / "merged")
    pd.testing.assert_frame_equal(read_scores(tmp_path / "dataset"), ref)
    assert open_dataset(tmp_path / "dataset", "scores").count_rows() == 48
    assert has_results(tmp_path / "dataset", "scores") and not has_results(tmp_path / "dataset", "features")
    assert _covers(tmp_path / "dataset", "scores", set(synthetic_collection.paths))
    report = load_report_data(synthetic_collection, scores=tmp_path / "dataset")
    assert report.inputs["model"] == "tiny_test"
    # the merged run replaces a dataset in the same folder (and the other way round)
    _score_job(synthetic_collection, tmp_path / "dataset", merge=True)
    assert not (tmp_path / "dataset" / "scores.dataset.json").exists()
    pd.testing.assert_frame_equal(read_scores(tmp_path / "dataset"), ref)


def test_default_layout_follows_the_size_limits(synthetic_collection, tmp_path, monkeypatch):
    from artmem.batch import dataset

    assert dataset.should_merge(1_000_000, 1 << 30) and not dataset.should_merge(1_000_001, 10)
    assert not dataset.should_merge(10, (1 << 30) + 1)
    assert _score_job(synthetic_collection, tmp_path / "small").merged
    monkeypatch.setattr(dataset, "MERGE_MAX_ROWS", 47)
    assert not _score_job(synthetic_collection, tmp_path / "large").merged
    assert _score_job(synthetic_collection, tmp_path / "csv", csv=True).merged  # CSV copies need a merge
    with pytest.raises(ArtmemError, match="--csv .* needs --merge"):
        _score_job(synthetic_collection, tmp_path / "both", csv=True, merge=False)


def test_shard_dataset_drops_images_that_left_the_collection(synthetic_collection, tmp_path):
    """A resumed job over a smaller collection: the dataset holds exactly the current images, as
    the merged file would."""
    from artmem.batch.results import read_scores

    _score_job(synthetic_collection, tmp_path / "out", merge=False)
    smaller = synthetic_collection.subset(np.arange(len(synthetic_collection)) % 3 != 0)
    result = _score_job(smaller, tmp_path / "out", merge=False)
    assert result.n_processed == 0 and result.n_rows == len(smaller)
    assert read_scores(tmp_path / "out")["path"].tolist() == sorted(map(str, smaller.paths))
