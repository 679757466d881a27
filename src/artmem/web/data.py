"""What the explorer shows: the collection table joined with the analysis folder's artefacts.

Every artefact is optional (scores, features, measures, maps, predictions, uploads); a missing
or unreadable one is logged and the matching part of the pages says it is not available.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.data.collection import Collection, open_collection
from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)

COLLECTION, UPLOADS = 0, 1  # values of the internal `_root` column
MAX_FILTER_VALUES = 500  # label columns with more distinct values get no drop-down


def _rel_path(p: str, root: str) -> str:
    """A results-table path as a collection-relative POSIX path (absolute paths are tolerated)."""
    p = str(p).replace("\\", "/")
    r = str(root).replace("\\", "/").rstrip("/") + "/"
    return p[len(r):] if p.startswith(r) else p


def read_scores_table(results: Path) -> pd.DataFrame | None:
    """OUT/scores/scores.parquet via `artmem.scale.store.read_scores` when present, else pandas."""
    folder = results / "scores"
    if not folder.exists():
        return None
    try:
        from artmem.scale.store import read_scores

        return read_scores(folder)
    except ImportError:
        pass
    for name in ("scores.parquet", "scores.csv"):
        if (folder / name).exists():
            from artmem.io import read_table

            return read_table(folder / name)
    return None


@dataclass
class Features:
    """Unit-normalised embeddings aligned with table ids (rows of NaN-free vectors only)."""

    ids: np.ndarray  # (N,) int64 table ids
    vectors: np.ndarray  # (N, D) float32, L2-normalised
    model: str | None
    layer: str | None


def read_features_table(results: Path) -> tuple[list[str], np.ndarray, dict] | None:
    """OUT/features via `artmem.scale.store.read_features` when present, else pandas/json."""
    folder = results / "features"
    if not folder.exists():
        return None
    try:
        from artmem.scale.store import read_features

        fs = read_features(folder)
        return list(fs.paths), np.asarray(fs.vectors, dtype=np.float32), dict(fs.meta or {})
    except ImportError:
        pass
    file = folder / "features.parquet"
    if not file.exists():
        return None
    df = pd.read_parquet(file)
    meta = {}
    if (folder / "features.json").exists():
        meta = json.loads((folder / "features.json").read_text())
    vectors = np.stack([np.asarray(v, dtype=np.float32) for v in df["embedding"]])
    return df["path"].astype(str).tolist(), vectors, meta


def normalise_rows(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(norms, 1e-12)


class ExplorerData:
    """The collection (+ uploads kept with `add=true`) and the analysis artefacts, thread-safe.

    Rows get a stable integer `id` (their position: collection rows first, then uploads).
    Scores live in `self.scores` (NaN where not scored yet); `version` increments whenever scores
    or embeddings change so that cached summaries are recomputed.
    """

    def __init__(self, collection: str | Path | Collection, results: str | Path | None = None):
        self.collection = open_collection(collection)
        if len(self.collection) == 0:
            raise ArtmemError("the collection is empty: nothing to show")
        self.root = self.collection.root
        self.results = Path(results) if results else None
        if self.results is not None and not self.results.is_dir():
            raise ArtmemError(f"{self.results}: --results must be an analysis folder (artmem analyze -o DIR)")
        self.lock = threading.RLock()
        self.version = 0
        self.label_columns = list(self.collection.label_columns)
        table = self.collection.table.copy()
        table["_root"] = COLLECTION
        self.n_collection = len(table)
        self.table = table.reset_index(drop=True)
        self.scores = np.full(len(table), np.nan, dtype=np.float64)
        self.score_source = None  # "scores table" | "computed at start with ..."
        self.scores_model: str | None = None  # the model of the scores table, when job.json says
        self.features: Features | None = None
        self.maps: dict[int, Path] = {}
        self.measures: pd.DataFrame | None = None
        self.predictions: pd.DataFrame | None = None
        self.errors: dict[int, str] = {}
        self.index = None  # an artmem.retrieval index over the collection, when the results hold one
        self._index_to_id: np.ndarray | None = None
        self.artefacts: dict[str, str] = {}
        self._path_to_id = {p: i for i, p in enumerate(self.table["path"])}
        self._query_cache: dict = {}
        self._sorted_cache: tuple[int, np.ndarray] | None = None
        if self.results is not None:
            self._load_results()
            self._load_uploads()

    # ---------------------------------------------------------------- loading
    def _ids_for(self, paths) -> np.ndarray:
        return np.array(
            [self._path_to_id.get(_rel_path(p, self.root), -1) for p in paths], dtype=np.int64
        )

    def _load(self, name: str, fn) -> None:
        try:
            status = fn()
        except Exception as exc:  # an unreadable artefact must not stop the explorer
            logger.warning("results %s not used: %s", name, exc)
            status = f"unreadable ({exc})"
        self.artefacts[name] = status or "absent"

    def _load_results(self) -> None:
        self._load("scores", self._load_scores)
        self._load("features", self._load_features)
        self._load("maps", self._load_maps)
        self._load("measures", self._load_measures)
        self._load("predictions", self._load_predictions)
        self._load("index", self._load_index)

    def _load_scores(self) -> str | None:
        df = read_scores_table(self.results)
        if df is None:
            return None
        ids = self._ids_for(df["path"])
        ok = ids >= 0
        self.scores[ids[ok]] = pd.to_numeric(df["score"], errors="coerce").to_numpy()[ok]
        self.score_source = "scores table"
        job = self.results / "scores" / "job.json"
        if job.exists():
            try:
                rec = json.loads(job.read_text())
                proc = rec.get("processor") if isinstance(rec.get("processor"), dict) else {}
                self.scores_model = rec.get("model") or proc.get("model")
            except (OSError, ValueError) as exc:
                logger.warning("%s not readable (%s): the scoring model is unknown", job, exc)
        if (~ok).sum():
            logger.warning("%d scored paths are not in the collection (ignored)", int((~ok).sum()))
        return f"{int(ok.sum())} scores"

    def _load_features(self) -> str | None:
        got = read_features_table(self.results)
        if got is None:
            return None
        paths, vectors, meta = got
        ids = self._ids_for(paths)
        ok = (ids >= 0) & np.isfinite(vectors).all(axis=1)
        self.features = Features(ids[ok], normalise_rows(vectors[ok]), meta.get("model"), meta.get("layer"))
        return f"{int(ok.sum())} embeddings ({meta.get('model')}, {meta.get('layer')})"

    def _load_maps(self) -> str | None:
        file = self.results / "maps" / "maps.parquet"
        if not file.exists():
            return None
        df = pd.read_parquet(file)
        col = "overlay_png" if "overlay_png" in df.columns else None
        if col is None:
            return "no overlay_png column"
        ids = self._ids_for(df["path"])
        for i, rel in zip(ids, df[col], strict=True):
            if i >= 0 and isinstance(rel, str) and rel:
                self.maps[int(i)] = rel  # resolved safely under results/maps when served
        return f"{len(self.maps)} maps"

    def _load_measures(self) -> str | None:
        file = self.results / "measures" / "measures.parquet"
        if not file.exists():
            return None
        df = pd.read_parquet(file)
        df["_id"] = self._ids_for(df["path"])
        self.measures = df[df["_id"] >= 0].drop_duplicates("_id").set_index("_id").drop(columns="path")
        return f"{len(self.measures)} rows, {self.measures.shape[1]} measures"

    def _load_index(self) -> str | None:
        """OUT/index (artmem.retrieval): used for similar artworks when present (large collections)."""
        folder = self.results / "index"
        if not folder.is_dir():
            return None
        from artmem.retrieval.index import open_index

        index = open_index(folder)
        items = index.items
        self._index_to_id = np.full(int(items["id"].max()) + 1 if len(items) else 0, -1, dtype=np.int64)
        self._index_to_id[items["id"].to_numpy()] = self._ids_for(items["path"])
        self.index = index
        return f"{len(index)} vectors ({index.meta.get('backend')}, {index.meta.get('model')}/{index.meta.get('layer')})"

    def _similar_index(self, q: np.ndarray, k: int, exclude: int | None) -> list[tuple[int, float]] | None:
        index = self.index
        if index is None or q.shape[0] != index.in_dim:
            return None
        self_id = None
        if exclude is not None and exclude < self.n_collection:
            self_id = index.id_of(str(self.table.at[exclude, "path"]))
        try:
            sims, ids = index.search(q[None], k, exclude=[self_id])
        except Exception as exc:  # fall back to the exact search on the features
            logger.warning("index search failed (%s); using exact search", exc)
            return None
        out = []
        for j, sim in zip(ids[0], sims[0], strict=True):
            if 0 <= j < len(self._index_to_id) and self._index_to_id[j] >= 0 and self._index_to_id[j] != exclude:
                out.append((int(self._index_to_id[j]), float(sim)))
        return out

    def _load_predictions(self) -> str | None:
        folder = self.results / "predictions"
        files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
        if not files:
            return None
        frames = []
        for f in files:
            df = pd.read_parquet(f)
            if "path" not in df.columns:
                continue
            df["_id"] = self._ids_for(df["path"])
            df["_table"] = f.stem
            frames.append(df[df["_id"] >= 0])
        if not frames:
            return None
        self.predictions = pd.concat(frames, ignore_index=True)
        return f"{len(self.predictions)} rows from {len(frames)} table(s)"

    def add_run_predictions(self, run: str | Path, name: str) -> None:
        """A classifier run's test_predictions.parquet (path, label, pred, prob, correct), if any."""
        run = Path(str(run))
        file = (run if run.is_dir() else run.parent) / "test_predictions.parquet"
        if not file.exists():
            return
        try:
            df = pd.read_parquet(file)
        except Exception as exc:
            logger.warning("%s not used: %s", file, exc)
            return
        if "path" not in df.columns:
            return
        df["_id"] = self._ids_for(df["path"])
        df["_table"] = name
        df = df[df["_id"] >= 0]
        with self.lock:
            self.predictions = df if self.predictions is None else pd.concat([self.predictions, df], ignore_index=True)

    # ---------------------------------------------------------------- uploads
    @property
    def uploads_dir(self) -> Path | None:
        return None if self.results is None else self.results / "uploads"

    def _load_uploads(self) -> None:
        file = self.uploads_dir / "uploads.parquet"
        if not file.exists():
            return
        try:
            df = pd.read_parquet(file)
        except Exception as exc:
            logger.warning("uploads table %s not used: %s", file, exc)
            return
        for row in df.to_dict("records"):
            self._append_upload_row(row)

    def _append_upload_row(self, row: dict) -> int:
        new = {c: np.nan for c in self.table.columns}
        new.update({"path": row["path"], "_root": UPLOADS, "source": "upload"})
        for c in self.label_columns:
            if c in row:
                new[c] = row[c]
        with self.lock:
            if "source" not in self.table.columns:
                self.table["source"] = "collection"
                if "source" not in self.label_columns:
                    self.label_columns.append("source")
            table = pd.concat([self.table, pd.DataFrame([new])], ignore_index=True)
            self.table = table
            self.scores = np.append(self.scores, float(row.get("score", np.nan)))
            self.version += 1
            return len(self.table) - 1

    def add_upload(self, data: bytes, fmt: str, original_name: str, score: float | None,
                   labels: dict[str, str]) -> tuple[int, bool]:
        """Keep an uploaded image: copy its bytes under results/uploads/files and append a row to
        results/uploads/uploads.parquet (the user's originals are never touched).

        Returns:
            (id, created): created is False when the same bytes were added before.
        """
        if self.uploads_dir is None:
            raise ArtmemError("uploads can only be kept when the server runs with --results DIR")
        digest = hashlib.sha256(data).hexdigest()
        ext = {"JPEG": "jpg", "PNG": "png", "TIFF": "tif", "GIF": "gif", "WEBP": "webp",
               "BMP": "bmp"}.get(fmt, "img")
        rel = f"files/{digest[:20]}.{ext}"
        with self.lock:
            for i in range(self.n_collection, len(self.table)):
                if self.table.at[i, "path"] == rel:
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

    # ---------------------------------------------------------------- queries
    def root_of(self, item_id: int) -> str | Path:
        return self.root if int(self.table.at[item_id, "_root"]) == COLLECTION else self.uploads_dir

    def id_of_path(self, rel: str) -> int | None:
        return self._path_to_id.get(rel)

    def valid_id(self, item_id: int) -> bool:
        return 0 <= item_id < len(self.table)

    def collection_scores(self) -> np.ndarray:
        """Sorted finite scores of the collection rows (the reference for percentiles)."""
        key = self.version
        cached = self._sorted_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        s = self.scores[: self.n_collection]
        ref = np.sort(s[np.isfinite(s)])
        self._sorted_cache = (key, ref)
        return ref

    def percentile(self, score: float | None, sorted_scores: np.ndarray | None = None) -> float | None:
        """Percent of collection images scoring at or below `score` (None if unknown)."""
        if score is None or not np.isfinite(score):
            return None
        ref = self.collection_scores() if sorted_scores is None else sorted_scores
        if len(ref) == 0:
            return None
        return float(100.0 * np.searchsorted(ref, score, side="right") / len(ref))

    def filter_options(self) -> dict[str, list[str]]:
        """Label column -> its distinct values (columns with many values get an empty list)."""
        out = {}
        with self.lock:
            table = self.table
        for c in self.label_columns:
            vals = table[c].dropna().astype(str).unique()
            out[c] = sorted(vals.tolist()) if len(vals) <= MAX_FILTER_VALUES else []
        return out

    def numeric_columns(self) -> list[str]:
        return [
            c for c in self.collection.table.columns
            if c != "path" and pd.api.types.is_numeric_dtype(self.collection.table[c])
        ]

    def query(self, filters: dict[str, str], sort: str = "score", order: str = "desc") -> np.ndarray:
        """Ids of the rows matching all `filters` (label column -> value), sorted; NaN goes last.

        Results are cached per (data version, filters, sort, order), so paging is cheap even on
        large collections.
        """
        for col in filters:
            if col not in self.label_columns:
                raise ArtmemError(f"unknown label column {col!r}; label columns: {', '.join(self.label_columns)}")
        if sort not in ("score", "path", *self.numeric_columns()):
            raise ArtmemError(f"cannot sort by {sort!r}; use score, path or a numeric column")
        with self.lock:
            table, scores, version = self.table, self.scores.copy(), self.version
        key = (version, len(table), tuple(sorted(filters.items())), sort, order)
        hit = self._query_cache.get(key)
        if hit is not None:
            return hit
        mask = np.ones(len(table), dtype=bool)
        for col, val in filters.items():
            mask &= (table[col].astype(str) == str(val)).to_numpy()
        ids = np.nonzero(mask)[0]
        keys = scores[ids] if sort == "score" else table[sort].to_numpy()[ids]
        frame = pd.DataFrame({"k": keys, "id": ids})
        ids = frame.sort_values("k", ascending=(order == "asc"), na_position="last", kind="mergesort")["id"].to_numpy()
        with self.lock:
            if len(self._query_cache) > 64:
                self._query_cache.clear()
            self._query_cache[key] = ids
        return ids

    def rows(self, ids: np.ndarray) -> pd.DataFrame:
        """Table rows for `ids` with `id` and `score` columns added."""
        ids = np.asarray(ids, dtype=np.int64)
        with self.lock:
            return self.table.iloc[ids].assign(id=ids, score=self.scores[ids])

    def labels_of(self, item_id: int) -> dict[str, str]:
        row = self.table.iloc[item_id]
        out = {}
        for c in self.label_columns:
            v = row.get(c)
            if v is not None and not (isinstance(v, float) and np.isnan(v)) and v is not pd.NA:
                out[c] = str(v)
        for c in self.numeric_columns():
            v = row.get(c)
            if v is not None and pd.notna(v):
                out[c] = f"{v:g}" if isinstance(v, float) else str(v)
        return out

    def measures_of(self, item_id: int) -> dict[str, float | str]:
        if self.measures is None or item_id not in self.measures.index:
            return {}
        row = self.measures.loc[item_id]
        return {k: (float(v) if isinstance(v, (int, float, np.number)) else str(v))
                for k, v in row.items() if pd.notna(v)}

    def stored_predictions_of(self, item_id: int) -> list[dict]:
        if self.predictions is None:
            return []
        rows = self.predictions[self.predictions["_id"] == item_id].rename(columns={"_table": "table"})
        return [
            {k: (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()
             if k not in ("_id", "path") and not (isinstance(v, float) and np.isnan(v))}
            for r in rows.to_dict("records")
        ]

    def set_embeddings(self, ids: np.ndarray, vectors: np.ndarray, model: str, layer: str) -> None:
        with self.lock:
            self.features = Features(np.asarray(ids, np.int64), normalise_rows(vectors), model, layer)
            self.version += 1

    def similar(self, query: np.ndarray, k: int = 8, exclude: int | None = None) -> list[tuple[int, float]]:
        """Top-k ids by cosine similarity to `query`: through the results' retrieval index when
        there is one, else exact (brute force) over the embeddings (uploads included)."""
        q = normalise_rows(np.asarray(query, dtype=np.float32).reshape(1, -1))[0]
        via_index = self._similar_index(q, k, exclude)
        if via_index is not None:
            return via_index
        feats = self.features
        if feats is None or len(feats.ids) == 0:
            return []
        if q.shape[0] != feats.vectors.shape[1]:
            return []
        sims = feats.vectors @ q
        order = np.argsort(-sims, kind="stable")
        out = []
        for j in order:
            i = int(feats.ids[j])
            if i == exclude:
                continue
            out.append((i, float(sims[j])))
            if len(out) == k:
                break
        return out

    def embedding_of(self, item_id: int) -> np.ndarray | None:
        feats = self.features
        if feats is None:
            return None
        hit = np.nonzero(feats.ids == item_id)[0]
        return feats.vectors[hit[0]] if len(hit) else None

    def category_summary(self, column: str) -> pd.DataFrame:
        """n, scored, mean, median, sd, quartiles, min and max of the score per category value."""
        if column not in self.label_columns:
            raise ArtmemError(f"unknown label column {column!r}; label columns: {', '.join(self.label_columns)}")
        with self.lock:
            table = self.table
            scores = self.scores.copy()
        df = pd.DataFrame({"value": table[column].astype(str).where(table[column].notna(), "(none)"),
                           "score": scores})
        rows = []
        for value, g in df.groupby("value", sort=True):
            s = g["score"].dropna().to_numpy()
            stats = {"value": value, "n": int(len(g)), "n_scored": int(len(s))}
            if len(s):
                stats.update(mean=float(s.mean()), median=float(np.median(s)),
                             std=float(s.std(ddof=1)) if len(s) > 1 else 0.0,
                             q1=float(np.quantile(s, 0.25)), q3=float(np.quantile(s, 0.75)),
                             min=float(s.min()), max=float(s.max()))
            rows.append(stats)
        return pd.DataFrame(rows)

    def scores_for(self, column: str) -> dict[str, np.ndarray]:
        with self.lock:
            table = self.table
            scores = self.scores.copy()
        labels = table[column].astype(str).where(table[column].notna(), "(none)")
        return {v: scores[(labels == v).to_numpy() & np.isfinite(scores)] for v in sorted(labels.unique())}
