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
