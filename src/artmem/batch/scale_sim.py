"""Scale simulation for the batch engines: a large synthetic collection of real images, and a meter
of this process's memory.

`build_scale_collection` makes a collection of `n` distinct relative paths that are symbolic links
to a few hundred small real images (crops of the photographs and paintings bundled with the
installed packages, JPEG at 64 px), so every row decodes a real JPEG while the folder stays small.
`PeakRSS` samples the resident memory of this process in a thread.

Used by `bench/ray_driver_memory.py` and the Ray engine's tests.
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import pandas as pd

from artmem.errors import ArtmemError


def write_distinct_images(folder: Path, count: int = 300, size: int = 64, seed: int = 0) -> list[str]:
    """`count` JPEGs cut from the bundled real images (random crops, long side `size` px)."""
    from PIL import Image

    from artmem.data.samples import real_photos

    sources = sorted(real_photos())
    if not sources:
        raise ArtmemError("no bundled sample images found (scikit-image / scikit-learn data)")
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    opened = {}
    for i in range(count):
        src = sources[i % len(sources)]
        if src not in opened:
            with Image.open(src) as im:
                opened[src] = im.convert("RGB")
        im = opened[src]
        w, h = im.size
        cw, ch = int(w * rng.uniform(0.3, 1.0)), int(h * rng.uniform(0.3, 1.0))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        crop = im.crop((x, y, x + cw, y + ch))
        scale = size / max(crop.size)
        crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))),
                           Image.Resampling.BICUBIC)
        name = f"img_{i:04d}.jpg"
        crop.save(folder / name, quality=90)
        names.append(name)
    return names


def build_scale_collection(root: Path, n: int, distinct: int = 300, size: int = 64, per_dir: int = 1000):
    """A Collection of `n` rows under `root`: `links/DDDD/NNNNNNNN.jpg` -> one of `distinct` images.

    Returns:
        artmem.data.collection.Collection named "scale-sim", paths sorted.
    """
    from artmem.data.collection import Collection

    root = Path(root)
    images = write_distinct_images(root / "images", distinct, size)
    paths = []
    for i in range(n):
        rel = f"links/{i // per_dir:04d}/{i:08d}.jpg"
        link = root / rel
        if i % per_dir == 0:
            link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            os.symlink(root / "images" / images[i % len(images)], link)
        paths.append(rel)
    return Collection(pd.DataFrame({"path": paths}), str(root), "scale-sim")


class PeakRSS:
    """Memory of this process, sampled every `interval` s in a daemon thread (a context manager).

    `peak` is the highest resident set size (RSS); `peak_private` the highest RSS less its shared
    pages, i.e. this process's own heap: Ray maps its shared-memory object store into the driver,
    and the pages of it the driver touches count in RSS though they belong to the object store.
    """

    def __init__(self, interval: float = 0.05):
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self.peak = self.peak_private = 0
        self.sample()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def sample(self) -> tuple[int, int]:
        """(RSS, private RSS) now; updates the peaks."""
        info = self._proc.memory_info()
        rss, private = int(info.rss), int(info.rss - getattr(info, "shared", 0))
        self.peak = max(self.peak, rss)
        self.peak_private = max(self.peak_private, private)
        return rss, private

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
