"""Training throughput: resized-image cache vs decoding JPEGs every epoch; cached features vs frozen backbone.

1. One training epoch (random 224 crop + mirror, forward, backward, SGD step) reading from the
   uint8 resized cache (`artmem.data.cache`) vs a plain torchvision `ImageFolder` pipeline that
   decodes and resizes every JPEG each epoch (target: >= 3x images/s). The same small model trains
   in both (default `probe`: 8x8 average pool + linear, far cheaper than decoding, standing in for a GPU
   where the input pipeline is the bottleneck; `--model tiny_test` or `efficientnet_lite0` trains a
   real network on this CPU, where compute dominates).
   The loaders alone (no model) are timed too.
2. One head-only epoch on cached backbone features vs the same epoch running the frozen backbone
   (default `efficientnet_lite0`) forward on every image (target: >= 20x).

Usage: python bench/train_throughput.py [--n-images 300] [--min-size 256] [--max-size 512]
       [--model probe|tiny_test|efficientnet_lite0] [--backbone efficientnet_lite0] [--batch-size 32] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


def make_jpegs(root: Path, n: int, min_size: int, max_size: int, seed: int = 0) -> Path:
    """n synthetic paintings (4 styles) as JPEGs of random sizes in an ImageFolder layout."""
    from PIL import Image

    from artmem.data.synthetic import make_synthetic_collection

    coll_dir = root / "jpegs"
    if (coll_dir / "collection.parquet").exists():
        return coll_dir
    per_class = max(1, n // 8)
    coll = make_synthetic_collection(coll_dir, n_styles=4, n_genres=2, per_class=per_class,
                                     size=max_size, seed=seed)
    rng = np.random.default_rng(seed)
    for p in coll.abs_paths():  # vary sizes and aspect ratios like a real collection
        img = Image.open(p).convert("RGB")
        w, h = (int(v) for v in rng.integers(min_size, max_size + 1, 2))
        img.resize((w, h), Image.BILINEAR).save(p, quality=90)
    return coll_dir


def timed_epoch(loader, model=None, optimizer=None, device="cpu") -> tuple[float, int]:
    n, t0 = 0, time.perf_counter()
    for x, y in loader:
        if model is not None:
            loss = nn.functional.cross_entropy(model(x.to(device)), y.to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        n += len(y)
    return time.perf_counter() - t0, n


class ProbeNet(nn.Module):
    """A model far cheaper than decoding (8x8 average pool + linear): the input pipeline is the
    bottleneck, as when a GPU trains the network. Use --model tiny_test/efficientnet_lite0 for CPU compute."""

    def __init__(self, num_classes: int):
        super().__init__()
        from artmem.models.registry import PretrainedCfg

        self.net = nn.Sequential(nn.AvgPool2d(8), nn.Flatten(), nn.Linear(3 * 28 * 28, num_classes))
        self.pretrained_cfg = PretrainedCfg(name="probe", task="test", output="logits")

    def forward(self, x):
        return self.net(x)


def bench_pipeline(coll_dir: Path, cache_root: Path, args) -> dict:
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    from artmem.classify.data import make_dataset, make_loader
    from artmem.data.cache import build_cache
    from artmem.data.collection import Collection
    from artmem.models.factory import create_model

    coll = Collection.load(coll_dir / "collection.parquet")
    classes = sorted(coll.table["style"].unique())
    targets = coll.table["style"].map({c: i for i, c in enumerate(classes)})
    t0 = time.perf_counter()
    cache = build_cache(coll, cache_root / "images-256", size=256, progress=False)
    cache_build = time.perf_counter() - t0

    def model_and_opt():
        torch.manual_seed(0)
        if args.model == "probe":
            m = ProbeNet(len(classes))
        else:
            m = create_model(args.model, num_classes=len(classes)).train()
            m.pretrained_cfg = m.pretrained_cfg.replace(input_size=(3, 224, 224))
        return m, torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)

    m, _ = model_and_opt()
    cfg = m.pretrained_cfg
    table = coll.table.assign(target=targets)
    cached_ds = make_dataset(cache, table, m, train=True)
    tf = T.Compose([T.Resize((256, 256)), T.RandomCrop(224), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(cfg.mean, cfg.std)])
    folder_ds = ImageFolder(coll_dir / "images" if (coll_dir / "images").exists() else coll_dir, tf)

    def loader(ds, workers):
        if ds is cached_ds:  # uint8 crops, normalised per batch (what `artmem train` uses)
            return make_loader(ds, args.batch_size, shuffle=True, num_workers=workers)
        return torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True,
                                           num_workers=workers)

    out = {"cache_build_s": cache_build, "images": len(cached_ds)}
    # Each pipeline in its best worker setting among those tried (reported per setting too).
    for name, ds, worker_options in (("cache", cached_ds, sorted({args.cache_workers})),
                                     ("imagefolder", folder_ds, sorted({0, args.workers}))):
        best = 0.0
        for w in worker_options:
            timed_epoch(loader(ds, w))  # warm-up: page cache, worker start-up
            t, n = timed_epoch(loader(ds, w))
            out[f"{name}_loader_img_s_workers{w}"] = n / t
            if n / t > best:
                best, out[f"{name}_workers"] = n / t, w
        out[f"{name}_loader_img_s"] = best
        m, opt = model_and_opt()
        t, n = timed_epoch(loader(ds, out[f"{name}_workers"]), m, opt)
        out[f"{name}_train_img_s"] = n / t
    return out


def bench_features(coll_dir: Path, cache_root: Path, args) -> dict:
    from artmem.classify.data import feature_loader, make_dataset, make_loader
    from artmem.classify.frozen import HeadOnly
    from artmem.data.cache import build_cache
    from artmem.data.collection import Collection
    from artmem.models.factory import create_model
    from artmem.models.scenarios import apply_scenario

    coll = Collection.load(coll_dir / "collection.parquet")
    classes = sorted(coll.table["style"].unique())
    table = coll.table.assign(target=coll.table["style"].map({c: i for i, c in enumerate(classes)}))
    table = table.sample(n=min(len(table), args.backbone_images), random_state=0)
    torch.manual_seed(0)
    model = create_model(args.backbone, num_classes=len(classes))
    apply_scenario(model, "only_last")
    size = int(round(model.pretrained_cfg.input_size[-1] * 256 / 224))
    cache = build_cache(coll, cache_root / f"images-{size}", size=size, progress=False)
    ds = make_dataset(cache, table, model, train=False)
    loader = make_loader(ds, args.batch_size, shuffle=True, num_workers=args.cache_workers)
    head = HeadOnly(model)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)

    # (a) frozen backbone forward on every image, every epoch (= the one-off extraction cost too)
    model.eval()
    t0, n = time.perf_counter(), 0
    feats, labels = [], []
    for x, y in loader:
        with torch.no_grad():
            f = model.forward_features(x)
        loss = nn.functional.cross_entropy(head(f), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += len(y)
        feats.append(f.numpy())
        labels.append(y.numpy())
    full = time.perf_counter() - t0
    extract = full
    # (b) an epoch on the cached vectors
    floader = feature_loader(np.concatenate(feats), np.concatenate(labels), args.batch_size, shuffle=True)
    timed_epoch(floader, head, opt)  # warm-up
    t, m = timed_epoch(floader, head, opt)
    return {"backbone": args.backbone, "backbone_images": n, "frozen_forward_epoch_s": full,
            "frozen_forward_img_s": n / full, "feature_extraction_once_s": extract,
            "cached_feature_epoch_s": t, "cached_feature_img_s": m / t}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-images", type=int, default=304)
    p.add_argument("--backbone-images", type=int, default=160,
                   help="images run through the frozen backbone in part 2 (CPU forward is slow)")
    p.add_argument("--min-size", type=int, default=256)
    p.add_argument("--max-size", type=int, default=512)
    p.add_argument("--model", default="probe",
                   help="network trained in part 1: probe (pipeline-bound, as on a GPU) or a zoo name")
    p.add_argument("--backbone", default="efficientnet_lite0", help="frozen backbone of part 2")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=min(4, max(0, (os.cpu_count() or 1) - 1)),
                   help="DataLoader workers tried for ImageFolder (besides 0)")
    p.add_argument("--cache-workers", type=int, default=0,
                   help="DataLoader workers for the cache (0: reading a memmap needs no workers)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (default 1: on a small shared machine more threads measure "
                   "contention, not the pipeline; 0 keeps torch's default)")
    p.add_argument("--work-dir", default=None, help="keep the JPEGs and caches here (default: temp)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = None
    if args.work_dir:
        work = Path(args.work_dir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="artmem-bench-")
        work = Path(tmp.name)
    coll_dir = make_jpegs(work, args.n_images, args.min_size, args.max_size)
    res = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "workers": args.workers, "batch_size": args.batch_size, "model": args.model,
           "jpeg_sizes": f"{args.min_size}-{args.max_size}px"}
    res.update(bench_pipeline(coll_dir, work / "cache", args))
    res["train_speedup"] = res["cache_train_img_s"] / res["imagefolder_train_img_s"]
    res["loader_speedup"] = res["cache_loader_img_s"] / res["imagefolder_loader_img_s"]
    res.update(bench_features(coll_dir, work / "cache", args))
    res["feature_epoch_speedup"] = res["frozen_forward_epoch_s"] / res["cached_feature_epoch_s"]
    print(f"images: {res['images']} JPEGs of {res['jpeg_sizes']}, batch {args.batch_size}, "
          f"{res['torch_threads']} torch threads, {os.cpu_count()} CPUs; DataLoader workers: cache "
          f"{res['cache_workers']}, ImageFolder {res['imagefolder_workers']} (best of 0/{args.workers})")
    print(f"resized cache built once in {res['cache_build_s']:.1f} s")
    print(f"[1] loader only     : cache {res['cache_loader_img_s']:8.1f} img/s | ImageFolder "
          f"{res['imagefolder_loader_img_s']:8.1f} img/s | x{res['loader_speedup']:.1f}")
    print(f"[1] train epoch ({args.model}): cache {res['cache_train_img_s']:8.1f} img/s | ImageFolder "
          f"{res['imagefolder_train_img_s']:8.1f} img/s | x{res['train_speedup']:.1f}  (target >= 3x)")
    print(f"[2] head epoch ({args.backbone}): frozen forward {res['frozen_forward_epoch_s']:.2f} s | "
          f"cached features {res['cached_feature_epoch_s'] * 1000:.1f} ms | "
          f"{res['backbone_images']} images | "
          f"x{res['feature_epoch_speedup']:.0f}  (target >= 20x; one-off extraction "
          f"{res['feature_extraction_once_s']:.1f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    if tmp is not None:
        tmp.cleanup()
    return res


if __name__ == "__main__":
    main()
