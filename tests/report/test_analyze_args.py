"""`artmem analyze` checks every argument before any compute: a mistake fails in well under a
second, without loading a model and without leaving an output folder."""

from __future__ import annotations

import sys
import time

import pytest

from artmem.cli import main


@pytest.fixture
def no_models(monkeypatch):
    """Fail the test if anything builds a model or starts a batch job."""
    import artmem.batch.api
    import artmem.models.factory

    def forbidden(*args, **kwargs):
        raise AssertionError("compute started before the arguments were checked")

    monkeypatch.setattr(artmem.models.factory, "create_model", forbidden)
    monkeypatch.setattr(artmem.batch.api, "run_job", forbidden)


@pytest.mark.parametrize("extra, message", [
    (["--categories", "style,nope"], "--categories: the collection has no column 'nope'"),
    (["--tsne-subset", "style=no_such_style"], "--tsne-subset: no image has style in"),
    (["--tsne-subset", "nope=1"], "--tsne-subset: no column 'nope'"),
    (["--top", "0"], "--top 0: must be >= 1"),
    (["--perplexity", "-5"], "--perplexity -5.0: must be > 0"),
    (["--alpha", "1.5"], "--alpha 1.5: must be between 0 and 1"),
    (["--map-grids", "3,x"], "--map-grids '3,x': expected whole numbers"),
    (["--predictions", "no/such/run"], "--predictions no/such/run: no such file or folder"),
    (["--device", "gpu"], "--device gpu: not a device name"),
])
def test_bad_argument_fails_fast_before_compute(extra, message, synthetic_collection, tmp_path,
                                                capsys, no_models):
    out = tmp_path / "study"
    start = time.perf_counter()
    assert main(["analyze", synthetic_collection.root, "-o", str(out), *extra]) == 2
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert elapsed < 1.0, f"took {elapsed:.2f} s"
    assert not out.exists()


def test_bad_categories_do_not_even_import_torch(synthetic_collection, tmp_path):
    import subprocess

    code = ("import sys; from artmem.cli import main; "
            f"rc = main(['analyze', {synthetic_collection.root!r}, '-o', {str(tmp_path / 'o')!r}, "
            "'--categories', 'nope']); print(rc, 'torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stdout.split() == ["2", "False"]


def test_bad_model_or_layer_fails_before_compute(synthetic_collection, tmp_path, capsys, no_models):
    base = ["analyze", synthetic_collection.root, "-o", str(tmp_path / "s")]
    assert main(base + ["--model", "no_such_model"]) == 2
    assert main(base + ["--model", "tiny_test", "--layer", "fc9"]) == 2
    assert main(base + ["--model", "magenta_style"]) == 2
    err = capsys.readouterr().err
    assert "no_such_model" in err and "fc9" in err and "not a memorability score" in err
    assert not (tmp_path / "s").exists()


def test_report_function_writes_the_report(synthetic_collection, tmp_path):
    import artmem

    scores = synthetic_collection.table[["path"]].assign(score=synthetic_collection.table["true_memorability"])
    written = artmem.report(synthetic_collection, tmp_path / "r", scores=scores, categories=["style"])
    assert written[0] == tmp_path / "r" / "report.html" and written[0].stat().st_size > 1000
    with pytest.raises(artmem.ArtmemError, match="unexpected keyword argument 'colour'"):
        artmem.report(synthetic_collection, tmp_path / "r2", scores=scores, colour="red")
