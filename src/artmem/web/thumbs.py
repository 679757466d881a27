"""Thumbnails and display-size copies made on the fly when first requested (never at start), kept
in a bounded in-memory LRU cache and, with a folder, as JPEG files on disk (so that a restart or
another page does not decode the original again)."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

from PIL import Image

from artmem.data.images import load_image
from artmem.errors import ImageReadError

logger = logging.getLogger(__name__)

ALLOWED_SIZES = (128, 256, 512, 1024)


def etag_for(path: Path | str, size: int) -> str:
    """Identity of a rendering: the file's path, mtime and size (a URL: the URL) plus the size."""
    if isinstance(path, Path):
        st = path.stat()
        key = f"{path}|{st.st_mtime_ns}|{st.st_size}|{size}"
    else:
        key = f"{path}|{size}"
    return '"' + hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest()[:20] + '"'  # any file name


def load_image_checked(path) -> Image.Image:
    """`load_image`, with any decoder exception it lets through turned into an ImageReadError."""
    try:
        return load_image(path)
    except ImageReadError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageReadError(path, f"truncated or corrupt image data ({exc})") from None


def unreadable_svg(size: int) -> bytes:
    """A grey square saying "unreadable image", served in place of a thumbnail that cannot be made."""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" viewBox="0 0 256 256">'
            '<rect width="256" height="256" fill="#e9e5dc"/>'
            '<text x="128" y="134" font-family="sans-serif" font-size="20" fill="#6b7785" '
            'text-anchor="middle">unreadable image</text></svg>').encode()


def render_jpeg(path: Path | str, size: int) -> bytes:
    """The image (EXIF-rotated, RGB) scaled to fit size x size, as JPEG bytes."""
    img = load_image_checked(path)
    img.thumbnail((size, size), Image.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85, optimize=True)
    return buf.getvalue()


class ThumbCache:
    """LRU of rendered JPEGs keyed by ETag (file identity + size), bounded in bytes, backed by
    `folder` when given: one file per rendering, named by its ETag (a changed original gets a new
    ETag, hence a new file). The folder grows with the images viewed (about 10 KB per 256 px
    thumbnail); deleting it any time only costs re-rendering."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024, folder: Path | None = None):
        self.max_bytes = max_bytes
        self.folder = folder
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.disk_hits = 0
        self.misses = 0

    def _file(self, tag: str) -> Path | None:
        if self.folder is None:
            return None
        name = tag.strip('"')
        return self.folder / name[:2] / f"{name}.jpg"

    def _read_disk(self, tag: str) -> bytes | None:
        f = self._file(tag)
        try:
            return f.read_bytes() if f is not None else None
        except OSError:
            return None

    def _write_disk(self, tag: str, data: bytes) -> None:
        f = self._file(tag)
        if f is None:
            return
        try:
            f.parent.mkdir(parents=True, exist_ok=True)
            tmp = f.with_name(f"{f.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(f)  # atomic: a reader sees the whole file or none
        except OSError as exc:  # a full or read-only disk: the thumbnail is still served
            logger.warning("thumbnail not cached on disk (%s)", exc)

    def get(self, path: Path | str, size: int) -> tuple[bytes, str]:
        tag = etag_for(path, size)
        with self._lock:
            data = self._items.get(tag)
            if data is not None:
                self._items.move_to_end(tag)
                self.hits += 1
                return data, tag
        data = self._read_disk(tag)
        if data is not None:
            self.disk_hits += 1
        else:
            data = render_jpeg(path, size)  # outside the lock: several thumbnails render at once
            self._write_disk(tag, data)
            self.misses += 1
        with self._lock:
            if tag not in self._items:
                self._items[tag] = data
                self._bytes += len(data)
                while self._bytes > self.max_bytes and self._items:
                    _, old = self._items.popitem(last=False)
                    self._bytes -= len(old)
        return data, tag
