"""Shared reader helpers: the result type, path normalisation, missing-file handling, mojibake repair."""

from __future__ import annotations

import logging
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from artmem.data.collection import Collection
from artmem.data.pathnames import table_path
from artmem.errors import CollectionError

logger = logging.getLogger(__name__)


def empty_errors() -> pd.DataFrame:
    return pd.DataFrame({"path": pd.Series([], dtype="str"), "reason": pd.Series([], dtype="str")})


@dataclass
class ReadResult:
    """A reader's output: the collection of existing images and the rows it had to leave out."""

    collection: Collection
    errors: pd.DataFrame = field(default_factory=empty_errors)

    def __iter__(self):  # `coll, errors = read_x(...)`
        return iter((self.collection, self.errors))


def normalise_rel(path: str) -> str:
    """CSV path -> POSIX relative path (backslashes, leading './' and '/' removed)."""
    p = str(path).strip().replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    return p.lstrip("/")


def decode_text(data: bytes, encoding: str | None = None) -> str:
    """Bytes -> text: the given encoding, else UTF-8 (BOM stripped) if valid, else ISO-8859-1."""
    if encoding:
        return data.decode(encoding)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def read_text(path: str | Path, encoding: str | None = None) -> str:
    path = Path(path)
    if not path.is_file():
        raise CollectionError(path, "no such file")
    return decode_text(path.read_bytes(), encoding)


def ascii_key(name: str) -> str:
    """A key that survives mojibake and accent loss: the ASCII characters only, lower-cased.

    `joaquín`, `joaquÃ\\xadn` (UTF-8 read as Latin-1) and `joaquãn` (the lossy ArtGAN form) all
    map to `joaqun`.
    """
    nfc = unicodedata.normalize("NFC", name)
    return "".join(ch for ch in nfc if ord(ch) < 128).lower()


def _recodings(s: str) -> list[str]:
    out = []
    for enc_from, enc_to in (("latin-1", "utf-8"), ("cp1252", "utf-8"), ("utf-8", "latin-1"), ("utf-8", "cp1252")):
        try:
            r = s.encode(enc_from).decode(enc_to)
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
        if r != s:
            out.append(r)
    for form in ("NFC", "NFD"):
        r = unicodedata.normalize(form, s)
        if r != s:
            out.append(r)
    return out


