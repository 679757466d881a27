"""Memorability maps (Khosla et al. 2015, sec. 5): the model applied to overlapping regions at
several scales, averaged into one map per image, plus the paper's emphasis renderings.

Two ways to evaluate the regions, giving the same output grid:

- fully convolutional (`method="fcn"`): the fully connected layers run as convolutions over the
  whole rescaled image (Long et al.), so every window position comes out of one forward pass.
  Used for ResMem (the default model): its AlexNet-like branch ends in a 6x6x256 pool5 read by
  fc6 (-> a 6x6 convolution), its ResNet152 branch ends in a global average pool + fc (-> an 8x8
  stride-1 average pool + 1x1 convolution) and fc7..fc12 become 1x1 convolutions. Both branches
  have a total stride of 32, so windows of 227 px lie every 32 px. At one window it equals the
  model's own forward exactly; at larger sizes windows see their real neighbours instead of zero
  padding at their borders (as in the paper's fully convolutional MemNet).
- batched crops (`method="crops"`): every overlapping window cut out and scored in batches; used
  for any other model (trained checkpoints, tiny_test, ...).

Per scale, an image is resized so its shorter side holds `g` windows (window + stride * (g - 1))
and the grid of window scores is placed at the window centres and linearly interpolated over the
image; the scales are averaged. The map keeps the model's score units (`.npy`); overlays are
normalised to 0-1 per image, as in the paper's figure 7, but coloured with `MAP_CMAP` (inferno,
perceptually uniform and readable with colour-vision deficiencies) instead of the paper's jet.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

logger = logging.getLogger(__name__)

DEFAULT_GRIDS = (3, 5, 8)
MAP_CMAP = "inferno"  # overlays: 0 = the image's least, 1 = its most memorable region
# The work of a map grows with the image's aspect ratio (the shorter side is scaled to hold g
# windows, the longer side follows): a 1x3000 px PNG asked for a 1.35-Mpx-long input and GBs of
# activations. Images more elongated than MAX_MAP_ASPECT are padded to it; beyond MAX_PAD_ASPECT
# there is too little image left in the padded map to be worth a map, and it is refused.
MAX_MAP_ASPECT = 4.0
MAX_PAD_ASPECT = 100.0
PAD_MAX_SIDE = 2048  # an elongated image is shrunk to this longer side before padding (the map
                     # never uses more: its longer side is at most 451 px * MAX_MAP_ASPECT)


# ----------------------------------------------------------------------------- fully convolutional


def is_resmem_like(model: nn.Module) -> bool:
    """A ResMem network (the package's module or artmem's `resmem` entry) with its score head."""
    need = ("features", "conv1", "lrn1", "conv5", "pool5", "fc6", "fc7", "fc11", "fc12")
    return all(hasattr(model, a) for a in need) and getattr(model, "num_classes", 1) == 1 \
        and getattr(model.fc6, "in_features", 0) == 9216 + 1000


class ResMemFCN(nn.Module):
    """ResMem made fully convolutional; forward(x: (B,3,H,W)) -> window scores (B, gh, gw).

    Shares (does not copy) the weights of the wrapped network.
    """

    window = 227
    stride = 32

    def __init__(self, net: nn.Module):
        super().__init__()
        if not is_resmem_like(net):
            raise ValueError("ResMemFCN needs a ResMem network with its score head")
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.net
        c = m.lrn1(m.pool1(F.relu(m.conv1(x))))
        c = m.lrn2(m.pool2(F.relu(m.conv2(c))))
        c = F.relu(m.conv3(c))
        c = F.relu(m.conv4(c))
        c = m.pool5(F.relu(m.conv5(c)))  # (B, 256, 6 + a, 6 + b)
        w6 = m.fc6.weight
        h = F.conv2d(c, w6[:, :9216].reshape(w6.shape[0], 256, 6, 6), m.fc6.bias)
        r = m.features
        t = r.maxpool(r.relu(r.bn1(r.conv1(x))))
        t = r.layer4(r.layer3(r.layer2(r.layer1(t))))  # (B, 2048, 8 + a, 8 + b)
        t = F.avg_pool2d(t, kernel_size=8, stride=1)
        t = F.conv2d(t, r.fc.weight[:, :, None, None], r.fc.bias)  # resnet "fc" -> (B, 1000, ...)
        gh, gw = min(h.shape[2], t.shape[2]), min(h.shape[3], t.shape[3])
        h, t = h[:, :, :gh, :gw], t[:, :, :gh, :gw]
        h = F.relu(h + F.conv2d(t, w6[:, 9216:, None, None]))
        for name in ("fc7", "fc8", "fc9", "fc10", "fc11"):
            lin = getattr(m, name)
            h = F.relu(F.conv2d(h, lin.weight[:, :, None, None], lin.bias))
        y = F.conv2d(h, m.fc12.weight[:, :, None, None], m.fc12.bias)
        return torch.sigmoid(y[:, 0])


def fcn_for(model: nn.Module) -> nn.Module | None:
    """The fully convolutional version of `model` when its architecture allows it, else None."""
    if is_resmem_like(model):
        return ResMemFCN(model)
    return None


# ----------------------------------------------------------------------------- crops


def crop_windows(x: torch.Tensor, window: int, stride: int) -> tuple[torch.Tensor, int, int]:
    """All windows of a (3, H, W) tensor at `stride`: ((gh * gw, 3, window, window), gh, gw)."""
    patches = x.unfold(1, window, stride).unfold(2, window, stride)  # (3, gh, gw, win, win)
    gh, gw = patches.shape[1], patches.shape[2]
    return patches.permute(1, 2, 0, 3, 4).reshape(gh * gw, 3, window, window), gh, gw


def _scores(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    y = model(batch)
    if y.ndim == 2:
        if y.shape[1] != 1:
            raise ValueError(f"memorability maps need a model that outputs one score, got {tuple(y.shape)}")
        y = y[:, 0]
    return y


def crops_grid(model, x, window, stride, batch_size=32) -> torch.Tensor:
    """Batched overlapping crops -> grid of window scores (gh, gw)."""
    crops, gh, gw = crop_windows(x, window, stride)
    out = [_scores(model, crops[i:i + batch_size]) for i in range(0, len(crops), batch_size)]
    return torch.cat(out).float().reshape(gh, gw)


def naive_grid(model, x, window, stride) -> torch.Tensor:
    """Reference: one forward pass per crop, looping over positions (the benchmark baseline)."""
    _, H, W = x.shape
    ys = range(0, H - window + 1, stride)
    xs = range(0, W - window + 1, stride)
    grid = torch.empty(len(ys), len(xs))
    for i, y0 in enumerate(ys):
        for j, x0 in enumerate(xs):
            grid[i, j] = _scores(model, x[None, :, y0:y0 + window, x0:x0 + window])[0].float()
    return grid


# ----------------------------------------------------------------------------- maps


@dataclass
class MapConfig:
    """How maps are computed.

    Attributes:
        grids: windows along the shorter side at each scale (Khosla: several sizes, e.g. 451 px
            = 8 windows of 227 px every 32 px).
        method: "auto" (fully convolutional when the model allows it, else crops), "fcn", "crops".
        stride: window step for crops (default: the FCN stride for ResMem, window // 8 otherwise).
        map_size: longer side of the saved map array.
        batch_size: crops per forward pass.
    """

    grids: tuple[int, ...] = DEFAULT_GRIDS
    method: str = "auto"
    stride: int | None = None
    map_size: int = 256
    batch_size: int = 32


def _interp_matrix(n_out: int, scaled: int, window: int, stride: int, g: int) -> np.ndarray:
    """(n_out, g) linear-interpolation weights from window centres to output pixel centres."""
    u = (np.arange(n_out) + 0.5) * scaled / n_out  # pixel centre in scaled-image coordinates
    pos = np.clip((u - window / 2) / stride, 0, g - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, g - 1)
    frac = pos - lo
    m = np.zeros((n_out, g))
    m[np.arange(n_out), lo] += 1 - frac
    m[np.arange(n_out), hi] += frac
    return m


def _scaled_size(w: int, h: int, window: int, stride: int, g: int) -> tuple[int, int]:
    short = window + stride * (g - 1)
    if w <= h:
        long = short * h / w
        k = max(0, round((long - window) / stride))
        return short, window + stride * k
    long = short * w / h
    k = max(0, round((long - window) / stride))
    return window + stride * k, short


class MapModel:
    """A model prepared for maps: the scorer, its preprocessing and the window geometry."""

    def __init__(self, model: nn.Module, device="cpu", method: str = "auto", stride: int | None = None):
        self.model = model.eval()
        self.cfg = model.pretrained_cfg
        self.device = torch.device(device)
        self.window = int(self.cfg.input_size[1])
        fcn = fcn_for(model) if method in ("auto", "fcn") else None
        if method == "fcn" and fcn is None:
            from artmem.errors import ArtmemError

            raise ArtmemError(f"model {self.cfg.name!r} cannot be made fully convolutional; use --method crops")
        self.fcn = fcn
        self.method = "fcn" if fcn is not None else "crops"
        if fcn is not None:
            self.window, self.stride = fcn.window, fcn.stride
        else:
            self.stride = stride or max(1, self.window // 8)
        self.mean = torch.tensor(self.cfg.mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(self.cfg.std, dtype=torch.float32).view(3, 1, 1)

    def tensor(self, img: Image.Image, size: tuple[int, int]) -> torch.Tensor:
        from artmem.models.transforms import _INTERP

        arr = np.asarray(img.resize(size, _INTERP[self.cfg.interpolation]), dtype=np.float32) / 255.0
        t = torch.from_numpy(arr.transpose(2, 0, 1).copy())
        return (t - self.mean) / self.std

    @torch.inference_mode()
    def grid(self, x: torch.Tensor, batch_size: int = 32, naive: bool = False) -> torch.Tensor:
        """Window scores of one preprocessed image (3, H, W) at this model's window/stride."""
        from artmem.runtime import autocast

        x = x.to(self.device)
        with autocast(self.device):
            if naive:
                return naive_grid(self.model, x, self.window, self.stride).float().cpu()
            if self.fcn is not None:
                return self.fcn(x[None])[0].float().cpu()
            return crops_grid(self.model, x, self.window, self.stride, batch_size).cpu()

    @torch.inference_mode()
    def score(self, imgs: list[Image.Image]) -> np.ndarray:
        """The model's ordinary score of whole images (its own evaluation preprocessing)."""
        from artmem.models.preprocess import preprocess_for
        from artmem.runtime import autocast

        tf = preprocess_for(self.model)
        x = torch.stack([tf(im) for im in imgs]).to(self.device)
        with autocast(self.device):
            return _scores(self.model, x).float().cpu().numpy()


def bounded_map_input(img: Image.Image) -> tuple[Image.Image, tuple[int, int, int, int] | None]:
    """The image a map is computed on, and where the original lies in it (None: the image itself).

    The one bound on a map's work, by the image's real size and aspect (used by `artmem memorability
    map`, `artmem analyze` and the explorer alike): up to MAX_MAP_ASPECT an image is mapped as it
    is (its work is at most that of a 451 x 1804 px input); a more elongated one is shrunk to
    PAD_MAX_SIDE on its longer side and padded with its mean colour to MAX_MAP_ASPECT; beyond
    MAX_PAD_ASPECT it is refused. (A departure from Khosla et al., who map ordinary photographs.)

    Raises:
        ImageReadError: the image is too elongated to map (the explorer answers 422).
    """
    from artmem.errors import ImageReadError

    w, h = img.size
    aspect = max(w, h) / max(1, min(w, h))
    if aspect <= MAX_MAP_ASPECT:
        return img, None
    if aspect > MAX_PAD_ASPECT:
        raise ImageReadError(getattr(img, "filename", "") or "image",
                             f"too elongated for a memorability map ({w}x{h} px, {aspect:.0f}:1; maps are "
                             f"drawn up to {MAX_PAD_ASPECT:.0f}:1)")
    s = min(1.0, PAD_MAX_SIDE / max(w, h))
    sw, sh = max(1, round(w * s)), max(1, round(h * s))
    small = img.convert("RGB").resize((sw, sh), Image.BILINEAR) if s < 1.0 else img.convert("RGB")
    pw, ph = (sw, math.ceil(sw / MAX_MAP_ASPECT)) if sw >= sh else (math.ceil(sh / MAX_MAP_ASPECT), sh)
    pw, ph = max(pw, sw), max(ph, sh)
    mean = tuple(int(round(c)) for c in np.asarray(small, dtype=np.float64).reshape(-1, 3).mean(0))
    canvas = Image.new("RGB", (pw, ph), mean)
    x0, y0 = (pw - sw) // 2, (ph - sh) // 2
    canvas.paste(small, (x0, y0))
    return canvas, (x0, y0, x0 + sw, y0 + sh)


def _unpad(m: np.ndarray, padded_size: tuple[int, int], box: tuple[int, int, int, int],
           size: tuple[int, int], map_size: int) -> np.ndarray:
    """The part of a padded image's map over the original image, at that image's map size."""
    pw, ph = padded_size
    mh, mw = m.shape
    x0, x1 = math.floor(box[0] * mw / pw), math.ceil(box[2] * mw / pw)
    y0, y1 = math.floor(box[1] * mh / ph), math.ceil(box[3] * mh / ph)
    w, h = size
    s = map_size / max(w, h)
    return upsample(m[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)], (max(1, round(w * s)), max(1, round(h * s))))


