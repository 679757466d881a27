"""Uploads kept with `add=true`: their files and table under RESULTS/uploads, and their rows in
the explorer's table (after the collection rows). Kept for collections held in memory only: a
large collection served from its memory-mapped cache analyses uploads but does not add them."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.errors import ArtmemError
from artmem.web.artefacts import read_optional_parquet

logger = logging.getLogger(__name__)

COLLECTION, UPLOADS = 0, 1  # values of the internal `_root` column
UPLOAD_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "TIFF": "tif", "GIF": "gif", "WEBP": "webp", "BMP": "bmp"}


class UploadsTable:
    """The uploads half of `ExplorerData` (a mixin: upload rows extend the explorer's own table,
    scores and version under its lock)."""

    # set by ExplorerData.__init__
    results: Path | None
    _frame: pd.DataFrame | None  # None for a large (memory-mapped) collection
    lazy: bool
    scores: np.ndarray
    label_columns: list[str]
    n_collection: int
    version: int
    lock: object

    @property
    def uploads_dir(self) -> Path | None:
        return None if self.results is None else self.results / "uploads"

    def _load_uploads(self) -> None:
        df = read_optional_parquet(self.uploads_dir / "uploads.parquet", "uploads table")
        if df is None:
            return
        if self.lazy:
            logger.warning("%s: kept uploads are not shown with a collection of %d rows (served from its "
                           "memory-mapped cache)", self.uploads_dir, self.n_collection)
            return
        for row in df.to_dict("records"):
            self._append_upload_row(row)

    def _append_upload_row(self, row: dict) -> int:
        new = {c: np.nan for c in self._frame.columns}
        new.update({"path": row["path"], "_root": UPLOADS, "source": "upload"})
        for c in self.label_columns:
            if c in row:
                new[c] = row[c]
        with self.lock:
            if "source" not in self._frame.columns:
                self._frame["source"] = "collection"
                if "source" not in self.label_columns:
                    self.label_columns.append("source")
            self._frame = pd.concat([self._frame, pd.DataFrame([new])], ignore_index=True)
            self.scores = np.append(self.scores, float(row.get("score", np.nan)))
            self._refresh_store()
            self.version += 1
            return len(self._frame) - 1

    def add_upload(self, data: bytes, fmt: str, original_name: str, score: float | None,
                   labels: dict[str, str]) -> tuple[int, bool]:
        """Keep an uploaded image: copy its bytes under results/uploads/files and append a row to
        results/uploads/uploads.parquet (the user's originals are never touched).

        Returns:
            (id, created): created is False when the same bytes were added before.
        """
        if self.uploads_dir is None:
            raise ArtmemError("uploads can only be kept when the server runs with --results DIR")
        if self.lazy:
            raise ArtmemError(f"uploads are not added to a collection of {self.n_collection} rows served from "
                              "its memory-mapped cache: add the files to the collection and score them instead")
        digest = hashlib.sha256(data).hexdigest()
        rel = f"files/{digest[:20]}.{UPLOAD_EXTENSIONS.get(fmt, 'img')}"
        with self.lock:
            for i in range(self.n_collection, len(self._frame)):
                if self._frame.at[i, "path"] == rel:
                    return i, False
            files = self.uploads_dir / "files"
            files.mkdir(parents=True, exist_ok=True)
            (self.uploads_dir / rel).write_bytes(data)
            row = {"path": rel, "original_name": original_name, "sha256": digest,
                   "added_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "score": np.nan if score is None else float(score),
                   **{f"pred_{k}": v for k, v in labels.items()}}
            table_file = self.uploads_dir / "uploads.parquet"
            old = pd.read_parquet(table_file) if table_file.exists() else None
            new = pd.DataFrame([row]) if old is None else pd.concat([old, pd.DataFrame([row])], ignore_index=True)
            tmp = table_file.with_suffix(".parquet.tmp")
            new.to_parquet(tmp, index=False)
            tmp.replace(table_file)
            return self._append_upload_row(row), True
