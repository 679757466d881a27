"""The work of a map is bounded by the image's real size and aspect: narrow images are padded
(or refused beyond 100:1) instead of asking for a 1-Mpx-long network input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from artmem.cli import main
from artmem.errors import ImageReadError
from artmem.memorability.maps import (
    MAX_MAP_ASPECT,
    MapConfig,
    MapModel,
    bounded_map_input,
    memorability_map,
)
from artmem.models.factory import create_model


def _img(w, h, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8))


def test_bounded_map_input():
    ordinary = _img(120, 30)  # 4:1 is mapped as it is
    assert bounded_map_input(ordinary) == (ordinary, None)
    narrow = _img(1, 64)
    work, box = bounded_map_input(narrow)
    assert max(work.size) / min(work.size) <= MAX_MAP_ASPECT
    x0, y0, x1, y1 = box
    assert (x1 - x0, y1 - y0) == narrow.size
    assert np.array_equal(np.asarray(work.crop(box)), np.asarray(narrow))  # the original, unscaled
    long = _img(20_000, 400)  # a long scroll: shrunk to 2048 px before padding
    work, box = bounded_map_input(long)
    assert max(work.size) == 2048 and max(work.size) / min(work.size) <= MAX_MAP_ASPECT
    with pytest.raises(ImageReadError, match="too elongated"):
        bounded_map_input(_img(3000, 1))


@pytest.mark.parametrize("size", [(1, 64), (64, 1), (7, 600), (900, 30)])
def test_map_work_is_bounded_and_shape_kept(size):
    mm = MapModel(create_model("tiny_test"), method="crops", stride=4)
    seen = []
    real_grid = mm.grid

    def spy(x, *a, **k):
        seen.append(tuple(x.shape[1:]))
        return real_grid(x, *a, **k)

    mm.grid = spy
    cfg = MapConfig(grids=(2, 4), map_size=64)
    m = memorability_map(mm, _img(*size), cfg)
    w, h = size
    s = 64 / max(w, h)
    assert m.shape == (max(1, round(h * s)), max(1, round(w * s)))
    assert np.isfinite(m).all()
    short_max = mm.window + mm.stride * (max(cfg.grids) - 1)
    for hh, ww in seen:  # no network input more elongated than MAX_MAP_ASPECT allows
        assert max(hh, ww) <= short_max * MAX_MAP_ASPECT + mm.window, (size, hh, ww)


def test_map_command_lists_an_unmappable_image_and_goes_on(tmp_path):
    src = tmp_path / "imgs"
    src.mkdir()
    _img(40, 30).save(src / "ok.png")
    _img(1, 3000).save(src / "line.png")  # 3000:1
    _img(2, 64).save(src / "narrow.png")  # 32:1, padded
    out = tmp_path / "maps"
    assert main(["memorability", "map", str(src), "-o", str(out), "--model", "tiny_test", "--grids", "1,2",
                 "--device", "cpu"]) == 0
    assert sorted(pd.read_parquet(out / "maps.parquet")["path"]) == ["narrow.png", "ok.png"]
    errors = pd.read_parquet(out / "errors.parquet")
    assert errors["path"].tolist() == ["line.png"] and "too elongated" in errors["reason"].iloc[0]
