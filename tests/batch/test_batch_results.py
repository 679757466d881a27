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
