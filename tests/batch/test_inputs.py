"""What a command and the Python API take as images: one file, several files and folders, a
collection file, PIL images and numpy arrays; and what the top-level package offers."""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import artmem
from artmem.batch.api import extract, score
from artmem.cli import main
from artmem.data.collection import open_collection, open_inputs
from artmem.data.images import load_image
from artmem.errors import ArtmemError
from artmem.models import create_model
from artmem.models.transforms import build_transform


def _forward(images: list[Image.Image]) -> np.ndarray:
    """The tiny model's own forward, one image at a time (the reference)."""
    model = create_model("tiny_test")
    tf = build_transform(model.pretrained_cfg)
    with torch.inference_mode():
        return np.array([float(model(tf(im)[None])[0]) for im in images])


@pytest.fixture
def two_folders(tmp_path, synthetic_collection):
    """Three images spread over two sibling folders (a/x.png, a/y.png, b/x.png)."""
    src = [synthetic_collection.abs_path(p) for p in synthetic_collection.paths[:3]]
    files = [tmp_path / "a" / "x.png", tmp_path / "a" / "y.png", tmp_path / "b" / "x.png"]
    for s, f in zip(src, files, strict=True):
        f.parent.mkdir(exist_ok=True)
        load_image(s).save(f)
    return files


def test_resolver_single_file_list_and_folder(two_folders, tmp_path, synthetic_collection):
    one = open_collection(str(two_folders[0]))
    assert one.paths == ["x.png"] and one.abs_paths() == [str(two_folders[0])]
    both = open_collection([str(two_folders[0]), str(two_folders[2])])
    assert both.paths == ["a/x.png", "b/x.png"] and both.root == str(tmp_path)
    mixed = open_collection([str(tmp_path / "a"), str(two_folders[2]), str(two_folders[0])])
    assert sorted(mixed.paths) == ["a/x.png", "a/y.png", "b/x.png"]  # each image once
    assert all(open(p, "rb") for p in mixed.abs_paths())
    # a collection file next to loose images keeps its label columns
    coll_file = f"{synthetic_collection.root}/collection.parquet"
    combined = open_collection([coll_file, str(two_folders[0])])
    assert len(combined) == len(synthetic_collection) + 1 and "style" in combined.table.columns
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(ArtmemError, match="notes.txt: not an image file, an image folder or a collection"):
        open_collection(str(notes))


