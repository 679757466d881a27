"""`Preprocess`: a model's evaluation preprocessing as data, equal to what training fed the network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from artmem.errors import ArtmemError
from artmem.models.factory import create_model
from artmem.models.preprocess import Preprocess, preprocess_for


def _photo(path, size=(300, 190), seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (size[1] // 10 + 1, size[0] // 10 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(base).resize(size, Image.BICUBIC)
    img.save(path, quality=92)
    return path


def test_dict_round_trip_and_clear_errors():
    p = Preprocess.for_cache(36, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert Preprocess.from_dict(p.to_dict()) == p
    with pytest.raises(ArtmemError, match="unknown preprocess setting"):
        Preprocess.from_dict({**p.to_dict(), "eval": "x"}, "run/best.pt")
    with pytest.raises(ArtmemError, match="resize_mode must be one of squash, crop"):
        Preprocess.from_dict({**p.to_dict(), "resize_mode": "shorter"})
    with pytest.raises(ArtmemError, match="needs recipe"):
        Preprocess.from_dict({"recipe": "cache"})


def test_cache_recipe_equals_the_training_cache(tmp_path):
    """The evaluation crop of a cached JPEG (reduced-scale decode, squash, centre crop, normalise as
    the training loader does) equals `Preprocess.load` of the file."""
    from artmem.data.cache import CachedImageDataset, batch_to_float, build_cache
    from artmem.data.collection import open_collection

    root = tmp_path / "imgs"
    root.mkdir()
    for i, size in enumerate([(300, 190), (120, 260), (64, 64)]):
        _photo(root / f"{i}.jpg", size, seed=i)
    coll = open_collection(root)
    cache = build_cache(coll, tmp_path / "cache", size=36, progress=False)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    ds = CachedImageDataset(cache, coll.paths, crop=32, output="uint8")
    pre = Preprocess.for_cache(36, 32, mean, std)
    for i, rel in enumerate(coll.paths):
        want = batch_to_float(ds[i][0][None], mean, std)[0]
        got = pre.load(coll.abs_path(rel))
        assert got.shape == (3, 32, 32)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
        assert torch.equal(pre.decode((root / rel).read_bytes(), rel), got)


def test_pretrained_recipe_is_the_zoo_transform(tmp_path):
    """A zoo entry: resize as its cfg says, centre crop, (x / 255 - mean) / std (written out here)."""
    model = create_model("tiny_test")
    pre = preprocess_for(model)
    assert pre.recipe == "pretrained" and pre.crop == 32
    img = Image.open(_photo(tmp_path / "a.jpg")).convert("RGB")
    arr = np.asarray(img.resize((32, 32), Image.BILINEAR), np.float32) / 255.0
    want = torch.from_numpy(((arr - 0.5) / 0.5).transpose(2, 0, 1).copy())
    torch.testing.assert_close(pre(img), want, atol=1e-6, rtol=0)


def test_a_runs_saved_preprocess_wins(tmp_path):
    model = create_model("tiny_test", num_classes=3)
    saved = Preprocess.for_cache(40, 32, (0.1, 0.2, 0.3), (0.3, 0.2, 0.1))
    model.trained_config = {"preprocess": saved.to_dict()}
    assert preprocess_for(model) == saved
