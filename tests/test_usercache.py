"""`artmem cache info|clear`: the cache folder's files grouped by model and outputs, and freed."""

from __future__ import annotations

import logging

from artmem.cli import main
from artmem.usercache import cache_entries, clear_cache


def _fill(root):
    onnx = root / "onnx"
    onnx.mkdir(parents=True)
    files = {
        "resmem-out-ed7867c73449.onnx": 500,
        "resmem-out-ed7867c73449.int8-cc2666e795de.onnx": 130,
        "resmem-out-ed7867c73449.int8-cc2666e795de.json": 4,
        "resmem-fc7+score-d8825a9faf58.onnx": 510,
        "my-model-conv3-0123456789ab.onnx": 20,
        ".resmem-out-ed7867c73449.onnx.123.tmp": 7,
    }
    for name, size in files.items():
        (onnx / name).write_bytes(b"x" * size)
    (root / "notes").mkdir()
    (root / "notes" / "a.txt").write_bytes(b"y" * 3)
    return files


def test_entries_group_exports_by_model_and_outputs(tmp_path):
    _fill(tmp_path)
    entries = {(e.model, e.outputs): e for e in cache_entries(tmp_path)}
    score = entries[("resmem", "score")]
    assert sorted(score.kinds) == ["fp32", "int8"] and len(score.files) == 3 and score.size == 634
    assert entries[("resmem", "fc7+score")].size == 510
    assert entries[("my-model", "conv3")].size == 20  # a dash in the model name
    assert entries[("-", "onnx/.resmem-out-ed7867c73449.onnx.123.tmp")].kinds == ["unfinished"]
    assert entries[("-", "notes/")].size == 3
    assert sum(e.size for e in entries.values()) == 500 + 130 + 4 + 510 + 20 + 7 + 3


def test_cli_info_and_clear(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ARTMEM_CACHE", str(tmp_path))
    _fill(tmp_path)
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path) in out and "resmem" in out and "int8,fp32" in out and "total 1 KB in 7 item(s)" in out
    assert main(["cache", "clear", "--model", "resmem", "--dry-run"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4 and len(cache_entries(tmp_path)) == 5
    assert main(["cache", "clear", "--model", "resmem"]) == 0
    assert "freed 1 KB (4 item(s))" in capsys.readouterr().err
    assert {e.model for e in cache_entries(tmp_path)} == {"my-model", "-"}
    assert main(["cache", "clear", "--model", "resmem"]) == 2  # nothing left of it: says so
    assert "holds no export of 'resmem'" in capsys.readouterr().err
    removed, _ = clear_cache(root=tmp_path)
    assert len(removed) == 3 and cache_entries(tmp_path) == []


def test_export_says_when_it_starts_and_ends(tmp_path, monkeypatch, caplog):
    from artmem.batch.processors import export_onnx, onnx_path_for
    from artmem.models import create_model

    monkeypatch.setenv("ARTMEM_CACHE", str(tmp_path))
    model = create_model("tiny_test")
    path = onnx_path_for("tiny_test", [None], "w")
    with caplog.at_level(logging.INFO, logger="artmem.batch.processors"):
        export_onnx(model, [None], path, model.pretrained_cfg.input_size)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("exporting tiny_test (score) to ONNX") for m in messages)
    assert any(m.startswith("exported tiny_test in") for m in messages)
    assert [(e.model, e.outputs) for e in cache_entries(tmp_path)] == [("tiny_test", "score")]
