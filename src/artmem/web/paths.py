"""Safe file resolution: a relative path from a URL may only name a file inside its root."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from artmem.data.pathnames import native_path

_DRIVE = re.compile(r"^[A-Za-z]:")


def is_safe_relative(rel: str) -> bool:
    """True for a plain relative POSIX path: no `..`, no absolute or drive path, no NUL byte."""
    if not rel or "\x00" in rel:
        return False
    rel = rel.replace("\\", "/")
    if rel.startswith("/") or _DRIVE.match(rel):
        return False
    return not any(p in ("..", "") for p in PurePosixPath(rel).parts)


def safe_join(root: str | Path, rel: str) -> Path | None:
    """Resolve `rel` under `root`, or return None when it could escape the root.

    Rejects empty paths, NUL bytes, absolute paths, Windows drive/UNC paths, any `..` component,
    and paths whose real location (after following symlinks) is outside the real root.
    Returns the resolved path only if it is an existing regular file.
    """
    if not is_safe_relative(rel):
        return None
    parts = PurePosixPath(native_path(rel).replace("\\", "/")).parts
    try:
        root_real = Path(root).resolve(strict=True)
        candidate = (root_real / Path(*parts)).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):  # missing, symlink loop, bad name
        return None
    if candidate != root_real and root_real not in candidate.parents:
        return None
    return candidate if candidate.is_file() else None
