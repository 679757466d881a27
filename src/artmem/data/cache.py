"""Resized-image cache: decode every image once, read training epochs from a uint8 memmap.

Layout of a cache folder:

- `images.u8`: raw uint8 array (capacity, S, S, 3), memory-mapped (rows of unreadable images are 0).
- `index.parquet`: one row per source image: `path` (collection-relative), `source` (absolute
  path or URL), `row`, `ok`, `reason`, `mtime` (ns), `size` (bytes), `width`, `height` (original).
- `cache.json`: size, resize mode, capacity, format version.

`build_cache` is incremental: an image whose source path, mtime and size are unchanged is reused;
changed and new images are decoded (in parallel processes that write straight into the memmap),
and the index is saved every few seconds so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.data.collection import Collection, open_collection
from artmem.errors import ArtmemError, ImageReadError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
IMAGES_FILE = "images.u8"
INDEX_FILE = "index.parquet"
META_FILE = "cache.json"
RESIZE_MODES = ("squash", "crop")
INDEX_COLUMNS = ["path", "source", "row", "ok", "reason", "mtime", "size", "width", "height"]


def _stat(source: str) -> tuple[int, int]:
    """(mtime_ns, size) of a local file, (-1, -1) if missing; URLs are never considered changed."""
    if "://" in source and not source.startswith("file://"):
        return 0, 0
    try:
        st = os.stat(source)
    except OSError:
        return -1, -1
    return int(st.st_mtime_ns), int(st.st_size)


def resize_array(img, size: int, mode: str = "squash") -> np.ndarray:
    """PIL RGB image -> uint8 (size, size, 3): `squash` resizes to a square (as Cetinic 2018);
    `crop` resizes the shorter side to `size` and crops the centre."""
    from PIL import Image

    if mode == "crop":
        w, h = img.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=3.0)
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
    else:
        img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.asarray(img, dtype=np.uint8)


# -- worker side ---------------------------------------------------------------------------------

_worker_state: dict = {}


def _worker_init(images_file: str, shape: tuple, size: int, mode: str, max_pixels: int) -> None:
    from artmem.data.images import set_max_image_pixels

    set_max_image_pixels(max_pixels)
    _worker_state.update(file=images_file, shape=shape, size=size, mode=mode, mm=None)


def _process_one(task: tuple[int, str]) -> tuple[int, bool, str | None, int, int]:
    """Decode + resize one image and write it into its memmap row; returns (row, ok, reason, w, h)."""
    from artmem.data.images import decode_image, read_bytes

    row, source = task
    st = _worker_state
    if st.get("mm") is None:
        st["mm"] = np.memmap(st["file"], dtype=np.uint8, mode="r+", shape=st["shape"])
    try:
        img = decode_image(read_bytes(source), source, draft_size=st["size"])
        w, h = img.info.get("original_size", img.size)
        st["mm"][row] = resize_array(img, st["size"], st["mode"])
        return row, True, None, w, h
    except ImageReadError as exc:
        st["mm"][row] = 0
        return row, False, exc.reason, -1, -1
    except Exception as exc:  # never let one odd file take the build down
        st["mm"][row] = 0
        return row, False, f"cannot decode image ({type(exc).__name__}: {exc})", -1, -1


def _process_chunk(tasks: list[tuple[int, str]]) -> list[tuple]:
    out = [_process_one(t) for t in tasks]
    _worker_state["mm"].flush()
    return out


# -- the cache -----------------------------------------------------------------------------------


class ImageCache:
    """A built cache: `.images` (read-only memmap (N, S, S, 3) uint8) and `.index` (DataFrame)."""

    def __init__(self, cache_dir: str | Path):
        self.dir = Path(cache_dir)
        meta_file = self.dir / META_FILE
        if not meta_file.exists():
            raise ArtmemError(f"{self.dir}: not an image cache (no {META_FILE}; build it with `artmem collection cache`)")
        self.meta = json.loads(meta_file.read_text())
        self.size = int(self.meta["size"])
        self.mode = self.meta.get("resize", "squash")
        self.capacity = int(self.meta["capacity"])
        self.index = pd.read_parquet(self.dir / INDEX_FILE)
        self._by_path = dict(zip(self.index["path"], range(len(self.index)), strict=False))
        self._by_source = dict(zip(self.index["source"], range(len(self.index)), strict=False))
        self._images = None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.capacity, self.size, self.size, 3)

    @property
    def images(self) -> np.memmap:
        """Read-only memmap of all rows (opened lazily, once per process)."""
        if self._images is None:
            self._images = np.memmap(self.dir / IMAGES_FILE, dtype=np.uint8, mode="r", shape=self.shape)
        return self._images

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self):  # DataLoader workers reopen the memmap instead of pickling its data
        state = dict(self.__dict__)
        state["_images"] = None
        return state

    def _entry(self, path: str) -> int:
        i = self._by_path.get(path)
        if i is None:
            i = self._by_source.get(str(path))
        if i is None:
            raise KeyError(f"{path}: not in the image cache {self.dir}")
        return i

    def row_of(self, path: str) -> int:
        """Memmap row of a collection-relative path (or absolute source path).

        Raises:
            KeyError: path not cached.
            ImageReadError: the image was unreadable when the cache was built (with the reason).
        """
        entry = self.index.iloc[self._entry(path)]
        if not bool(entry["ok"]):
            raise ImageReadError(path, str(entry["reason"]))
        return int(entry["row"])

    def __contains__(self, path: str) -> bool:
        return path in self._by_path or str(path) in self._by_source

    def get(self, path: str) -> np.ndarray:
        """The cached (S, S, 3) uint8 image of `path`."""
        return np.array(self.images[self.row_of(path)])  # a writable copy

    @property
    def errors(self) -> pd.DataFrame:
        """Unreadable images: columns path, reason."""
        bad = self.index[~self.index["ok"].astype(bool)]
        return bad[["path", "reason"]].reset_index(drop=True)

    @property
    def files(self) -> list[Path]:
        return [self.dir / IMAGES_FILE, self.dir / INDEX_FILE, self.dir / META_FILE]


def _write_index(cache_dir: Path, index: pd.DataFrame) -> None:
    tmp = cache_dir / (INDEX_FILE + ".tmp")
    index.to_parquet(tmp, index=False)
    os.replace(tmp, cache_dir / INDEX_FILE)


def _ensure_capacity(images_file: Path, old_capacity: int, needed: int, size: int) -> int:
    """Grow the raw image file to hold `needed` rows (with headroom); returns the capacity."""
    if needed <= old_capacity and images_file.exists():
        return old_capacity
    capacity = max(needed, int(old_capacity * 1.25) if old_capacity else needed)
    with open(images_file, "ab") as fh:
        fh.truncate(capacity * size * size * 3)
    return capacity


def _empty_index() -> pd.DataFrame:
    return pd.DataFrame({
        "path": pd.Series([], dtype="str"), "source": pd.Series([], dtype="str"),
        "row": pd.Series([], dtype="int64"), "ok": pd.Series([], dtype="bool"),
        "reason": pd.Series([], dtype="str"), "mtime": pd.Series([], dtype="int64"),
        "size": pd.Series([], dtype="int64"), "width": pd.Series([], dtype="int64"),
        "height": pd.Series([], dtype="int64"),
    })


def build_cache(
    collection,
    cache_dir: str | Path,
    size: int = 256,
    workers: int | None = None,
    progress: bool = True,
    resize: str = "squash",
    save_every: float = 10.0,
) -> ImageCache:
    """Build or update the resized-image cache of a collection.

    Args:
        collection: a Collection, collection file or image folder.
        cache_dir: folder for images.u8 / index.parquet / cache.json.
        size: side of the square cached images (256 as in Cetinic 2018 / Cetinic 2019).
        workers: decoding processes (default: all cores, at most 8; 0 decodes in this process).
        progress: show a tqdm bar (img/s) on stderr.
        resize: "squash" (resize to SxS, the papers' choice) or "crop" (shorter side + centre crop).
        save_every: seconds between index checkpoints (resume after an interruption).

    Returns:
        The ImageCache. Unreadable images are in `cache.errors` (and in the index with `ok=False`).
    """
    from artmem.data.images import get_max_image_pixels

    coll: Collection = open_collection(collection)
    if resize not in RESIZE_MODES:
        raise ArtmemError(f"unknown resize mode {resize!r} (use {' or '.join(RESIZE_MODES)})")
    if size < 8:
        raise ArtmemError(f"cache size must be at least 8 pixels (got {size})")
    if len(coll) == 0:
        raise ArtmemError("the collection is empty: nothing to cache")
    cache_dir = Path(cache_dir)
    if cache_dir.exists() and not cache_dir.is_dir():
        raise ArtmemError(f"{cache_dir}: exists and is not a folder")
    cache_dir.mkdir(parents=True, exist_ok=True)
    images_file = cache_dir / IMAGES_FILE
    meta_file = cache_dir / META_FILE

    index, capacity = _empty_index(), 0
    if meta_file.exists() and (cache_dir / INDEX_FILE).exists() and images_file.exists():
        meta = json.loads(meta_file.read_text())
        if (meta.get("size"), meta.get("resize", "squash"), meta.get("version")) == (size, resize, FORMAT_VERSION):
            index = pd.read_parquet(cache_dir / INDEX_FILE)
            capacity = int(meta["capacity"])
        else:
            logger.warning("%s: cache was built with size=%s resize=%s; rebuilding at size=%d resize=%s",
                           cache_dir, meta.get("size"), meta.get("resize"), size, resize)
            images_file.unlink(missing_ok=True)

    # Match collection paths with existing entries (by source path: the same file may be cached
    # for several collections); new sources get new rows.
    rel_paths = coll.paths
    sources = coll.abs_paths()
    by_source = dict(zip(index["source"].tolist(), range(len(index)), strict=False))
    stats = [_stat(s) for s in sources]
    todo: list[int] = []  # index entries to (re)decode
    new_rows = []
    next_row = int(index["row"].max()) + 1 if len(index) else 0
    seen: set[str] = set()
    for rel, src, (mtime, fsize) in zip(rel_paths, sources, stats, strict=False):
        if src in seen:
            continue
        seen.add(src)
        i = by_source.get(src)
        if i is None:
            new_rows.append({"path": rel, "source": src, "row": next_row, "ok": False, "reason": "pending",
                             "mtime": -2, "size": -2, "width": -1, "height": -1})
            todo.append(len(index) + len(new_rows) - 1)
            next_row += 1
        else:
            if index.at[i, "path"] != rel:
                index.at[i, "path"] = rel
            if (int(index.at[i, "mtime"]), int(index.at[i, "size"])) != (mtime, fsize) or mtime == -1:
                todo.append(i)
    if new_rows:
        index = pd.concat([index, pd.DataFrame(new_rows)], ignore_index=True) if len(index) else pd.DataFrame(new_rows)
        index = index.astype({"row": "int64", "mtime": "int64", "size": "int64", "width": "int64", "height": "int64", "ok": "bool"})
    capacity = _ensure_capacity(images_file, capacity, next_row, size)
    meta = {"version": FORMAT_VERSION, "size": size, "resize": resize, "capacity": capacity,
            "dtype": "uint8", "layout": "NHWC", "collection": coll.name}
    meta_file.write_text(json.dumps(meta, indent=1) + "\n")
    reused = len(seen) - len(todo)
    logger.info("cache %s: %d images, %d reused, %d to decode (size %d, %s)",
                cache_dir, len(seen), reused, len(todo), size, resize)
    if todo:
        _run_tasks(index, todo, stats_by_source=dict(zip(sources, stats, strict=False)), images_file=images_file,
                   shape=(capacity, size, size, 3), size=size, mode=resize,
                   max_pixels=get_max_image_pixels(), workers=workers, progress=progress,
                   cache_dir=cache_dir, save_every=save_every)
    _write_index(cache_dir, index)
    cache = ImageCache(cache_dir)
    n_bad = int((~index["ok"]).sum())
    if n_bad:
        logger.warning("%d of %d images could not be cached (see cache.errors / index.parquet 'reason')",
                       n_bad, len(index))
    return cache


def _run_tasks(index, todo, stats_by_source, images_file, shape, size, mode, max_pixels, workers,
               progress, cache_dir, save_every) -> None:
    from tqdm.auto import tqdm

    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    tasks = [(int(index.at[i, "row"]), str(index.at[i, "source"])) for i in todo]
    entry_of_row = {int(index.at[i, "row"]): i for i in todo}
    chunk = max(1, min(32, len(tasks) // (4 * max(workers, 1)) or 1))
    chunks = [tasks[j:j + chunk] for j in range(0, len(tasks), chunk)]
    init_args = (str(images_file), shape, size, mode, max_pixels)
    bar = tqdm(total=len(tasks), unit="img", desc="caching", disable=not progress, smoothing=0.1)
    last_save = time.monotonic()

    def record(results):
        nonlocal last_save
        for row, ok, reason, w, h in results:
            i = entry_of_row[row]
            mtime, fsize = stats_by_source[index.at[i, "source"]]
            index.at[i, "ok"] = ok
            index.at[i, "reason"] = "" if ok else reason
            index.at[i, "mtime"] = mtime if ok or mtime != -1 else -1
            index.at[i, "size"] = fsize
            index.at[i, "width"] = w
            index.at[i, "height"] = h
        bar.update(len(results))
        if time.monotonic() - last_save > save_every:
            _write_index(cache_dir, index)
            last_save = time.monotonic()

    try:
        if workers <= 1 or len(tasks) < 16:
            _worker_init(*init_args)
            try:
                for c in chunks:
                    record(_process_chunk(c))
            finally:
                _worker_state.clear()
        else:
            with ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=init_args) as pool:
                for results in pool.map(_process_chunk, chunks):
                    record(results)
    finally:
        bar.close()
        _write_index(cache_dir, index)


def open_cache(cache_dir: str | Path) -> ImageCache:
    """Open a cache built by `build_cache` / `artmem collection cache`."""
    return ImageCache(cache_dir)


# -- torch dataset -------------------------------------------------------------------------------


def _torch_dataset_base():
    import torch.utils.data

    return torch.utils.data.Dataset


class CachedImageDataset(_torch_dataset_base()):
    """Torch dataset over a cache: (float CHW tensor in [0, 1] (or normalised), label).

    Crop and flip work on the uint8 array (no PIL round trip). Paths missing from the cache or
    unreadable at build time are skipped with a warning and listed in `.skipped` (path, reason).

    Args:
        cache: an ImageCache (or its folder).
        paths: collection-relative paths (or absolute sources) in the order wanted.
        labels: one label per path (ints become a long tensor); None returns the dataset index.
        transform: optional callable applied last to the tensor.
        crop: side of a square crop (e.g. 224 from a 256 cache); None keeps the whole image.
        random_crop: random crop position (training) instead of the centre (evaluation).
        hflip: random horizontal flip with probability 0.5.
        mean, std: per-channel normalisation applied after scaling to [0, 1].
        output: "float" (default) or "uint8": uint8 CHW tensors, 4x less memory traffic in the
            DataLoader; convert whole batches on the device with `batch_to_float` (mean/std and
            transform are then applied there, not here).
    """

    def __init__(self, cache: ImageCache | str | Path, paths: Sequence[str], labels: Sequence | None = None,
                 transform=None, crop: int | None = None, random_crop: bool = False, hflip: bool = False,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 output: str = "float"):
        import torch

        if output not in ("float", "uint8"):
            raise ArtmemError(f"output must be 'float' or 'uint8' (got {output!r})")
        self.output = output

        self.cache = cache if isinstance(cache, ImageCache) else ImageCache(cache)
        if labels is not None and len(labels) != len(paths):
            raise ArtmemError(f"{len(paths)} paths but {len(labels)} labels")
        if crop is not None and not 1 <= crop <= self.cache.size:
            raise ArtmemError(f"crop {crop} does not fit in the {self.cache.size}px cache")
        rows, keep, skipped = [], [], []
        for j, p in enumerate(paths):
            try:
                rows.append(self.cache.row_of(p))
                keep.append(j)
            except KeyError:
                skipped.append((p, "not in the image cache (rebuild it with `artmem collection cache`)"))
            except ImageReadError as exc:
                skipped.append((p, exc.reason))
        if skipped:
            logger.warning("%d of %d images skipped (unreadable or not cached)", len(skipped), len(paths))
        if not keep:
            raise ArtmemError("no usable image: every path is missing from the cache or unreadable")
        self.skipped = pd.DataFrame(skipped, columns=["path", "reason"])
        # numpy arrays, not lists of Python objects: forked DataLoader workers then share them
        # without copy-on-write page duplication (open_clip's note)
        self.paths = np.asarray([str(paths[j]) for j in keep], dtype=str)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = None if labels is None else _label_array([labels[j] for j in keep])
        self.transform = transform
        self.crop = crop
        self.random_crop = random_crop
        self.hflip = hflip
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.rows)

    def array(self, i: int, draw: tuple[int, int, bool] | None = None) -> np.ndarray:
        """The uint8 HWC array of item i after crop/flip.

        Args:
            i: item index.
            draw: (top, left, flip) for the random crop/flip; drawn from torch's RNG when None.
        """
        arr = self.cache.images[self.rows[i]]
        s = self.cache.size
        c = self.crop if self.crop is not None else s
        if draw is None:
            draw = self._draw(s - c)
        top, left, flip = draw
        if c < s:
            if not self.random_crop:
                top = left = (s - c) // 2
            arr = arr[top:top + c, left:left + c]
        if self.hflip and flip:
            arr = arr[:, ::-1]
        return np.array(arr, dtype=np.uint8, order="C")  # a writable copy (the memmap is read-only)

    def _draw(self, span: int) -> tuple[int, int, bool]:
        # torch's RNG: DataLoader seeds each worker differently and `torch.manual_seed` makes
        # the augmentation of an epoch reproducible
        if not (self.random_crop or self.hflip):
            return 0, 0, False
        import torch

        r = torch.randint(0, 1 << 30, (3,)).tolist()
        return r[0] % (span + 1), r[1] % (span + 1), bool(r[2] & 1)

    def __getitem__(self, i: int):
        import torch

        x = torch.from_numpy(self.array(i)).permute(2, 0, 1)
        if self.output == "float":
            x = x.float().div_(255.0)
            if self.mean is not None:
                x = x.sub_(self.mean)
            if self.std is not None:
                x = x.div_(self.std)
            if self.transform is not None:
                x = self.transform(x)
        if self.labels is None:
            return x, i
        y = self.labels[i]
        if isinstance(y, (int, np.integer)):
            return x, torch.tensor(int(y), dtype=torch.long)
        if isinstance(y, (float, np.floating)):
            return x, torch.tensor(float(y), dtype=torch.float32)
        return x, (str(y) if isinstance(y, str) else y)


def _label_array(values: list) -> np.ndarray | list:
    """Labels as a numpy array (int64, float32 or fixed-width str) when they are homogeneous."""
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.int64)
    if all(isinstance(v, (int, float, np.integer, np.floating)) for v in values):
        return np.asarray(values, dtype=np.float32)
    if all(isinstance(v, str) for v in values):
        return np.asarray(values, dtype=str)
    return list(values)


def batch_to_float(x, mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
    """uint8 (B, 3, H, W) batch (from `output="uint8"`) -> float in [0, 1], optionally normalised.

    Call it after moving the batch to the device: the conversion then runs there.
    """
    import torch

    x = x.float().div_(255.0)
    if mean is not None:
        x = x.sub_(torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1))
    if std is not None:
        x = x.div_(torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1))
    return x
