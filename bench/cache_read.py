"""Images/s of one training epoch read from the resized-image cache vs decoding the JPEGs each time.

Both pipelines deliver the same thing (a random 224 crop + horizontal flip of the 256x256 resized
image, as a float CHW tensor) through a torch DataLoader with the same batch size and workers:

- cache:   `CachedImageDataset` over the uint8 memmap built by `build_cache` (decoded once);
- decode:  PIL open + RGB + resize to 256x256 (bilinear) + the same crop/flip, every epoch
           (the usual torchvision ImageFolder pipeline);
- decode+draft: the same with Pillow's JPEG draft mode (reduced-size DCT decoding), a stronger
           baseline that many pipelines do not use.

By default ~400 synthetic 512 px JPEGs are painted into a temporary folder; `--collection` uses
your own images instead. Prints the rates and the cache/decode ratio (target >= 5x).

    .venv/bin/python bench/cache_read.py [--n 400] [--image-size 512] [--loader-workers 0]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from artmem.data.cache import CachedImageDataset, build_cache  # noqa: E402
from artmem.data.collection import open_collection  # noqa: E402
from artmem.data.synthetic import make_synthetic_collection  # noqa: E402


class DecodeDataset(torch.utils.data.Dataset):
    """Baseline: decode + resize the file every time, then the same crop/flip as the cache dataset."""

    def __init__(self, files, size=256, crop=224, draft=False, output="float"):
        self.files, self.size, self.crop, self.draft, self.output = list(files), size, crop, draft, output

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,)).item()))
        with Image.open(self.files[i]) as img:
            if self.draft:
                img.draft("RGB", (self.size, self.size))
            arr = np.asarray(img.convert("RGB").resize((self.size, self.size), Image.Resampling.BILINEAR))
        s, c = self.size, self.crop
        top, left = int(rng.integers(0, s - c + 1)), int(rng.integers(0, s - c + 1))
        arr = arr[top:top + c, left:left + c]
        if rng.random() < 0.5:
            arr = arr[:, ::-1]
        x = torch.from_numpy(np.array(arr)).permute(2, 0, 1)
        return (x.float().div_(255.0) if self.output == "float" else x), i


def epoch_rate(dataset, batch_size, workers, epochs) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         persistent_workers=workers > 0)
    best = 0.0
    for _ in range(epochs):
        t0 = time.perf_counter()
        n = 0
        for x, _ in loader:
            n += len(x)
        best = max(best, n / (time.perf_counter() - t0))
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=400, help="synthetic JPEGs to generate (default 400)")
    p.add_argument("--image-size", type=int, default=512, help="side of the synthetic JPEGs (default 512)")
    p.add_argument("--collection", help="use this collection/folder instead of synthetic images")
    p.add_argument("--cache-size", type=int, default=256)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--loader-workers", type=int, default=0, help="DataLoader workers for both pipelines")
    p.add_argument("--build-workers", type=int, default=None, help="processes for building the cache")
    p.add_argument("--epochs", type=int, default=2, help="epochs per pipeline (best reported)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory(prefix="artmem-bench-") as tmp:
        tmp = Path(tmp)
        if args.collection:
            coll = open_collection(args.collection)
        else:
            n_styles, n_genres = 5, 4
            per_class = max(1, -(-args.n // (n_styles * n_genres)))
            t0 = time.perf_counter()
            coll = make_synthetic_collection(tmp / "images", n_styles=n_styles, n_genres=n_genres,
                                             per_class=per_class, size=args.image_size, seed=0)
            print(f"painted {len(coll)} synthetic {args.image_size}px JPEGs in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr)
        files = coll.abs_paths()
        mb = sum(os.path.getsize(f) for f in files) / 1e6
        t0 = time.perf_counter()
        cache = build_cache(coll, tmp / "cache", size=args.cache_size, workers=args.build_workers, progress=False)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        build_cache(coll, tmp / "cache", size=args.cache_size, workers=args.build_workers, progress=False)
        reuse_s = time.perf_counter() - t0

        common = dict(batch_size=args.batch_size, workers=args.loader_workers, epochs=args.epochs)
        rates = {}
        for output in ("float", "uint8"):
            cached = CachedImageDataset(cache, coll.paths, crop=args.crop, random_crop=True, hflip=True,
                                        output=output)
            rates[output] = (
                epoch_rate(cached, **common),
                epoch_rate(DecodeDataset(files, args.cache_size, args.crop, output=output), **common),
                epoch_rate(DecodeDataset(files, args.cache_size, args.crop, draft=True, output=output), **common),
            )

    print(f"images: {len(files)} ({mb:.1f} MB of JPEG), cache {args.cache_size}px, crop {args.crop} + flip, "
          f"batch {args.batch_size}, loader workers {args.loader_workers}, torch threads 1")
    print(f"cache build: {build_s:.2f} s ({len(files) / build_s:.0f} img/s); rebuild when unchanged: {reuse_s:.2f} s")
    for output, (r_cache, r_decode, r_draft) in rates.items():
        what = "float32 CHW in [0,1]" if output == "float" else "uint8 CHW, converted on the device"
        print(f"-- batches of {what}")
        print(f"epoch from cache:                 {r_cache:8.0f} img/s")
        print(f"epoch decode+resize (PIL):        {r_decode:8.0f} img/s")
        print(f"epoch decode+resize (PIL draft):  {r_draft:8.0f} img/s")
        print(f"ratio cache / decode:             {r_cache / r_decode:8.1f}x  (target >= 5x)")
        print(f"ratio cache / decode+draft:       {r_cache / r_draft:8.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
