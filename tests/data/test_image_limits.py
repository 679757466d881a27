"""The decompression-bomb limit is a per-call check: safe under the web server's threads."""

from __future__ import annotations

import io
import struct
import sys
import threading
import types
import zlib

import pytest
from PIL import Image

from artmem.data.images import decode_image
from artmem.errors import ImageReadError


def _png(size=(100, 100)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (20, 140, 60)).save(buf, format="PNG")
    return buf.getvalue()


def _png_header(width: int, height: int) -> bytes:
    """A small PNG whose header declares width x height pixels (the pixel data is cut short)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress((b"\x00" + b"\x00" * ((width + 7) // 8)) * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_limit_is_per_call_under_threads():
    """Threads with a low, a high and the default limit decode at once; each gets the answer of its
    own limit (before, the limit was a global swapped around every decode)."""
    small, bomb = _png(), _png_header(30_000, 30_000)
    failures: list[str] = []
    start = threading.Barrier(8)

    def worker(k: int) -> None:
        start.wait()
        for _ in range(40):
            try:
                if k % 4 == 0:
                    with pytest.raises(ImageReadError, match="decompression-bomb limit of 5,000"):
                        decode_image(small, "small.png", max_pixels=5_000)
                elif k % 4 == 1:
                    with pytest.raises(ImageReadError, match="900,000,000 pixels, above the decompression-bomb"):
                        decode_image(bomb, "bomb.png")
                elif k % 4 == 2:
                    assert decode_image(small, "small.png", max_pixels=20_000).size == (100, 100)
                else:
                    assert decode_image(small, "small.png").size == (100, 100)
            except BaseException as exc:  # collected: an assertion in a thread must fail the test
                failures.append(f"thread {k}: {type(exc).__name__}: {exc}")
                return

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:3]


def test_decoding_never_writes_pillows_global(monkeypatch):
    """Pillow's process-wide MAX_IMAGE_PIXELS is never assigned by a decode (no swap to race on)."""
    writes: list[object] = []
    module = sys.modules["PIL.Image"]

    class Watched(types.ModuleType):
        def __setattr__(self, name, value):
            if name == "MAX_IMAGE_PIXELS":
                writes.append(value)
            super().__setattr__(name, value)

    monkeypatch.setattr(module, "__class__", Watched)
    decode_image(_png(), "a.png")
    with pytest.raises(ImageReadError):
        decode_image(_png(), "a.png", max_pixels=10)
    monkeypatch.undo()
    assert writes == []
