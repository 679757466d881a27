"""The command line as a new user meets it: help on every option, pipes, devices, failed runs,
the models table and the deprecated split spelling."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from artmem.cli import build_parser, main

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _walk(parser: argparse.ArgumentParser, prefix: str = "artmem"):
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{prefix} {name}")


def _artmem(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC, "COLUMNS": "100"}
    return subprocess.run([sys.executable, "-m", "artmem.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120, **kwargs)


def test_every_option_and_argument_has_help():
    missing = []
    for command, parser in _walk(build_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{command} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_help_never_prints_a_default_twice_or_none():
    for command, parser in _walk(build_parser()):
        text = parser.format_help()
        assert "(default: None)" not in text, command
        assert ") (default:" not in text, command


def test_models_piped_into_head_closes_quietly():
    env = {**os.environ, "PYTHONPATH": SRC}
    shell = subprocess.run(f"'{sys.executable}' -m artmem.cli models | head -1", shell=True,
                           capture_output=True, text=True, env=env, timeout=120)
    assert shell.returncode == 0 and shell.stderr == ""
    assert shell.stdout.split()[0] == "NAME"
    # the reader is gone before artmem writes anything: a real EPIPE on every write
    proc = subprocess.Popen([sys.executable, "-m", "artmem.cli", "models", "-v"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0
    assert err == ""


@pytest.mark.parametrize("width", [60, 80, 120])
def test_models_table_fits_the_terminal(width):
    env = {**os.environ, "PYTHONPATH": SRC, "COLUMNS": str(width)}
    res = subprocess.run([sys.executable, "-m", "artmem.cli", "models"], capture_output=True, text=True,
                         env=env, timeout=120)
    lines = res.stdout.splitlines()
    assert res.returncode == 0 and lines[0].startswith("NAME")
    assert any(line.startswith("resmem ") for line in lines)
    # the fixed columns (name, task, input, layer) need 54; everything else gives way
    assert max(len(line) for line in lines) <= max(width, 64)


def test_models_verbose_has_the_details():
    res = _artmem("models", "-v", "--pattern", "resmem")
    assert "preprocess:" in res.stdout and "layers:" in res.stdout and "source:" in res.stdout


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu"])
def test_bad_device_is_one_line(device, synthetic_collection, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["score", synthetic_collection.root, "--model", "tiny_test", "--device", device,
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"--device {device}: not a device name" in err
    assert not out.exists()


def test_cuda_without_gpu_is_one_line(synthetic_collection, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["score", synthetic_collection.root, "--model", "tiny_test", "--device", "cuda",
                 "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "CUDA is not available" in err


def test_failed_run_leaves_no_output_folder(synthetic_collection, tmp_path, capsys):
    out = tmp_path / "new" / "report"
    # the report fails after creating its folder (no such category): nothing is left behind
    scores = tmp_path / "scores.csv"
    synthetic_collection.table[["path"]].assign(score=0.5).to_csv(scores, index=False)
    assert main(["report", synthetic_collection.root, "--scores", str(scores), "--categories", "nope",
                 "-o", str(out)]) == 2
    assert "no column 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    # a folder the user already had is never removed
    mine = tmp_path / "mine"
    mine.mkdir()
    assert main(["report", synthetic_collection.root, "--scores", str(scores), "--categories", "nope",
                 "-o", str(mine)]) == 2
    assert mine.is_dir()


def test_failed_batch_job_keeps_its_resumable_shards(tmp_path):
    from artmem.cliutils import discard_failed_output

    job = tmp_path / "job"
    (job / "shards").mkdir(parents=True)
    (job / "shards" / "scores-00000.parquet").write_bytes(b"x")
    note = discard_failed_output(job)
    assert job.is_dir() and "rerun the same command to resume" in note
    (job / "shards" / "scores-00000.parquet").unlink()
    assert discard_failed_output(job) is None and not job.exists()


def test_split_ratios_one_spelling_and_the_old_one_warns(synthetic_collection, tmp_path, capsys):
    from artmem.cli import build_parser
    from artmem.cliutils import parse_ratios

    assert parse_ratios("70/10/20") == pytest.approx((0.7, 0.1, 0.2))
    assert parse_ratios(["0.7", "0.1", "0.2"]) == pytest.approx((0.7, 0.1, 0.2))
    assert parse_ratios("6,2,2") == pytest.approx((0.6, 0.2, 0.2))
    out = tmp_path / "split"
    assert main(["collection", "split", synthetic_collection.root, "--label", "style",
                 "--ratios", "50/25/25", "-o", str(out)]) == 0
    from artmem.data.collection import open_collection

    counts = open_collection(out).table["split"].value_counts()
    assert counts["train"] == pytest.approx(counts.sum() / 2, abs=3)
    capsys.readouterr()
    args = build_parser().parse_args(["train", "x", "-o", "y", "--split", "60/20/20"])
    assert "--split is deprecated; use --ratios" in capsys.readouterr().err
    assert parse_ratios(args.ratios) == pytest.approx((0.6, 0.2, 0.2))
    assert build_parser().parse_args(["train", "x", "-o", "y", "--ratios", "60/20/20"]).ratios == ["60/20/20"]


def test_train_without_label_names_the_columns(synthetic_collection, tmp_path, capsys):
    assert main(["train", synthetic_collection.root, "--model", "tiny_test", "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "give --label COLUMN" in err and "style" in err and "genre" in err
    assert not (tmp_path / "r").exists()
