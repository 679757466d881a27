"""Small collections for tests, cut from the session's synthetic collection."""

from __future__ import annotations

import shutil
from pathlib import Path


def copy_images(collection, root: Path, n: int = 20) -> list[str]:
    """Copy the first `n` images of `collection` under `root` (same relative paths); returns them."""
    src = Path(collection.root)
    paths = collection.paths[:n]
    for p in paths:
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / p, root / p)
    return paths