def test_cli_score_one_image_prints_path_and_score(two_folders, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["score", "a/x.png", "--model", "tiny_test", "--device", "cpu", "--no-progress"]) == 0
    path, value = capsys.readouterr().out.strip().split("\t")
    assert path == "a/x.png"
    assert float(value) == pytest.approx(_forward([load_image(two_folders[0])])[0], abs=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written without -o


def test_cli_score_several_images_with_and_without_out(two_folders, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["score", "a/x.png", "b/x.png", "--model", "tiny_test", "--device", "cpu", "--no-progress"]
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["a/x.png", "b/x.png"]
    ref = _forward([load_image(two_folders[0]), load_image(two_folders[2])])
    np.testing.assert_allclose([float(line.split("\t")[1]) for line in lines], ref, atol=1e-5)
    assert main(args + ["-o", "out"]) == 0
    assert capsys.readouterr().out.split()[0] == "out/scores.parquet"  # the written paths, as given
    table = pd.read_parquet(tmp_path / "out" / "scores.parquet")
    assert table["path"].tolist() == ["a/x.png", "b/x.png"]
    np.testing.assert_allclose(table["score"], ref, atol=1e-5)


def test_cli_score_unreadable_single_image_is_a_user_error(tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    assert main(["score", str(bad), "--model", "tiny_test", "--device", "cpu", "--no-progress"]) == 2
    assert "no image could be scored" in capsys.readouterr().err


def test_api_takes_paths_lists_pil_and_arrays(two_folders):
    pil = [load_image(f) for f in two_folders]
    ref = _forward(pil)
    opts = {"num_workers": 0, "progress": False, "device": "cpu"}
    one = score(str(two_folders[0]), "tiny_test", **opts)
    assert one["path"].tolist() == ["x.png"] and one["score"][0] == pytest.approx(ref[0], abs=1e-5)
    several = score([str(f) for f in two_folders], "tiny_test", **opts)
    np.testing.assert_allclose(several.set_index("path").loc[["a/x.png", "a/y.png", "b/x.png"], "score"],
                               ref, atol=1e-5)
    in_memory = score(pil, "tiny_test", **opts)
    assert in_memory["path"].tolist() == ["image_0.png", "image_1.png", "image_2.png"]
    np.testing.assert_allclose(in_memory["score"], ref, atol=1e-5)
    arr = np.asarray(pil[1])
    assert score(arr, "tiny_test", **opts)["score"][0] == pytest.approx(ref[1], abs=1e-5)
    floats = arr.astype(np.float64) / 255.0  # floats in 0..1 are the same image
    assert score(floats, "tiny_test", **opts)["score"][0] == pytest.approx(ref[1], abs=1e-5)
    batch = np.stack([np.asarray(p) for p in pil])  # N x H x W x 3
    np.testing.assert_allclose(score(batch, "tiny_test", **opts)["score"], ref, atol=1e-5)
    feats = extract(pil[0], "tiny_test", "fc", **opts)
    assert feats["path"].tolist() == ["image_0.png"] and len(feats["embedding"][0]) > 0


def test_in_memory_inputs_are_checked_and_cleaned_up():
    with open_inputs(np.zeros((8, 8, 3), dtype=np.uint8)) as coll:
        folder = coll.root
        assert coll.paths == ["image_0.png"]
    assert not __import__("os").path.exists(folder)
    with pytest.raises(ArtmemError, match="HxW, HxWx3 or HxWx4"), open_inputs(np.zeros((8, 8, 7))):
        pass
    with pytest.raises(ArtmemError, match="0..1"), open_inputs(np.full((4, 4), 3.0)):
        pass
    with pytest.raises(ArtmemError, match="not a mix"), open_inputs([np.zeros((4, 4)), "a.jpg"]):
        pass


def test_top_level_package_offers_the_main_functions():
    names = {"score", "extract", "analyze", "report", "similar", "memorability_map", "create_model",
             "list_models"}
    assert names <= set(dir(artmem)) and names <= set(artmem.__all__)
    for name in names:
        assert callable(getattr(artmem, name)), name
    importlib.import_module("artmem.report.build")  # rebinds artmem.report to the package...
    assert callable(artmem.report) and artmem.score is score  # ...which stays callable


def test_memorability_map_of_an_array_and_a_path(two_folders):
    m = artmem.memorability_map(np.asarray(load_image(two_folders[0])), model="tiny_test",
                                device="cpu", grids=(1, 2), method="crops", map_size=32)
    assert m.dtype == np.float32 and max(m.shape) == 32 and np.isfinite(m).all()
    maps = artmem.memorability_map([str(two_folders[0])], model="tiny_test", device="cpu",
                                   grids=(1, 2), method="crops", map_size=32)
    np.testing.assert_allclose(maps[0], m, atol=1e-5)


def test_a_handful_of_images_skips_the_onnx_export(two_folders, tmp_path, monkeypatch):
    import artmem.batch.api
    from artmem.batch.api import SMALL_JOB, backend_for
    from artmem.batch.processors import ModelProcessor
    from artmem.models.registry import get_pretrained_cfg

    assert backend_for("auto", 1) == "torch" and backend_for("auto", SMALL_JOB) == "auto"
    assert backend_for("onnx", 1) == "onnx"  # asked for explicitly: kept

    class Exported(Exception):
        pass

    def no_export(self, layers):
        raise Exported

    monkeypatch.setitem(get_pretrained_cfg("tiny_test").extra, "onnx_export", True)  # as resmem
    monkeypatch.setattr(ModelProcessor, "_onnx_file", no_export)  # where the export starts
    df = score(str(two_folders[0]), "tiny_test", device="cpu", num_workers=0, progress=False)
    assert len(df) == 1  # one image: PyTorch, no export
    monkeypatch.setattr(artmem.batch.api, "SMALL_JOB", 1)
    with pytest.raises(Exported):  # a bigger job would have exported
        score(str(two_folders[0]), "tiny_test", device="cpu", num_workers=0, progress=False)