def memorability_map(mm: MapModel, img: Image.Image, config: MapConfig | None = None,
                     naive: bool = False) -> np.ndarray:
    """The multi-scale memorability map of one image: float32 (h, w) in the model's score units,
    h x w = the image's aspect with the longer side `config.map_size`."""
    work, box = bounded_map_input(img)  # bounds the work by the image's real size and aspect
    if box is not None:
        return _unpad(memorability_map(mm, work, config, naive), work.size, box, img.size,
                      (config or MapConfig()).map_size)
    config = config or MapConfig()
    w, h = img.size
    s = config.map_size / max(w, h)
    ow, oh = max(1, round(w * s)), max(1, round(h * s))
    acc = np.zeros((oh, ow), dtype=np.float64)
    for g in config.grids:
        sw, sh = _scaled_size(w, h, mm.window, mm.stride, g)
        grid = mm.grid(mm.tensor(img, (sw, sh)), config.batch_size, naive=naive).numpy().astype(np.float64)
        gh, gw = grid.shape
        ry = _interp_matrix(oh, sh, mm.window, mm.stride, gh)
        rx = _interp_matrix(ow, sw, mm.window, mm.stride, gw)
        acc += ry @ grid @ rx.T
    return (acc / len(config.grids)).astype(np.float32)


