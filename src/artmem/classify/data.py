"""Labels, splits and data loaders of a classification run (over the resized-image cache).

Training images are read from `artmem.data.cache` (decoded and resized once, default 256 px
squares as in Cetinic 2018), then randomly cropped to the model's input size and mirrored;
validation and test images are centre-cropped. Normalisation comes from the model's PretrainedCfg.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from artmem.data.collection import Collection
from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)


@dataclass
class LabelledSplit:
    """A collection restricted to labelled images, with `split` and integer `target` columns.

    Attributes:
        table: columns path, label (as text), target (int), split (train/val/test).
        class_names: sorted class names; `target` indexes this list.
        collection: the filtered collection (same rows as `table`).
    """

    table: pd.DataFrame
    class_names: list[str]
    collection: Collection

    def part(self, name: str) -> pd.DataFrame:
        return self.table[self.table["split"] == name].reset_index(drop=True)


def default_cache_size(input_size: int) -> int:
    """256 for a 224 px network (the papers' resize-then-crop ratio), scaled for other sizes."""
    return max(input_size, int(round(input_size * 256 / 224)))


def prepare_split(coll: Collection, label: str, ratios=(0.7, 0.1, 0.2), seed: int = 0,
                  min_count: int = 1, max_per_class: int | None = None) -> LabelledSplit:
    """Filter classes and split (reusing an existing `split` column with train/val/test values)."""
    from artmem.data.splits import filter_classes, stratified_split

    if label not in coll.table.columns:
        cols = ", ".join(c for c in coll.table.columns if c != "path")
        raise ArtmemError(f"no column {label!r} in the collection (columns: {cols})")
    coll = filter_classes(coll, label, min_count=max(1, min_count), max_per_class=max_per_class, seed=seed)
    existing = coll.table["split"] if "split" in coll.table.columns else None
    if existing is not None and existing.isin(["train"]).any():
        logger.info("using the collection's existing split column")
        coll = coll.subset(existing.isin(["train", "val", "test"]).to_numpy())
    else:
        if existing is not None:
            coll = Collection(coll.table.drop(columns=["split"]), coll.root, coll.name, coll.meta)
        coll = stratified_split(coll, label, ratios=ratios, seed=seed)
    labels = coll.table[label].astype(str)
    class_names = sorted(labels.unique().tolist())
    if len(class_names) < 2:
        raise ArtmemError(f"column {label!r} has a single class ({class_names[0]}); nothing to classify")
    index = {c: i for i, c in enumerate(class_names)}
    table = pd.DataFrame({
        "path": coll.table["path"].astype(str).to_numpy(),
        "label": labels.to_numpy(),
        "target": labels.map(index).astype("int64").to_numpy(),
        "split": coll.table["split"].astype(str).to_numpy(),
    })
    if not (table["split"] == "train").any():
        raise ArtmemError("the split has no training images")
    return LabelledSplit(table, class_names, coll)


def input_crop(model) -> int:
    return int(model.pretrained_cfg.input_size[-1])


def open_image_cache(coll: Collection, cache_dir: str | Path, size: int):
    """Build (or reuse) the resized-image cache of the collection's images."""
    from artmem.data.cache import build_cache

    return build_cache(coll, Path(cache_dir) / f"images-{size}", size=size, progress=True)


class NormalizingLoader:
    """Wraps a DataLoader of uint8 batches: yields (normalised float batch on `device`, targets).

    Items stay uint8 (`CachedImageDataset(output="uint8")`): 4x less to pass between DataLoader
    workers and to the GPU, and normalisation is one vectorised op per batch on the device.
    """

    def __init__(self, loader, mean, std, device=None):
        self.loader = loader
        self.dataset = loader.dataset
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.mean, self.std = tuple(mean), tuple(std)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        from artmem.data.cache import batch_to_float

        for x, y in self.loader:
            yield batch_to_float(x.to(self.device, non_blocking=True), self.mean, self.std), y


def make_dataset(cache, part: pd.DataFrame, model, train: bool, augment: bool = True):
    """uint8 crops of the cached images: random crop + mirror for training, centre crop otherwise.

    The dataset carries `norm` = (mean, std) of the model, applied per batch by `make_loader`.
    """
    from artmem.data.cache import CachedImageDataset

    crop = min(input_crop(model), cache.size)
    ds = CachedImageDataset(cache, part["path"].tolist(), [int(t) for t in part["target"]], crop=crop,
                            random_crop=train and augment, hflip=train and augment, output="uint8")
    ds.norm = (tuple(model.pretrained_cfg.mean), tuple(model.pretrained_cfg.std))
    return ds


def make_loader(dataset, batch_size: int, shuffle: bool, num_workers: int | None = None,
                device=None) -> NormalizingLoader:
    """A loader of normalised float batches (on `device`) over `make_dataset` items."""
    pin = device is not None and getattr(device, "type", str(device)) == "cuda"
    if num_workers is None:
        from artmem.runtime import default_num_workers

        # Reading a crop from the memmap costs far less than passing it between processes
        # (measured: ~1000 img/s in-process vs ~350 img/s with a worker on 2 CPUs), so workers
        # only pay off to overlap loading with GPU compute on large collections.
        num_workers = default_num_workers() if pin and len(dataset) > 2000 else 0
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
        pin_memory=pin, drop_last=False, persistent_workers=False,
    )
    mean, std = dataset.norm
    return NormalizingLoader(loader, mean, std, device)


def feature_loader(features: np.ndarray, targets: np.ndarray, batch_size: int, shuffle: bool):
    ds = torch.utils.data.TensorDataset(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)),
                                        torch.from_numpy(np.asarray(targets, dtype=np.int64)))
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle)
