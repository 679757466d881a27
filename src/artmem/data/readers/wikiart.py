"""WikiArt as released with ArtGAN (Tan et al.): style folders + style/genre/artist CSVs.

On-disk facts handled here (see shared/DATA_FORMATS.md):
- class files `style_class.txt`, `genre_class`, `artist_class` (no extension), lines `index name`;
- `style_*.csv`, `genre_*.csv`: no header, `Style/artist_title.jpg,12`;
- `artist_train`, `artist_val` (no extension): a header line, a blank line, then double commas
  `Realism/vincent-van-gogh_pine-trees-in-the-fen-1884.jpg,,22`;
- class `Art_Nouveau` whose folder is `Art_Nouveau_Modern`;
- mojibake paths (`joaquãn-sorolla`), repaired against the files on disk when unambiguous;
- missing files (listed in the errors table).

The collection has one row per image with `style`, `genre`, `artist` (class names, empty when the
image is not in that task's files), a `split` column per task (`style_split`, ...) and `split`
(the style split, else genre, else artist).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.data.readers.common import (
    PathResolver,
    ReadResult,
    finish,
    keep_existing,
    normalise_rel,
    read_text,
)
from artmem.errors import CollectionError

logger = logging.getLogger(__name__)

TASKS = ("style", "genre", "artist")
SPLITS = ("train", "val")


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".txt", stem + ".csv"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_class_file(path: Path) -> dict[int, str]:
    """`index name` lines -> {index: name}; blank and malformed lines are skipped."""
    classes = {}
    for line in read_text(path).splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2 and parts[0].lstrip("-").isdigit():
            classes[int(parts[0])] = parts[1].strip()
    if not classes:
        raise CollectionError(path, "no `index name` lines in class file")
    return classes


def read_split_file(path: Path) -> list[tuple[str, int]]:
    """(relative path, class index) pairs; tolerates a header line, blank lines and `,,`."""
    rows, skipped = [], 0
    for line in read_text(path).splitlines():
        line = line.strip()
        if not line:
            continue
        head, sep, last = line.rpartition(",")
        last = last.strip()
        if not sep or not last.lstrip("-").isdigit():
            skipped += 1  # the header `(Path to image),, (Groundtruth class)` and junk
            continue
        rows.append((head.rstrip(",").strip(), int(last)))
    if skipped > 1:
        logger.warning("%s: skipped %d lines that are not `path,class`", path, skipped)
    return rows


def _locate(source: Path, images: Path | None, labels: Path | None) -> tuple[Path, Path]:
    if not source.exists():
        raise CollectionError(source, "no such folder")
    if labels is None:
        cands = [source, source / "wikiart_csv", source / "csv", source.parent / "wikiart_csv"]
        labels = next((c for c in cands if c.is_dir() and _find(c, "style_train")), None)
        if labels is None:
            raise CollectionError(source, "no style_train.csv found (looked in SOURCE, SOURCE/wikiart_csv); "
                                          "point to the CSV folder with --labels")
    if images is None:
        cands = [source / "wikiart", source]
        images = next((c for c in cands if c.is_dir() and any(d.is_dir() and d.name != labels.name for d in c.iterdir())), source)
    return Path(images), Path(labels)


def read_wikiart(source: str | Path, images: str | Path | None = None, labels: str | Path | None = None,
                 root: str | Path | None = None, **_ignored) -> ReadResult:
    """Read the ArtGAN WikiArt release.

    Args:
        source: the release folder (holding `wikiart/` and `wikiart_csv/`, or both merged).
        images: the image folder with the style sub-folders (default: SOURCE/wikiart or SOURCE).
        labels: the folder with the CSV and class files (default: SOURCE/wikiart_csv or SOURCE).
        root: alias of `images`.
    """
    source = Path(source)
    images_dir, labels_dir = _locate(source, Path(images or root) if (images or root) else None,
                                     Path(labels) if labels else None)
    records: dict[str, dict] = {}
    order: list[str] = []
    found_tasks = []
    for task in TASKS:
        class_file = _find(labels_dir, f"{task}_class")
        classes = read_class_file(class_file) if class_file else None
        any_split = False
        for split in SPLITS:
            f = _find(labels_dir, f"{task}_{split}")
            if f is None:
                continue
            any_split = True
            if classes is None:
                logger.warning("%s: no %s_class file; %s labels are class indices", labels_dir, task, task)
            for rel, idx in read_split_file(f):
                rel = normalise_rel(rel)
                rec = records.get(rel)
                if rec is None:
                    rec = records[rel] = {"path": rel}
                    order.append(rel)
                name = classes.get(idx, str(idx)) if classes is not None else str(idx)
                if classes is not None and idx not in classes:
                    logger.warning("%s: class index %d not in %s", f.name, idx, class_file.name)
                rec[task] = name
                rec[f"{task}_id"] = idx
                rec[f"{task}_split"] = split
        if any_split:
            found_tasks.append(task)
    if not records:
        raise CollectionError(labels_dir, "no rows in the style/genre/artist files")
    df = pd.DataFrame([records[p] for p in order])
    for task in found_tasks:
        df[f"{task}_id"] = df[f"{task}_id"].astype("Int64")
    split = pd.Series(np.full(len(df), np.nan, dtype=object))
    for task in found_tasks:
        split = split.fillna(df[f"{task}_split"]) if split.isna().any() else split
    df["split"] = split.astype("str")
    cols = ["path"] + [c for t in found_tasks for c in (t, f"{t}_id")] + ["split"] + [f"{t}_split" for t in found_tasks]
    df = df[cols]
    resolver = PathResolver(images_dir)
    good, errors = keep_existing(df, images_dir, resolver)
    dup = good["path"].duplicated(keep=False)
    if dup.any():  # two CSV spellings repaired to the same file: merge their labels
        good = good.groupby("path", sort=False, as_index=False).first()
    logger.info("wikiart: %d images (%d paths repaired, %d missing) from %s",
                len(good), resolver.repaired, len(errors), labels_dir)
    meta = {"format": "wikiart", "source": str(source), "labels": str(labels_dir), "tasks": found_tasks,
            "repaired_paths": resolver.repaired}
    return finish(good, images_dir, "wikiart", meta, errors)
