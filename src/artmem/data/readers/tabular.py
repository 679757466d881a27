"""Generic readers: a folder tree (one label per folder level) and a folder + CSV with named columns."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import pandas as pd

from artmem.data.collection import read_folder
from artmem.data.readers.common import (
    PathResolver,
    ReadResult,
    decode_text,
    drop_duplicates,
    empty_errors,
    finish,
    keep_existing,
    normalise_rel,
)
from artmem.errors import CollectionError

logger = logging.getLogger(__name__)


def _split_names(value) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def read_folder_tree(source: str | Path, levels=None, **_ignored) -> ReadResult:
    """Every image below `source`; folder levels become columns (`levels` names them)."""
    coll = read_folder(source, _split_names(levels))
    return ReadResult(coll, empty_errors())


def read_csv_collection(
    source: str | Path,
    root: str | Path | None = None,
    path_column: str = "path",
    label_columns=None,
    sep: str | None = None,
    encoding: str | None = None,
    allow_outside_root: bool = False,
    **_ignored,
) -> ReadResult:
    """A CSV (or TSV) listing image files, plus the folder they are in.

    Args:
        source: the CSV file.
        root: folder the CSV paths are relative to (default: the CSV's folder).
        path_column: column holding the image path.
        label_columns: columns to keep (comma-separated or list; default: all).
        sep: field separator (default: sniffed from the header: comma, semicolon, tab).
        encoding: file encoding (default: UTF-8, falling back to ISO-8859-1).
        allow_outside_root: keep rows whose file lies outside `root` (`..`, absolute paths
            elsewhere, symlinks out); by default they are left out and listed as errors.
    """
    source = Path(source)
    if source.is_dir():
        raise CollectionError(source, "--format csv needs the CSV file as SOURCE (images folder via --root)")
    text = decode_text(_read(source), encoding)
    if sep is None:
        header = text.splitlines()[0] if text else ""
        sep = max([",", ";", "\t"], key=header.count)
    try:
        df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_values=[""])
    except Exception as exc:
        raise CollectionError(source, f"cannot parse CSV ({exc})") from exc
    df.columns = [str(c).strip() for c in df.columns]
    if path_column not in df.columns:
        raise CollectionError(source, f"no column {path_column!r} (columns: {', '.join(df.columns)}); "
                                      "name it with --path-column")
    labels = _split_names(label_columns)
    if labels is not None:
        unknown = [c for c in labels if c not in df.columns]
        if unknown:
            raise CollectionError(source, f"no column(s) {', '.join(unknown)} (columns: {', '.join(df.columns)})")
    keep = [c for c in (labels if labels is not None else df.columns) if c != path_column]
    df = df[[path_column, *keep]].rename(columns={path_column: "path"})
    df = df[df["path"].notna() & (df["path"].astype(str).str.strip() != "")]
    root = Path(root) if root is not None else source.parent
    paths = df["path"].astype(str).str.strip()
    absolute = [os.path.isabs(p) for p in paths]
    if len(paths) and all(absolute) and root == source.parent:
        # absolute paths only: their common folder is the root when none was given
        root = Path(os.path.commonpath([os.path.dirname(p) for p in paths]))
    # an absolute path becomes relative to the root (with `..` when it lies outside: refused below)
    df["path"] = [os.path.relpath(p, root) if a else p for p, a in zip(paths, absolute, strict=True)]
    df["path"] = df["path"].map(normalise_rel)
    for c in keep:  # numeric columns (scores, years) become numbers
        converted = pd.to_numeric(df[c], errors="coerce")
        if converted.notna().sum() == df[c].notna().sum() and df[c].notna().any():
            df[c] = converted
    df = drop_duplicates(df)
    good, errors = keep_existing(df, root, PathResolver(root, allow_outside=allow_outside_root))
    meta = {"format": "csv", "source": str(source), "path_column": path_column, "label_columns": keep}
    return finish(good, root, source.stem, meta, errors)


def _read(path: Path) -> bytes:
    if not path.is_file():
        raise CollectionError(path, "no such file")
    return path.read_bytes()
