"""Pandora18k: `Pandora_18k/<NN_Movement>/<Artist>/<file>.jpg` (18 movement folders).

Columns: `movement` (folder name without its `NN_` prefix), `movement_id` (NN), `artist`
(folder; missing when a file sits directly in the movement folder).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from artmem.data.collection import read_folder
from artmem.data.readers.common import ReadResult, empty_errors, finish
from artmem.errors import CollectionError

logger = logging.getLogger(__name__)

_MOVEMENT_RE = re.compile(r"^(\d+)[_ -]+(.+)$")


def read_pandora(source: str | Path, **_ignored) -> ReadResult:
    """Read the Pandora18k tree (SOURCE = the `Pandora_18k` folder or its parent)."""
    source = Path(source)
    if not source.is_dir():
        raise CollectionError(source, "no such folder")
    root = source
    if not any(_MOVEMENT_RE.match(d.name) for d in root.iterdir() if d.is_dir()):
        inner = [d for d in root.iterdir() if d.is_dir() and d.name.lower().startswith("pandora")]
        if len(inner) == 1:
            root = inner[0]
    folders = [d.name for d in root.iterdir() if d.is_dir()]
    if not any(_MOVEMENT_RE.match(f) for f in folders):
        raise CollectionError(source, "no `NN_Movement` folders (expected e.g. 01_Byzantin_Iconography)")
    coll = read_folder(root, ["movement_folder", "artist"])
    df = coll.table
    if "artist" not in df.columns:
        df["artist"] = pd.NA
    top = df["path"].str.split("/").str.len() == 1
    if top.any():
        logger.warning("pandora: %d files directly in %s left out (not in a movement folder)", int(top.sum()), root)
        df = df[~top]
    parsed = df["movement_folder"].str.extract(_MOVEMENT_RE)
    df = df.assign(movement=parsed[1].fillna(df["movement_folder"]).astype("str"),
                   movement_id=pd.to_numeric(parsed[0], errors="coerce").astype("Int64"))
    deeper = df["path"].str.split("/").str.len() > 3
    if deeper.any():
        logger.info("pandora: %d files in sub-folders below the artist level kept", int(deeper.sum()))
    df = df[["path", "movement", "movement_id", "artist", "movement_folder"]]
    logger.info("pandora: %d images, %d movements, %d artists", len(df), df["movement"].nunique(), df["artist"].nunique())
    return finish(df, root, "pandora18k", {"format": "pandora", "source": str(source)}, empty_errors())
