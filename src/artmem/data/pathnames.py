"""File names that are not valid UTF-8 (Linux allows any bytes but `/` and NUL in a name).

Python lists such a name with `os.fsdecode`, which keeps each undecodable byte 0xXY as the lone
surrogate U+DCXY (PEP 383 "surrogateescape"): the string round-trips to the exact bytes, but
Arrow, Parquet, JSON and HTML refuse lone surrogates. A collection table therefore stores each
such byte as the private-use character U+EFXY instead (the mapping MirBSD's OPTU-8 uses):
valid UTF-8, unique, and mapped back to the exact bytes when the file is opened. Everything
between the folder listing and the `open()` treats the table path as an opaque key.
"""

from __future__ import annotations

_SHIFT = 0xEF80 - 0xDC80  # U+DC80..U+DCFF <-> U+EF80..U+EFFF
_TO_TABLE = {c: c + _SHIFT for c in range(0xDC80, 0xDD00)}
_TO_NATIVE = {c + _SHIFT: c for c in range(0xDC80, 0xDD00)}


def table_path(native: str) -> str:
    """A path as listed by the OS (surrogate-escaped) -> the form stored in tables (valid UTF-8)."""
    return native.translate(_TO_TABLE)


def native_path(rel: str) -> str:
    """A table path -> the OS path string whose `os.fsencode` gives the file's exact bytes."""
    return rel.translate(_TO_NATIVE)


def shown_path(rel: str) -> str:
    """A table path as people read it: undecodable bytes written as `\\xXY` (e.g. `caf\\xe9.jpg`)."""
    native = native_path(rel)
    if native == rel:
        return rel
    return native.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