class PathResolver:
    """Find the file on disk for a path from a dataset's CSV, repairing what can be repaired.

    Tries, in order: the path as is; re-decoded variants (Latin-1 <-> UTF-8 mojibake, NFC/NFD);
    folder aliases (`Art_Nouveau/...` -> `Art_Nouveau_Modern/...`); a unique file in the same
    folder with the same ASCII key (the lossy `joaquãn` case). Folder listings are cached.
    """

    def __init__(self, root: str | Path, folder_aliases: dict[str, str] | None = None,
                 allow_outside: bool = False):
        self.root = Path(root)
        self.folder_aliases = dict(folder_aliases or {})
        self.allow_outside = allow_outside  # False: a path leading out of the root is refused
        self._real_root: str | None = None
        self._listing: dict[str, dict[str, list[str]] | None] = {}
        self._errors: dict[str, str] = {}  # folder -> why it could not be listed
        self._top: list[str] | None = None
        self.repaired = 0

    def _exists(self, rel: str) -> bool:
        return os.path.isfile(os.path.join(self.root, rel))

    def _alias_folder(self, folder: str) -> str | None:
        if folder in self.folder_aliases:
            return self.folder_aliases[folder]
        if self._top is None:
            try:
                self._top = sorted(e.name for e in os.scandir(self.root) if e.is_dir())
            except OSError:
                self._top = []
        cands = [d for d in self._top if d != folder and (d.startswith(folder + "_") or folder.startswith(d + "_"))]
        return cands[0] if len(cands) == 1 else None

    def _keys(self, folder: str) -> dict[str, list[str]] | None:
        if folder not in self._listing:
            try:
                names = [e.name for e in os.scandir(os.path.join(self.root, folder)) if e.is_file()]
            except OSError as exc:
                self._listing[folder] = None
                self._errors[folder] = exc.strerror or type(exc).__name__
                return None
            keys: dict[str, list[str]] = {}
            for n in names:
                keys.setdefault(ascii_key(n), []).append(n)
            self._listing[folder] = keys
        return self._listing[folder]

    def _outside(self, rel: str) -> bool:
        """True when `rel` leads out of the root (`..` or a symlink whose target is outside)."""
        if self._real_root is None:
            self._real_root = os.path.realpath(self.root)
        real = os.path.realpath(os.path.join(self.root, rel))
        return os.path.commonpath([self._real_root, real]) != self._real_root

    def resolve(self, rel: str) -> tuple[str | None, str | None]:
        """(on-disk relative path, None) or (None, reason)."""
        found, reason = self._resolve(rel)
        if found is None:
            return None, reason
        if not self.allow_outside and self._outside(found):
            return None, "outside the image root (refused: the explorer would not serve it either)"
        return table_path(found), None  # a match listed from disk may be a non-UTF-8 name

    def _resolve(self, rel: str) -> tuple[str | None, str | None]:
        rel = normalise_rel(rel)
        if self._exists(rel):
            return rel, None
        for cand in _recodings(rel):
            if self._exists(cand):
                self.repaired += 1
                return cand, None
        folder, _, name = rel.rpartition("/")
        folders = [folder]
        if folder:
            top, _, rest = folder.partition("/")
            alias = self._alias_folder(top)
            if alias:
                alt = alias + ("/" + rest if rest else "")
                folders.append(alt)
                if self._exists(f"{alt}/{name}"):
                    self.repaired += 1
                    return f"{alt}/{name}", None
        for f in folders:
            keys = self._keys(f)
            if keys is None:
                continue
            hits = keys.get(ascii_key(name), [])
            if len(hits) == 1:
                self.repaired += 1
                return (f"{f}/{hits[0]}" if f else hits[0]), None
            if len(hits) > 1:
                return None, f"file not found; {len(hits)} files in {f or '.'} match after repairing the encoding"
        if any(ord(ch) > 127 for ch in rel):
            return None, "file not found (non-ASCII name could not be matched to a file on disk)"
        if folder and self._keys(folder) is None and len(folders) == 1:
            full = os.path.join(self.root, folder)
            if not os.path.lexists(full):
                return None, f"file not found (no folder {folder!r})"
            if not os.path.isdir(full):
                return None, f"file not found ({folder!r} is not a folder)"
            return None, f"file not found (folder {folder!r} cannot be listed: {self._errors.get(folder)})"
        return None, "file not found"


def keep_existing(df: pd.DataFrame, root: str | Path, resolver: PathResolver | None = None,
                  column: str = "path") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows into those whose file exists under root (paths repaired) and an errors table."""
    resolver = resolver or PathResolver(root)
    fixed, bad = [], []
    for p in df[column].astype(str).tolist():
        r, reason = resolver.resolve(p)
        fixed.append(r)
        if r is None:
            bad.append((normalise_rel(p), reason))
    mask = pd.Series([f is not None for f in fixed], index=df.index)
    good = df[mask].copy()
    good[column] = [f for f in fixed if f is not None]
    errors = pd.DataFrame(bad, columns=["path", "reason"]) if bad else empty_errors()
    if resolver.repaired:
        logger.info("repaired %d paths (encoding or folder name) to match files on disk", resolver.repaired)
    return good.reset_index(drop=True), errors


def drop_duplicates(df: pd.DataFrame, column: str = "path") -> pd.DataFrame:
    dup = df[column].duplicated()
    if dup.any():
        logger.warning("%d duplicate rows for the same file kept only once", int(dup.sum()))
        df = df[~dup].reset_index(drop=True)
    return df


def finish(df: pd.DataFrame, root: str | Path, name: str, meta: dict, errors: pd.DataFrame) -> ReadResult:
    """Build the ReadResult; an empty collection is a user error naming the source."""
    if df.empty:
        hint = f" ({len(errors)} rows referenced missing files, e.g. {errors['path'].iloc[0]})" if len(errors) else ""
        raise CollectionError(meta.get("source"), f"no image found{hint}; check the image root with --root")
    coll = Collection(df.reset_index(drop=True), str(Path(root).resolve()), name, meta)
    return ReadResult(coll, errors.reset_index(drop=True))
