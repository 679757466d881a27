"""Class subsets and reproducible stratified splits, as in Cetinic et al. 2018.

- `filter_classes`: keep classes with at least N images (optionally cap each class, seeded).
- `stratified_split`: a `split` column (train/val/test, default 70/10/20) that keeps the class
  proportions in every split and is reproducible from a seed.
- `kfold_assign`: a `fold` column (0..k-1), stratified when a label is given.

Each class is shuffled with its own seed derived from (seed, class name), so adding or removing
one class never reshuffles the others.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from artmem.data.collection import Collection
from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")


def _check_label(coll: Collection, label: str) -> pd.Series:
    if label not in coll.table.columns:
        cols = ", ".join(c for c in coll.table.columns if c != "path") or "(none)"
        raise ArtmemError(f"no column {label!r} in the collection (columns: {cols})")
    return coll.table[label]


def _class_rng(seed: int, cls: object) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(str(cls).encode("utf-8"))])


def _groups(labels: pd.Series) -> dict[object, np.ndarray]:
    """Class -> row positions (in table order), classes sorted by name; missing labels left out."""
    valid = labels.notna().to_numpy()
    pos = np.flatnonzero(valid)
    values = labels.to_numpy()[valid]
    groups: dict[object, list[int]] = {}
    for p, v in zip(pos.tolist(), values.tolist(), strict=False):
        groups.setdefault(v, []).append(p)
    return {k: np.asarray(groups[k]) for k in sorted(groups, key=str)}


def filter_classes(
    coll: Collection,
    label: str,
    min_count: int = 1,
    max_per_class: int | None = None,
    seed: int = 0,
) -> Collection:
    """Keep images whose `label` class has at least `min_count` images; optionally cap each class.

    Rows with a missing label are dropped. When `max_per_class` is set, a seeded random sample of
    that many images is kept from each larger class. Table order is preserved.

    Args:
        coll: the collection.
        label: the class column (e.g. "style").
        min_count: the smallest class size kept (Cetinic 2018 uses e.g. 500 for artists).
        max_per_class: cap on images per class (None: no cap).
        seed: seed for the capping sample.

    Raises:
        ArtmemError: unknown column, or no class left.
    """
    labels = _check_label(coll, label)
    if min_count < 1:
        raise ArtmemError(f"min_count must be >= 1 (got {min_count})")
    if max_per_class is not None and max_per_class < 1:
        raise ArtmemError(f"max_per_class must be >= 1 (got {max_per_class})")
    groups = _groups(labels)
    keep: list[np.ndarray] = []
    dropped = []
    for cls, pos in groups.items():
        if len(pos) < min_count:
            dropped.append(f"{cls} ({len(pos)})")
            continue
        if max_per_class is not None and len(pos) > max_per_class:
            pos = np.sort(_class_rng(seed, cls).choice(pos, size=max_per_class, replace=False))
        keep.append(pos)
    if not keep:
        raise ArtmemError(
            f"no class of {label!r} has at least {min_count} images "
            f"(largest: {max((len(p) for p in groups.values()), default=0)})"
        )
    n_missing = int(labels.isna().sum())
    if n_missing:
        logger.warning("%d images have no %s and were left out", n_missing, label)
    if dropped:
        logger.info("dropped %d classes of %s with fewer than %d images: %s",
                    len(dropped), label, min_count, ", ".join(dropped[:20]) + (" ..." if len(dropped) > 20 else ""))
    rows = np.sort(np.concatenate(keep))
    out = coll.subset(rows)
    out.meta = {**coll.meta, "filter": {"label": label, "min_count": min_count,
                                        "max_per_class": max_per_class, "seed": seed}}
    return out


def _allocate(n: int, ratios: np.ndarray) -> np.ndarray:
    """Split `n` items by `ratios` (largest remainder), at least one item per nonzero ratio."""
    raw = n * ratios
    counts = np.floor(raw).astype(int)
    rest = n - counts.sum()
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[:rest]] += 1
    for i in np.flatnonzero((ratios > 0) & (counts == 0)):
        donor = int(np.argmax(counts))
        counts[donor] -= 1
        counts[i] += 1
    return counts


def _parse_ratios(ratios: Sequence[float]) -> np.ndarray:
    r = np.asarray(list(ratios), dtype=float)
    if r.shape != (3,) or np.any(r < 0) or r.sum() <= 0 or r[0] <= 0:
        raise ArtmemError(f"ratios must be three non-negative numbers train/val/test with train > 0 (got {list(ratios)})")
    return r / r.sum()


def stratified_split(
    coll: Collection,
    label: str,
    ratios: Sequence[float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    column: str = "split",
) -> Collection:
    """Add a `split` column (train/val/test) keeping the class proportions of `label` in each split.

    Reproducible: the same collection, ratios and seed always give the same split. Images with a
    missing label are left out (with a warning).

    Args:
        coll: the collection.
        label: class column to stratify on.
        ratios: train/val/test fractions (normalised; a zero ratio gives an empty split).
        seed: random seed.
        column: name of the new column.

    Raises:
        ArtmemError: unknown column, bad ratios, or a class with fewer images than non-empty
            splits (the message names every such class and its size).
    """
    labels = _check_label(coll, label)
    r = _parse_ratios(ratios)
    need = int((r > 0).sum())
    groups = _groups(labels)
    if not groups:
        raise ArtmemError(f"column {label!r} has no values to split on")
    small = [f"{cls!s} ({len(pos)})" for cls, pos in groups.items() if len(pos) < need]
    if small:
        raise ArtmemError(
            f"class{'es' if len(small) > 1 else ''} of {label!r} too small to split into "
            f"{need} parts: {', '.join(small)}; drop them first (e.g. --min-count {need * 5})"
        )
    split = np.full(len(coll), None, dtype=object)
    for cls, pos in groups.items():
        shuffled = _class_rng(seed, cls).permutation(pos)
        counts = _allocate(len(pos), r)
        start = 0
        for name, c in zip(SPLIT_NAMES, counts, strict=False):
            split[shuffled[start:start + c]] = name
            start += c
    n_missing = int(labels.isna().sum())
    out = coll.subset(labels.notna().to_numpy()) if n_missing else coll.subset(slice(None))
    if n_missing:
        logger.warning("%d images have no %s and were left out of the split", n_missing, label)
    out.table[column] = pd.Series(split[labels.notna().to_numpy()], dtype="str")
    out.meta = {**coll.meta, "split": {"label": label, "ratios": r.round(6).tolist(), "seed": seed}}
    return out


def kfold_assign(
    coll: Collection,
    k: int = 5,
    label: str | None = None,
    seed: int = 0,
    column: str = "fold",
) -> Collection:
    """Add a `fold` column (0..k-1): random folds of near-equal size, stratified by `label` if given.

    With a label, each class is spread evenly over the folds (fold sizes still differ by at most
    one overall); images with a missing label are assigned as one more group.
    """
    if k < 2:
        raise ArtmemError(f"k must be >= 2 (got {k})")
    n = len(coll)
    if n < k:
        raise ArtmemError(f"cannot make {k} folds from {n} images")
    fold = np.empty(n, dtype=np.int64)
    if label is None:
        perm = np.random.default_rng(seed).permutation(n)
        fold[perm] = np.arange(n) % k
    else:
        labels = _check_label(coll, label)
        groups = _groups(labels)
        missing = np.flatnonzero(labels.isna().to_numpy())
        if len(missing):
            groups["__missing__"] = missing
        small = [str(c) for c, p in groups.items() if len(p) < k]
        if small:
            logger.warning("classes of %s with fewer than %d images are missing from some folds: %s",
                           label, k, ", ".join(small[:20]))
        offset = 0
        for cls, pos in groups.items():
            shuffled = _class_rng(seed, cls).permutation(pos)
            fold[shuffled] = (offset + np.arange(len(pos))) % k
            offset = (offset + len(pos)) % k
    out = coll.subset(slice(None))
    out.table[column] = fold
    out.meta = {**coll.meta, "folds": {"k": k, "label": label, "seed": seed}}
    return out


def split_counts(coll: Collection, label: str, column: str = "split") -> pd.DataFrame:
    """Images per class and split (rows: classes; columns: train/val/test/total)."""
    table = pd.crosstab(coll.table[label], coll.table[column])
    table = table.reindex(columns=[c for c in SPLIT_NAMES if c in table.columns])
    table["total"] = table.sum(axis=1)
    return table
