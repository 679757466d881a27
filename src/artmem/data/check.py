"""`artmem collection check`: try to decode every image, in parallel, and list the unreadable ones."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor

import pandas as pd

from artmem.data.collection import Collection, open_collection

logger = logging.getLogger(__name__)


def _init(max_pixels: int) -> None:
    from artmem.data.images import set_max_image_pixels

    set_max_image_pixels(max_pixels)


def check_one(source: str, max_pixels: int | None = None) -> tuple[bool, str, int, int]:
    """(ok, reason, width, height) of one image after a full decode (`max_pixels`: bomb limit)."""
    from artmem.data.images import ImageReadError, load_image

    try:
        img = load_image(source, max_pixels=max_pixels)
    except ImageReadError as exc:
        return False, exc.reason, -1, -1
    except Exception as exc:  # a decoder bug must not stop the check
        return False, f"cannot decode image ({type(exc).__name__}: {exc})", -1, -1
    w, h = img.size
    problem = _verify_checksums(source)
    if problem:
        return False, problem, w, h
    return True, "", w, h


def _verify_checksums(source: str) -> str | None:
    """PNG chunk CRCs (Pillow decodes without checking them; libpng-based tools refuse the file)."""
    if not source.lower().endswith(".png"):
        return None
    import io

    from PIL import Image

    from artmem.data.images import read_bytes

    try:
        with Image.open(io.BytesIO(read_bytes(source))) as img:
            img.verify()
    except Exception as exc:
        return f"corrupt PNG: checksum/chunk error ({exc}); it decodes here but other tools may refuse it"
    return None


def _check_chunk(sources: list[str], max_pixels: int | None = None) -> list[tuple]:
    return [check_one(s, max_pixels) for s in sources]


def check_collection(collection, workers: int | None = None, max_pixels: int | None = None,
                     progress: bool = True) -> pd.DataFrame:
    """Decode every image; returns a table `path, ok, reason, width, height` (display orientation).

    Args:
        collection: Collection, collection file or image folder.
        workers: processes (default: all cores, at most 8; small collections run in-process).
        max_pixels: decompression-bomb limit for this check (default: the current limit).
        progress: tqdm bar with img/s on stderr.
    """
    from tqdm.auto import tqdm

    from artmem.data.images import get_max_image_pixels

    coll: Collection = open_collection(collection)
    limit = int(max_pixels) if max_pixels else get_max_image_pixels()
    sources = coll.abs_paths()
    workers = min(8, os.cpu_count() or 1) if workers is None else workers
    chunk = 16
    chunks = [sources[i:i + chunk] for i in range(0, len(sources), chunk)]
    results: list[tuple] = []
    bar = tqdm(total=len(sources), unit="img", desc="checking", disable=not progress)
    try:
        if workers <= 1 or len(sources) < 64:
            for c in chunks:
                results.extend(_check_chunk(c, limit))
                bar.update(len(c))
        else:
            with ProcessPoolExecutor(max_workers=workers, initializer=_init, initargs=(limit,)) as pool:
                for c, res in zip(chunks, pool.map(_check_chunk, chunks), strict=False):
                    results.extend(res)
                    bar.update(len(c))
    finally:
        bar.close()
    table = pd.DataFrame(results, columns=["ok", "reason", "width", "height"])
    table.insert(0, "path", coll.paths)
    table["reason"] = table["reason"].astype("str")
    return table


def errors_of(table: pd.DataFrame) -> pd.DataFrame:
    """The `path, reason` rows of a check table that failed."""
    return table.loc[~table["ok"], ["path", "reason"]].reset_index(drop=True)


def summarise_errors(errors: pd.DataFrame, total: int, what: str = "images", limit: int = 10) -> None:
    """Log a short summary of an errors table on stderr (count per reason + a few examples)."""
    if errors.empty:
        logger.info("all %d %s readable", total, what)
        return
    logger.warning("%d of %d %s unreadable:", len(errors), total, what)
    reasons = errors["reason"].str.replace(r"\s*\(.*\)$", "", regex=True).value_counts()
    for reason, n in reasons.items():
        logger.warning("  %5d  %s", n, reason)
    for path, reason in errors.head(limit).itertuples(index=False):
        logger.warning("  %s: %s", path, reason)
    if len(errors) > limit:
        logger.warning("  ... (%d more in the errors table)", len(errors) - limit)
