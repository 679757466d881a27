"""Exceptions for user-facing errors: each names the file (if any) and the reason."""

from __future__ import annotations

from pathlib import Path


class ArtmemError(Exception):
    """A user error (bad input, missing file, bad option): the CLI prints it on one line and exits 2."""


class ImageReadError(ArtmemError):
    """An image that cannot be used, with the path and a short reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class CollectionError(ArtmemError):
    """A collection source that cannot be read (missing file, wrong format, empty)."""

    def __init__(self, path: str | Path | None, reason: str):
        self.path = None if path is None else str(path)
        self.reason = reason
        super().__init__(reason if path is None else f"{path}: {reason}")


class ModelNotFoundError(ArtmemError, KeyError):
    """An unknown model name."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""
