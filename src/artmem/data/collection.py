"""The `Collection`: one row per image (relative `path` + label/score columns) and a root folder.

Saved as `OUT/collection.parquet` with the root and provenance in the Parquet metadata (and in
`collection.json` beside it, so a CSV copy can find its root too).
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from artmem.data.images import is_image_file
from artmem.data.pathnames import native_path, table_path
from artmem.errors import CollectionError

logger = logging.getLogger(__name__)

META_KEY = b"artmem.collection"
SIDECAR = "collection.json"


def _is_url(root: str) -> bool:
    return "://" in root and not root.startswith("file://")


@dataclass
class Collection:
    """A table of images under a root folder (or an fsspec URL prefix).

    Attributes:
        table: pandas DataFrame with a `path` column (POSIX, relative to `root`) and any
            label, metadata or score columns.
        root: folder the paths are relative to (str so that URLs such as s3://bucket/x work).
        name: a short name for reports.
        meta: provenance (format, source, reader options).
    """

    table: pd.DataFrame
    root: str
    name: str = "collection"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if "path" not in self.table.columns:
            raise CollectionError(None, "a collection table needs a 'path' column")
        self.root = str(self.root)
        if self.root.startswith("file://"):  # a local folder given as a URL
            self.root = self.root[len("file://"):]
        self.table = self.table.reset_index(drop=True)
        self.table["path"] = self.table["path"].astype(str)

    def __len__(self) -> int:
        return len(self.table)

    @property
    def paths(self) -> list[str]:
        return self.table["path"].tolist()

    def abs_path(self, rel: str) -> str:
        """Absolute path (or URL) of a relative collection path (a non-UTF-8 name: its exact bytes,
        see `artmem.data.pathnames`)."""
        if _is_url(self.root):
            return self.root.rstrip("/") + "/" + rel
        return str(Path(self.root) / native_path(rel))

    def abs_paths(self) -> list[str]:
        return [self.abs_path(p) for p in self.paths]

    @property
    def label_columns(self) -> list[str]:
        """Non-numeric columns other than `path`: the candidate category columns."""
        return [
            c for c in self.table.columns
            if c != "path" and not pd.api.types.is_numeric_dtype(self.table[c])
        ]

    def subset(self, mask_or_index) -> Collection:
        table = self.table.loc[mask_or_index].reset_index(drop=True)
        return Collection(table, self.root, self.name, dict(self.meta))

    def _meta_json(self) -> dict:
        return {"root": self.root, "name": self.name, "meta": self.meta}

    def save(self, out: str | Path, csv: bool = False) -> list[Path]:
        """Write OUT/collection.parquet (+ collection.json, + collection.csv). Returns the paths."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        info = json.dumps(self._meta_json(), default=str)
        table = pa.Table.from_pandas(self.table, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: info})
        written = [out / "collection.parquet", out / SIDECAR]
        pq.write_table(table, written[0])
        written[1].write_text(info + "\n")
        if csv:
            written.append(out / "collection.csv")
            self.table.to_csv(written[-1], index=False)
        return written

    @classmethod
    def load(cls, path: str | Path) -> Collection:
        """Load a collection file written by `save` (Parquet or CSV)."""
        import pyarrow.parquet as pq

        path = Path(path)
        if not path.exists():
            raise CollectionError(path, "no such collection file")
        info = None
        if path.suffix.lower() in (".parquet", ".pq"):
            try:
                table = pq.read_table(path)
            except Exception as exc:
                raise CollectionError(path, f"not a readable Parquet file ({exc})") from exc
            raw = (table.schema.metadata or {}).get(META_KEY)
            info = json.loads(raw) if raw else None
            df = table.to_pandas()
        elif path.suffix.lower() == ".csv":
            try:
                df = pd.read_csv(path, keep_default_na=False, na_values=[""])
            except Exception as exc:
                raise CollectionError(path, f"not a readable CSV file ({exc})") from exc
        else:
            raise CollectionError(path, "a collection file must be .parquet or .csv")
        sidecar = path.parent / SIDECAR
        if info is None and sidecar.exists():
            info = json.loads(sidecar.read_text())
        if "path" not in df.columns:
            raise CollectionError(path, "no 'path' column (was it written by `artmem collection import`?)")
        if info is None:
            info = {"root": str(path.parent.resolve()), "name": path.parent.name, "meta": {}}
        root = info["root"]
        if not _is_url(root) and not Path(root).is_absolute():
            root = str((path.parent / root).resolve())
        return cls(df, root, info.get("name", "collection"), info.get("meta", {}))


