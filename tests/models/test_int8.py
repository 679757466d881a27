"""int8 fast path on `tiny_test`: exported, calibrated, cached, resumed; precision recorded and
checked on resume; fidelity statistics against independent references (scipy, scikit-learn)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from artmem.batch.api import extract, model_processor, score
from artmem.batch.engines.local import run_local
from artmem.batch.job import JobSpec, finished_shards
from artmem.batch.results import read_features, read_scores
from artmem.cli import main
from artmem.errors import ArtmemError
from artmem.models import quantize
from artmem.models.onnx_export import onnx_cache_dir


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARTMEM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _int8_files(cache):
    return sorted((cache / "onnx").glob("*.int8-*.onnx"))


def test_int8_job_exports_calibrates_caches_and_records(synthetic_collection, tmp_path, cache, monkeypatch):
    fp32 = score(synthetic_collection, "tiny_test", tmp_path / "fp32", num_workers=0, progress=False)
    int8 = score(synthetic_collection, "tiny_test", tmp_path / "int8", precision="int8", num_workers=0,
                 progress=False)
    assert onnx_cache_dir() == cache / "onnx"
    files = _int8_files(cache)
    assert len(files) == 1  # one int8 model beside its fp32 export
    fp32_export = files[0].name.split(".int8-")[0] + ".onnx"
    assert (cache / "onnx" / fp32_export).exists()
    record = json.loads(files[0].with_suffix(".json").read_text())
    assert record["calibration_source"].startswith("collection") and len(record["calibration_images"]) == 24  # 48 images: half calibrate, half check
    job = json.loads((tmp_path / "int8" / "job.json").read_text())
    assert job["precision"] == "int8" and job["processor"]["precision"] == "int8"
    assert json.loads((tmp_path / "fp32" / "job.json").read_text())["precision"] == "fp32"
    # the int8 file is a quantized graph (QDQ), and its scores approximate fp32 ones (tiny_test's
    # random weights give scores that differ by ~1e-4 between images, below int8 resolution)
    import onnx

    ops = {n.op_type for n in onnx.load(str(files[0])).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert int8["path"].tolist() == fp32["path"].tolist()
    assert np.abs(int8["score"].to_numpy() - fp32["score"].to_numpy()).max() < 0.01

    # cached: a second job quantizes nothing
    def fail(*a, **k):
        raise AssertionError("quantized again")

    monkeypatch.setattr(quantize, "quantize_onnx", fail)
    again = score(synthetic_collection, "tiny_test", tmp_path / "int8b", precision="int8", num_workers=0,
                  progress=False)
    pd.testing.assert_frame_equal(again, int8)


def test_calibration_key_follows_image_content(tmp_path):
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    k1 = quantize.calibration_key([str(a), str(b)])
    assert quantize.calibration_key([str(b), str(a)]) == k1  # order does not matter
    b.write_bytes(b"changed")
    assert quantize.calibration_key([str(a), str(b)]) != k1
    calib, check = quantize.split_calibration([f"/x/{i}.jpg" for i in range(100)])
    assert len(calib) == 32 and len(check) == 32 and not set(calib) & set(check)
    assert quantize.split_calibration([f"/x/{i}.jpg" for i in range(100)]) == (calib, check)  # seeded


def test_int8_resume_and_precision_mismatch_refused(synthetic_collection, tmp_path, cache):
    full = score(synthetic_collection, "tiny_test", tmp_path / "full", precision="int8", num_workers=0,
                 progress=False)

    class Killed(Exception):
        pass

    def kill(result):
        raise Killed(result.shard_id)

    out = tmp_path / "job"
    proc = model_processor(synthetic_collection, "tiny_test", "scores", precision="int8")
    with pytest.raises(Killed):
        run_local(JobSpec(synthetic_collection, proc, out, shard_size=10, device="cpu"), batch_size=4,
                  num_workers=0, progress=False, on_shard_done=kill)
    assert list(finished_shards(out, "scores")) == [0]
    # resuming in fp32 would mix two precisions in one table: refused with a one-line error
    fp32 = model_processor(synthetic_collection, "tiny_test", "scores", precision="fp32")
    with pytest.raises(ArtmemError, match=r"holds int8 results; this run computes fp32") as err:
        run_local(JobSpec(synthetic_collection, fp32, out, shard_size=10, device="cpu"), progress=False)
    assert "\n" not in str(err.value)
    # the same precision resumes and equals an uninterrupted int8 job
    proc2 = model_processor(synthetic_collection, "tiny_test", "scores", precision="int8")
    result = run_local(JobSpec(synthetic_collection, proc2, out, shard_size=10, device="cpu"), num_workers=0,
                       progress=False)
    assert result.n_resumed == 10 and result.n_processed == len(full) - 10
    pd.testing.assert_frame_equal(read_scores(out)[["path", "score"]], full, atol=1e-7)


def test_cli_precision_flag_and_report_provenance(synthetic_collection, tmp_path, cache, capsys):
    from artmem.report.data import load_report_data

    out = tmp_path / "s"
    assert main(["score", str(synthetic_collection.root), "--model", "tiny_test", "-o", str(out),
                 "--precision", "int8", "--workers", "0", "--no-progress"]) == 0
    assert "[onnx, int8]" in capsys.readouterr().err
    data = load_report_data(synthetic_collection, scores=out)
    assert data.inputs["precision"] == "int8"
    # features carry their precision too
    assert main(["extract", str(synthetic_collection.root), "--model", "tiny_test", "-o", str(tmp_path / "f"),
                 "--precision", "int8", "--workers", "0", "--no-progress"]) == 0
    fs = read_features(tmp_path / "f")
    assert fs.meta["precision"] == "int8"
    ref = extract(synthetic_collection, "tiny_test", num_workers=0, progress=False)
    assert fs.paths == ref["path"].tolist()
    fid = quantize.feature_fidelity(np.stack(ref["embedding"]), fs.vectors)
    assert fid["mean_cosine"] > 0.98  # int8 vectors point where fp32 ones do
    # int8 on a GPU or with the torch backend is refused up front
    with pytest.raises(ArtmemError, match="ONNX Runtime"):
        model_processor(synthetic_collection, "tiny_test", "scores", precision="int8", backend="torch")


def test_auto_measures_fidelity_once_and_decides(synthetic_collection, tmp_path, cache):
    proc = model_processor(synthetic_collection, "tiny_test", "features", precision="auto")
    used = proc.resolved_precision("cpu")
    record = json.loads(_int8_files(cache)[0].with_suffix(".json").read_text())
    fid = record["fidelity"]["fc"]
    assert fid["kind"] == "features" and fid["n"] == 24  # the 24 images not used for calibration
    assert used == ("int8" if quantize.fidelity_passes(record["fidelity"]) else "fp32")


def test_fidelity_statistics_match_references():
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics.pairwise import cosine_similarity
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(0)
    a = rng.normal(size=40)
    b = a + rng.normal(scale=0.1, size=40)
    f = quantize.score_fidelity(a, b)
    assert f["spearman"] == pytest.approx(spearmanr(a, b).statistic)
    assert f["pearson"] == pytest.approx(pearsonr(a, b).statistic)
    assert f["max_abs_diff"] == pytest.approx(np.abs(a - b).max())

    x = rng.normal(size=(30, 8))
    y = x + rng.normal(scale=0.3, size=x.shape)
    ff = quantize.feature_fidelity(x, y, k=5)
    assert ff["mean_cosine"] == pytest.approx(np.diag(cosine_similarity(x, y)).mean())

    def knn(v):
        nn = NearestNeighbors(n_neighbors=6, metric="cosine").fit(v)
        return nn.kneighbors(v, return_distance=False)[:, 1:]  # drop the point itself

    expected = np.mean([len(set(r) & set(s)) / 5 for r, s in zip(knn(x), knn(y), strict=True)])
    assert ff["top5_overlap"] == pytest.approx(expected)
    assert quantize.neighbour_overlap(x, x, k=5) == 1.0
    assert quantize.passes({"n": 10, "spearman": 0.995}) and not quantize.passes({"n": 10, "spearman": 0.98})


def test_check_precision_cli_prints_fidelity_on_held_out_images(synthetic_collection, cache, capsys):
    rc = main(["models", "check-precision", "tiny_test", "--collection", str(synthetic_collection.root),
               "--images", "20"])
    text = capsys.readouterr().out
    assert "int8 vs fp32 on 20 image(s) not used for calibration" in text
    assert "mean cosine" in text and "top-10 neighbour overlap" in text and "Spearman" in text
    # tiny_test's scores differ by ~1e-4 between images: int8 cannot rank them, and the check says so
    assert rc == 1 and "FAIL" in text


@pytest.mark.slow
def test_measures_symmetry_int8_close_to_fp32(synthetic_collection, tmp_path, cache):
    """The symmetry branch (ResMem's AlexNet-like filters, from the resmem package) in int8."""
    from artmem.analysis.jobs import run_measures
    from artmem.analysis.measures import SYMMETRY_COLUMNS, MeasureConfig

    config = MeasureConfig(edges=False, color=False)
    fp32, _, _ = run_measures(synthetic_collection, tmp_path / "m32", config, num_workers=0, progress=False)
    int8, _, _ = run_measures(synthetic_collection, tmp_path / "m8", config, num_workers=0, progress=False,
                              precision="int8")
    assert json.loads((tmp_path / "m8" / "job.json").read_text())["precision"] == "int8"
    for c in SYMMETRY_COLUMNS:
        a, b = fp32[c].to_numpy(), int8[c].to_numpy()
        assert np.abs(a - b).max() < 0.02, c
        assert np.corrcoef(a, b)[0, 1] > 0.95, c
    with pytest.raises(ArtmemError, match="holds int8 results"):
        run_measures(synthetic_collection, tmp_path / "m8", config, num_workers=0, progress=False,
                     shard_size=10)


def test_analyze_int8_records_precision_and_refuses_a_mixed_rerun(synthetic_collection, tmp_path, cache, capsys):
    out = tmp_path / "a"
    args = ["analyze", str(synthetic_collection.root), "-o", str(out), "--model", "tiny_test", "--no-maps",
            "--no-symmetry", "--device", "cpu", "--precision", "int8"]
    assert main(args) == 0
    for step in ("scores", "features"):
        assert json.loads((out / step / "job.json").read_text())["precision"] == "int8"
    html = (out / "report" / "report.html").read_text()
    assert "precision" in html and "int8" in html  # in the report's provenance table
    capsys.readouterr()
    assert main([*args[:-1], "fp32"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "holds int8 results; this run computes fp32" in err[0]  # one line
