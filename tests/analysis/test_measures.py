"""Image measures on constructed images with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageOps

from artmem.analysis.color import HUE_COLUMNS, color_measures, hue_bin, hue_histogram, rgb_to_hsv
from artmem.analysis.edges import edge_ratios
from artmem.analysis.symmetry import SymmetryScorer, symmetry_index


def stripes(size: int = 64, width: int = 8, vertical: bool = True) -> np.ndarray:
    """Black/white stripes in [0, 1]: vertical stripes have vertical edges."""
    idx = np.arange(size)
    band = ((idx // width) % 2).astype(float)
    return np.tile(band, (size, 1)) if vertical else np.tile(band[:, None], (1, size))


# ----------------------------------------------------------------------------- edges


def test_vertical_stripes_have_only_vertical_edges():
    size, width = 64, 8
    r = edge_ratios(stripes(size, width, vertical=True))
    transitions = size // width - 1  # 7 black/white boundaries
    # a unit step gives magnitude 1 in the two pixel columns next to it
    expected = transitions * 2 * size / size**2
    assert r["vertical_edge_ratio"] == pytest.approx(expected)
    assert r["horizontal_edge_ratio"] == 0.0
    assert r["edge_density"] == pytest.approx(expected)


def test_horizontal_stripes_mirror_the_vertical_case():
    v = edge_ratios(stripes(64, 8, vertical=True))
    h = edge_ratios(stripes(64, 8, vertical=False))
    assert h["horizontal_edge_ratio"] == pytest.approx(v["vertical_edge_ratio"])
    assert h["vertical_edge_ratio"] == 0.0


def test_diagonal_edges_count_as_neither_and_threshold_applies():
    yy, xx = np.mgrid[0:64, 0:64]
    diag = (xx > yy).astype(float)
    r = edge_ratios(diag)
    assert r["edge_density"] > 0
    # only the two corner pixels where the diagonal meets the border are axis-aligned
    assert r["vertical_edge_ratio"] + r["horizontal_edge_ratio"] <= 2 / 64**2
    faint = stripes() * 0.05  # steps of 5 % stay below the default threshold of 10 %
    assert edge_ratios(faint)["edge_density"] == 0.0
    assert edge_ratios(faint, threshold=0.04)["vertical_edge_ratio"] > 0


def test_flat_image_has_no_edges_and_pil_input_works():
    r = edge_ratios(Image.new("RGB", (40, 30), (120, 50, 200)))
    assert r == {"edge_density": 0.0, "vertical_edge_ratio": 0.0, "horizontal_edge_ratio": 0.0}


def test_large_images_are_downscaled_to_max_side():
    from artmem.analysis.edges import to_gray

    img = Image.fromarray((stripes(1024, 128) * 255).astype(np.uint8))
    assert to_gray(img, 512).shape == (512, 512)
    assert to_gray(img, None).shape == (1024, 1024)
    small, full = edge_ratios(img, max_side=512), edge_ratios(img, max_side=None)
    # 7 boundaries: 2 edge columns each at full size; the bilinear halving softens each step over
    # a few more columns, but the ratio stays of the same order and purely vertical
    assert full["vertical_edge_ratio"] == pytest.approx(14 / 1024)
    assert 14 / 512 <= small["vertical_edge_ratio"] <= 4 * 14 / 512
    assert small["horizontal_edge_ratio"] == 0.0


# ----------------------------------------------------------------------------- colour


@pytest.mark.parametrize("k", range(12))
def test_pure_hues_land_in_their_bin(k):
    import colorsys

    rgb = colorsys.hsv_to_rgb(k * 30 / 360, 1.0, 1.0)
    img = np.ones((8, 8, 3)) * np.array(rgb)
    hist, frac = hue_histogram(img)
    assert frac == 1.0
    assert np.argmax(hist) == k and hist[k] == pytest.approx(1.0)
    m = color_measures(img)
    assert m[HUE_COLUMNS[k]] == pytest.approx(1.0)


def test_bin_edges_are_centred_on_the_wheel_hues():
    assert hue_bin(np.array([0, 14.9, 15.0, 344.9, 345.0, 359.9, 45.0])).tolist() == [0, 0, 1, 11, 0, 0, 2]


def test_hsv_matches_colorsys():
    import colorsys

    rng = np.random.default_rng(0)
    px = rng.random((50, 3))
    h, s, v = rgb_to_hsv(px[None])
    for i, (r, g, b) in enumerate(px):
        eh, es, ev = colorsys.rgb_to_hsv(r, g, b)
        assert h[0, i] == pytest.approx(eh * 360, abs=1e-9)
        assert s[0, i] == pytest.approx(es) and v[0, i] == pytest.approx(ev)


def test_greys_are_excluded_but_dark_colours_count():
    img = np.zeros((10, 10, 3))
    img[:, :4] = [1.0, 0.0, 0.0]  # red
    img[:, 4:6] = [0.5, 0.5, 0.5]  # grey: hue undefined
    img[:, 6:8] = [0.02, 0.01, 0.01]  # near-black: saturation 0.5, but chroma only 0.01
    img[:, 8:] = [0.25, 0.14, 0.06]  # dark brown (value 0.25, hue 25): an Old Master colour
    hist, frac = hue_histogram(img)
    assert frac == pytest.approx(0.6)
    assert hist[0] == pytest.approx(4 / 6) and hist[1] == pytest.approx(2 / 6)
    dark_red, frac = hue_histogram(np.full((4, 4, 3), [0.15, 0.02, 0.02]))  # value 0.15 < the old 0.2 cut
    assert frac == 1.0 and dark_red[0] == pytest.approx(1.0)
    grey, frac = hue_histogram(np.full((4, 4, 3), 0.7))
    assert frac == 0.0 and np.isnan(grey).all()
    m = color_measures(np.full((4, 4, 3), 0.7))
    assert math.isnan(m["hue_red"]) and m["colorfulness"] == pytest.approx(0.0)


@pytest.mark.parametrize("mode", ["chromatic", "paper"])
def test_hue_histogram_matches_skimage(mode):
    from skimage.color import rgb2hsv

    rng = np.random.default_rng(1)
    img = rng.random((24, 32, 3)) ** 2  # many dark pixels
    img[:6] = img[:6].mean(axis=2, keepdims=True)  # grey rows
    hsv = rgb2hsv(img)
    hue = hsv[..., 0] * 360.0
    keep = np.ones(hue.shape, bool) if mode == "paper" else (img.max(2) - img.min(2)) >= 0.05
    # bins centred on 0, 30, ..., 330: shift by half a bin, then a plain 12-bin histogram
    counts, _ = np.histogram((hue[keep] + 15.0) % 360.0, bins=12, range=(0.0, 360.0))
    hist, frac = hue_histogram(img, mode=mode, max_side=None)
    np.testing.assert_allclose(hist, counts / keep.sum(), atol=1e-12)
    assert frac == pytest.approx(keep.mean())
    assert color_measures(img, hue_mode=mode, max_side=None)["hue_red"] == pytest.approx(counts[0] / keep.sum())
    with pytest.raises(ValueError, match="hue mode"):
        hue_histogram(img, mode="hsv")


def test_two_hues_split_the_histogram():
    img = np.zeros((4, 8, 3))
    img[:, :2] = [1, 0, 0]
    img[:, 2:] = [0, 0, 1]
    hist, _ = hue_histogram(img)
    assert hist[0] == pytest.approx(0.25) and hist[8] == pytest.approx(0.75)
    assert hist.sum() == pytest.approx(1.0)


# ----------------------------------------------------------------------------- symmetry


def test_symmetry_index_formula():
    m = np.array([[1.0, 2.0], [0.0, 4.0]])
    f = np.array([[1.0, 1.0], [2.0, 4.0]])
    expected = 1 - (0 + 1 + 2 + 0) / (1 + 2 + 2 + 4)
    assert symmetry_index(m, f) == pytest.approx(expected)
    assert symmetry_index(m, m) == 1.0
    assert symmetry_index(np.zeros(3), np.zeros(3)) == 1.0


@pytest.fixture(scope="module")
def scorer():
    return SymmetryScorer.from_model()  # the trained filters of ResMem's AlexNet-like branch


def mirrored(img: Image.Image) -> Image.Image:
    w, h = img.size
    left = img.crop((0, 0, w // 2, h))
    out = Image.new("RGB", (2 * (w // 2), h))
    out.paste(left, (0, 0))
    out.paste(ImageOps.mirror(left), (w // 2, 0))
    return out


def test_conv1_has_the_trained_resmem_filters(scorer):
    import resmem
    import torch

    sd = torch.load(resmem.path, map_location="cpu", mmap=True, weights_only=True)
    conv1 = scorer.branch.convs["conv1"]
    assert tuple(conv1.weight.shape) == (48, 3, 11, 11) and conv1.stride == (4, 4)
    assert torch.equal(conv1.weight.detach(), sd["conv1.weight"])
    assert torch.equal(scorer.branch.convs["conv5"].weight.detach(), sd["conv5.weight"])


def test_mirror_symmetric_image_scores_one_noise_lower(scorer, real_images):
    photos = sorted(real_images)[:4]
    rng = np.random.default_rng(0)
    noise = scorer(Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)))
    for p in photos:
        img = Image.open(p).convert("RGB")
        sym = scorer(mirrored(img))
        orig = scorer(img)
        for name in ("symmetry_conv1", "symmetry_conv5"):
            assert sym[name] > 0.999, (p.name, name, sym[name])
            assert orig[name] < sym[name] - 0.05
    assert noise["symmetry_conv1"] < 0.9 and noise["symmetry_conv5"] < 0.95
    # a left-right gradient is strongly asymmetric
    grad = np.tile(np.linspace(0, 255, 256), (256, 1)).astype(np.uint8)
    g = scorer(Image.fromarray(grad).convert("RGB"))
    assert g["symmetry_conv1"] < noise["symmetry_conv1"]


def test_batch_equals_single_and_grid_shapes(scorer, real_images):
    import torch

    imgs = [Image.open(p).convert("RGB") for p in sorted(real_images)[:3]]
    batch = scorer.batch(torch.stack([SymmetryScorer.to_tensor(i) for i in imgs]))
    for img, b in zip(imgs, batch, strict=True):
        single = scorer(img)
        for k in single:
            assert b[k] == pytest.approx(single[k], abs=1e-6)
    maps = scorer.maps(SymmetryScorer.to_tensor(imgs[0]).unsqueeze(0))
    assert tuple(maps["conv1"][0].shape[-2:]) == (126, 126)  # 512 px, 11x11 stride 4
    assert tuple(maps["conv5"][0].shape[-2:]) == (30, 30)  # 6x6 patches -> 5x5 grid


def test_unavailable_weights_raise_clearly(tmp_path):
    from artmem.analysis.symmetry import alexnet_branch
    from artmem.errors import ArtmemError

    with pytest.raises(ArtmemError, match="no AlexNet-like branch"):
        alexnet_branch("tiny_test")
    bad = tmp_path / "w.pt"
    import torch

    torch.save({"foo.weight": torch.zeros(1)}, bad)
    with pytest.raises(ArtmemError, match="conv1"):
        alexnet_branch(str(bad))