def read_folder(root: str | Path, levels: list[str] | None = None) -> Collection:
    """Import a folder tree: every image file below `root`, one label column per folder level.

    Args:
        root: the folder.
        levels: names for the folder-level columns (default level1, level2, ...).
    """
    root = Path(root)
    if not root.is_dir():
        raise CollectionError(root, "not a folder")
    files = sorted(
        table_path(p.relative_to(root).as_posix())  # a non-UTF-8 name stays one (readable) image
        for p in root.rglob("*")
        if p.is_file() and is_image_file(p) and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise CollectionError(root, "no image files found (looked for .jpg, .png, .tif, ...)")
    depth = max(len(Path(f).parts) - 1 for f in files)
    names = list(levels or [])
    names += [f"level{i + 1}" for i in range(len(names), depth)]
    rows = []
    for f in files:
        parts = Path(f).parts[:-1]
        rows.append({"path": f, **{names[i]: (parts[i] if i < len(parts) else None) for i in range(depth)}})
    df = pd.DataFrame(rows, columns=["path", *names[:depth]])
    return Collection(df, str(root.resolve()), root.name, {"format": "folder", "source": str(root)})


def open_collection(source) -> Collection:
    """Open whatever a command got as COLLECTION.

    Args:
        source: a Collection; a collection file (.parquet/.csv); a folder (its collection file, else
            every image below it); one image file; or a list of any of these, combined under
            their common folder (label columns are kept, missing values left empty).
    """
    if isinstance(source, Collection):
        return source
    if isinstance(source, (list, tuple)):
        if not source:
            raise CollectionError(None, "no images given")
        if len(source) == 1:
            return open_collection(source[0])
        return combine_collections([open_collection(s) for s in source])
    path = Path(source)
    if path.is_dir():
        for name in ("collection.parquet", "collection.csv"):
            if (path / name).exists():
                return Collection.load(path / name)
        return read_folder(path)
    if path.is_file() and is_image_file(path):
        return _single_image(path)
    if path.exists():
        if path.suffix.lower() not in (".parquet", ".pq", ".csv"):
            raise CollectionError(path, "not an image file, an image folder or a collection file "
                                  "(.parquet/.csv)")
        return Collection.load(path)
    raise CollectionError(path, "no such file or folder")


def _single_image(path: Path) -> Collection:
    path = path.resolve()
    table = pd.DataFrame({"path": [path.name]})
    return Collection(table, str(path.parent), path.stem, {"format": "image", "source": str(path)})


def combine_collections(parts: list[Collection]) -> Collection:
    """One collection of several, rooted at their common folder; each image once."""
    import os

    if any(_is_url(c.root) for c in parts):
        raise CollectionError(None, "a collection at a URL cannot be combined with other inputs")
    roots = [str(Path(c.root).resolve()) for c in parts]
    root = os.path.commonpath(roots)
    tables = []
    for coll, croot in zip(parts, roots, strict=True):
        t = coll.table.copy()
        prefix = Path(croot).relative_to(root).as_posix()
        if prefix != ".":
            t["path"] = [f"{prefix}/{p}" for p in t["path"]]
        tables.append(t)
    table = pd.concat(tables, ignore_index=True).drop_duplicates("path", keep="first")
    sources = [c.meta.get("source", c.root) for c in parts]
    return Collection(table, root, Path(root).name or "images",
                      {"format": "combined", "source": [str(s) for s in sources]})


def in_memory_image(obj) -> bool:
    """Whether `obj` is an image held in memory (a PIL image or a numpy array) rather than a path."""
    import numpy as np

    return isinstance(obj, np.ndarray) or (hasattr(obj, "convert") and hasattr(obj, "size"))


def as_pil_image(obj, i: int = 0):
    """A PIL image from a PIL image or a numpy array (HxW[xC], uint8 or floats in 0..1)."""
    import numpy as np
    from PIL import Image

    if not isinstance(obj, np.ndarray):
        return obj
    arr = obj
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise CollectionError(f"image {i}", f"an image array must be HxW, HxWx3 or HxWx4, not {arr.shape}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if np.issubdtype(arr.dtype, np.floating):
        if arr.size and (np.nanmin(arr) < 0 or np.nanmax(arr) > 1):
            raise CollectionError(f"image {i}", "a float image array must hold values in 0..1")
        arr = np.round(np.nan_to_num(arr) * 255)
    elif arr.dtype != np.uint8 and arr.size and (arr.min() < 0 or arr.max() > 255):
        raise CollectionError(f"image {i}", f"{arr.dtype} values outside 0..255; pass uint8 or floats in 0..1")
    return Image.fromarray(arr.astype(np.uint8))


@contextlib.contextmanager
def open_inputs(source) -> Iterator[Collection]:
    """`open_collection` that also takes in-memory images: a PIL image, a numpy array (HxW[xC],
    uint8 or floats in 0..1, or a NxHxWxC batch) or a list of them. They are written losslessly as
    image_0.png, image_1.png, ... into a temporary folder that is removed on exit."""
    import numpy as np

    items = source
    if isinstance(source, np.ndarray) and source.ndim == 4:
        items = list(source)
    elif in_memory_image(source):
        items = [source]
    if not (isinstance(items, (list, tuple)) and items and all(in_memory_image(x) for x in items)):
        if isinstance(items, (list, tuple)) and any(in_memory_image(x) for x in items):
            raise CollectionError(None, "give either paths or in-memory images, not a mix")
        yield open_collection(source)
        return
    with tempfile.TemporaryDirectory(prefix="artmem-images-") as tmp:
        names = []
        for i, obj in enumerate(items):
            name = f"image_{i}.png"
            as_pil_image(obj, i).save(Path(tmp) / name)
            names.append(name)
        yield Collection(pd.DataFrame({"path": names}), tmp, "images", {"format": "in-memory"})
