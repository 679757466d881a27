"""Byte-level helpers for the web tests (hostile and ordinary uploads)."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

CLASS_NAMES = ["style_0", "style_1", "style_2"]


def png_bytes(size=(40, 30), colour=(10, 120, 200), fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format=fmt)
    return buf.getvalue()


def png_header_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A few hundred bytes of valid PNG that declare width x height pixels (a decompression bomb)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    idat = zlib.compress(row * 64, 9)  # only the first rows; the header is what counts
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# Hostile requests shared by the in-process tests (test_safety.py) and the live-server corpus
# (test_live_hostile.py): every one must keep failing safely.
TRAVERSAL_URLS = [
    "/files/%2e%2e/%2e%2e/etc/passwd",
    "/files/..%2f..%2f..%2fetc%2fpasswd",
    "/files/style_0/%2e%2e/%2e%2e/outside/secret.jpg",
    "/files/%252e%252e/%252e%252e/etc/passwd",
    "/files//etc/passwd",
    "/files/%2fetc%2fpasswd",
    "/files/style_0/escape.jpg",  # a symlink inside the root pointing outside it
    "/files/notes.txt",  # inside the root but not a collection image
    "/files/collection.parquet",
    "/files/style_0/..%5c..%5cetc%5cpasswd",
    "/files/C:%5cWindows%5cwin.ini",
    "/files/style_0/%00portrait_000.jpg",
]


def _jpeg_cut() -> bytes:
    return png_bytes((64, 64), fmt="JPEG")[:300]


BAD_UPLOADS = [  # (payload, file name, words the 422 message must contain)
    (b"this is not an image at all", "fake.png", "not an image"),
    (b"", "empty.jpg", "empty"),
    (b"%PDF-1.4\n" + b"0" * 100, "doc.jpg", "not an image"),
    (_jpeg_cut(), "cut.jpg", "truncated"),
    (png_header_bomb(), "bomb.png", "decompression-bomb"),
]