def normalise(m: np.ndarray) -> np.ndarray:
    lo, hi = float(m.min()), float(m.max())
    return np.zeros_like(m) if hi - lo < 1e-12 else (m - lo) / (hi - lo)


def upsample(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a map to (w, h)."""
    return np.asarray(Image.fromarray(m.astype(np.float32), mode="F").resize(size, Image.BILINEAR))


def overlay(img: Image.Image, m: np.ndarray, alpha: float = 0.5, cmap: str = MAP_CMAP) -> Image.Image:
    """The image blended with the map normalised to 0-1 and coloured with `cmap`."""
    from matplotlib import colormaps

    heat = colormaps[cmap](upsample(normalise(m), img.size))[..., :3]
    base = np.asarray(img, dtype=np.float32) / 255.0
    return Image.fromarray(np.uint8(np.clip((1 - alpha) * base + alpha * heat, 0, 1) * 255))


# ----------------------------------------------------------------------------- renderings


def abstract_image(img: Image.Image, n_segments: int = 150, seed: int = 0) -> Image.Image:
    """A cartoon-like abstraction (DeCarlo & Santella's role in the paper): SLIC regions filled
    with their mean colour, softened."""
    from skimage.color import label2rgb
    from skimage.filters import gaussian
    from skimage.segmentation import slic

    arr = np.asarray(img, dtype=np.float32) / 255.0
    labels = slic(arr, n_segments=n_segments, compactness=10, start_label=0, channel_axis=-1)
    flat = label2rgb(labels, arr, kind="avg", bg_label=-1)
    flat = gaussian(flat, sigma=max(1.0, min(img.size) / 150), channel_axis=-1)
    return Image.fromarray(np.uint8(np.clip(flat, 0, 1) * 255))


def emphasis_masks(m: np.ndarray, size: tuple[int, int], seed: int = 0) -> dict[str, np.ndarray]:
    """Soft masks (1 = detail kept) covering half of the image each: "high" (where the map is
    high), "medium" (a random half, spatially coherent) and "low" (where the map is low)."""
    from scipy.ndimage import gaussian_filter

    w, h = size
    up = upsample(m, size)
    high = (up >= np.median(up)).astype(np.float32)
    rng = np.random.default_rng(seed)
    noise = gaussian_filter(rng.standard_normal((h, w)), sigma=max(2.0, min(w, h) / 8))
    medium = (noise >= np.median(noise)).astype(np.float32)
    soft = max(1.0, min(w, h) / 60)
    out = {"high": high, "medium": medium, "low": 1.0 - high}
    return {k: np.clip(gaussian_filter(v, soft), 0, 1) for k, v in out.items()}


def emphasis_renderings(img: Image.Image, m: np.ndarray, seed: int = 0) -> dict[str, Image.Image]:
    """The three renderings of Khosla fig. 7: detail where the mask is 1, abstraction elsewhere."""
    abstract = np.asarray(abstract_image(img, seed=seed), dtype=np.float32)
    orig = np.asarray(img, dtype=np.float32)
    out = {}
    for name, mask in emphasis_masks(m, img.size, seed).items():
        mix = mask[..., None] * orig + (1 - mask[..., None]) * abstract
        out[name] = Image.fromarray(np.uint8(np.clip(mix, 0, 255)))
    return out


# ----------------------------------------------------------------------------- batch job


def _display_image(img: Image.Image, max_side: int = 512) -> Image.Image:
    w, h = img.size
    s = min(1.0, max_side / max(w, h))
    return img if s == 1.0 else img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR)


def _rel_stem(rel: str) -> str:
    p = Path(rel)
    return (p.parent / p.stem).as_posix() if p.parent != Path(".") else p.stem


def map_images(
    items: list[tuple[str, str]],
    out: str | Path,
    model: str | nn.Module = "resmem",
    device: str = "auto",
    config: MapConfig | None = None,
    renderings: bool = True,
    seed: int = 0,
) -> tuple[list[Path], object]:
    """Draw maps for `items` = [(name, absolute path or URL)] into `out`.

    Writes per image `<name>.map.npy`, `<name>.overlay.png` and (with `renderings`)
    `<name>.high.png`, `.medium.png`, `.low.png`; then `maps.parquet` (path, map_npy, overlay_png
    relative to `out`, score, score_high/medium/low, method), `maps.json` and `errors.parquet`.
    A batch job (`artmem.memorability.processors.MemorabilityMaps` run by `run_job`): results are
    written in shards under OUT/shards, a rerun with the same settings skips the images already
    done, other settings start over.

    Returns:
        (written paths, the maps table).
    """
    from artmem.batch.api import run_job
    from artmem.batch.results import read_job_record
    from artmem.io import ensure_out_dir
    from artmem.memorability.processors import MemorabilityMaps, items_collection

    config = config or MapConfig()
    out = ensure_out_dir(out)
    name = str(model) if isinstance(model, (str, Path)) else model.pretrained_cfg.name
    proc = MemorabilityMaps(model, out, config, renderings, seed, {}, {})
    proc.setup(device)
    mm = proc.mm
    proc.settings = {"model": name, "method": mm.method, "window": mm.window, "stride": mm.stride,
                     "grids": list(config.grids), "map_size": config.map_size, "renderings": renderings,
                     "seed": seed}
    proc.order = {n: k for k, (n, _) in reversed(list(enumerate(items)))}
    proc.names = {src: n for n, src in reversed(items)}
    old = read_job_record(out)
    resume = old is None or old.processor == proc.spec()
    logger.info("maps with %s: %s evaluation, window %d px every %d px, grids %s",
                name, mm.method, mm.window, mm.stride, list(config.grids))
    # one image per step and no decoding workers: the map's own windows are the batch
    result = run_job(items_collection(items, "maps"), proc, out, device=device, batch_size=1, num_workers=0,
                     resume=resume, shard_size=4)
    table = result.table
    if len(result.errors):
        logger.warning("%d unreadable image(s) listed in %s", len(result.errors), out / "errors.parquet")
    if renderings and len(table):
        logger.info("renderings: mean score high %.3f / medium %.3f / low %.3f; high>medium>low for %.0f%%",
                    table["score_high"].mean(), table["score_medium"].mean(), table["score_low"].mean(),
                    100 * table["ordered"].mean())
    files = sorted({out / f for col in table.columns if col.endswith(("_npy", "_png")) for f in table[col]})
    return files + result.written, table


def collect_inputs(sources: list[str]) -> list[tuple[str, str]]:
    """IMAGES_OR_COLLECTION arguments -> [(name, absolute path)], names relative to the inputs'
    common folder (`open_collection`, the resolver every command uses)."""
    from artmem.data.collection import open_collection

    coll = open_collection(list(sources))
    return list(zip(coll.paths, coll.abs_paths(), strict=True))
