"""LaMem (Khosla et al. 2015): `images/%08d.jpg` and `splits/{train,val,test}_{1..5}.txt`.

Each split line is `name score` (hit rate, 6 decimals, no header). The collection holds the
images of one split set (`split_id` 1-5) with columns `path`, `score`, `split`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from artmem.data.readers.common import ReadResult, finish, keep_existing, read_text
from artmem.errors import ArtmemError, CollectionError

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def read_lamem_split(path: Path) -> pd.DataFrame:
    """One split file -> DataFrame(name, score)."""
    names, scores = [], []
    for n, line in enumerate(read_text(path).splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise CollectionError(path, f"line {n}: expected `name score`, got {line!r}")
        try:
            scores.append(float(parts[1]))
        except ValueError:
            raise CollectionError(path, f"line {n}: score {parts[1]!r} is not a number") from None
        names.append(parts[0])
    return pd.DataFrame({"name": names, "score": scores})


def read_lamem(source: str | Path, split_id: int = 1, root: str | Path | None = None, **_ignored) -> ReadResult:
    """Read one LaMem split set.

    Args:
        source: the `lamem` folder (with `images/` and `splits/`).
        split_id: which of the five published splits (1-5).
        root: the folder holding `images/` (default SOURCE).
    """
    source = Path(source)
    split_id = int(split_id)
    if not 1 <= split_id <= 5:
        raise ArtmemError(f"--split-id must be 1..5 (got {split_id})")
    splits_dir = source / "splits"
    if not splits_dir.is_dir():
        raise CollectionError(source, "no splits/ folder (expected lamem/splits/train_1.txt ...)")
    root = Path(root) if root else source
    image_dir = "images" if (root / "images").is_dir() else ""
    frames = []
    for split in SPLITS:
        f = splits_dir / f"{split}_{split_id}.txt"
        if not f.is_file():
            raise CollectionError(f, "split file missing")
        part = read_lamem_split(f)
        part["split"] = split
        frames.append(part)
    df = pd.concat(frames, ignore_index=True)
    df.insert(0, "path", [f"{image_dir}/{n}" if image_dir else n for n in df.pop("name")])
    dup = df["path"].duplicated()
    if dup.any():
        logger.warning("lamem: %d images listed in more than one split of set %d; first kept", int(dup.sum()), split_id)
        df = df[~dup]
    bad = (df["score"] < 0) | (df["score"] > 1)
    if bad.any():
        logger.warning("lamem: %d scores outside [0, 1]", int(bad.sum()))
    df["split"] = df["split"].astype("str")
    good, errors = keep_existing(df, root)
    meta = {"format": "lamem", "source": str(source), "split_id": split_id, "score": "hit rate (no FA correction)"}
    return finish(good, root, f"lamem_split{split_id}", meta, errors)
