"""Writing result tables: Parquet always, CSV copies on request; every written path is reported."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)


def ensure_out_dir(out: str | Path) -> Path:
    """Create the output folder (and parents); a path that is an existing file is a user error."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ArtmemError(f"{out}: output path exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_table(df: pd.DataFrame, out: str | Path, name: str, csv: bool = False) -> list[Path]:
    """Write `df` as OUT/name.parquet (and OUT/name.csv when `csv`). Returns the written paths."""
    out = ensure_out_dir(out)
    paths = [out / f"{name}.parquet"]
    df.to_parquet(paths[0], index=False)
    if csv:
        paths.append(out / f"{name}.csv")
        df.to_csv(paths[-1], index=False)
    return paths


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a Parquet or CSV table, with a clear error for a missing or unknown file."""
    path = Path(path)
    if not path.exists():
        raise ArtmemError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".txt"):
            return pd.read_csv(path)
        if suffix == ".tsv":
            return pd.read_csv(path, sep="\t")
    except Exception as exc:  # pandas/pyarrow raise many types; the user needs the file and reason
        raise ArtmemError(f"{path}: cannot read table ({exc})") from exc
    raise ArtmemError(f"{path}: unknown table format {suffix!r} (use .parquet or .csv)")


def find_table(file_or_dir: str | Path, name: str, missing: str) -> Path:
    """A table file given directly, or DIR/name.parquet (else DIR/name.csv) in a folder.

    Args:
        file_or_dir: the file, or the folder a command wrote it into.
        name: the table's base name (e.g. "measures").
        missing: the message (after the path) when the folder holds neither file.
    """
    path = Path(file_or_dir)
    if not path.is_dir():
        return path
    for candidate in (path / f"{name}.parquet", path / f"{name}.csv"):
        if candidate.exists():
            return candidate
    raise ArtmemError(f"{file_or_dir}: {missing}")
