"""Reading the analysis folder's artefacts (scores, features, maps, measures, predictions, index)
and joining them to the explorer's table ids.

Every artefact is optional; a missing or unreadable one is logged and recorded in `artefacts`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.batch.results import read_job_record
from artmem.errors import ArtmemError
from artmem.web.measures import FrameMeasures, join_measures, open_measures

logger = logging.getLogger(__name__)


FEATURES_IN_MEMORY_MAX_BYTES = 1 << 30  # feature sets larger than 1 GB are searched through the index only


def read_scores_table(results: Path) -> pd.DataFrame | None:
    """RESULTS/scores read with `artmem.batch.results.read_scores`; None when there is no such folder."""
    folder = results / "scores"
    if not folder.exists():
        return None
    from artmem.batch.results import read_scores

    return read_scores(folder)


@dataclass
class Features:
    """Unit-normalised embeddings aligned with table ids (rows of NaN-free vectors only)."""

    ids: np.ndarray  # (N,) int64 table ids
    vectors: np.ndarray  # (N, D) float32, L2-normalised
    model: str | None
    layer: str | None


def read_features_table(results: Path) -> tuple[list[str], np.ndarray, dict] | None:
    """RESULTS/features read with `artmem.batch.results.read_features` (finished shards too)."""
    folder = results / "features"
    if not folder.exists():
        return None
    from artmem.batch.results import read_features

    fs = read_features(folder)
    return list(fs.paths), np.asarray(fs.vectors, dtype=np.float32), dict(fs.meta or {})


def save_npy(file: Path, array: np.ndarray) -> None:
    """An array saved atomically beside the memory-mapped copy (a cache: failing to write it only
    costs recomputing it at the next start)."""
    tmp = file.with_name(file.name + ".tmp.npy")
    try:
        np.save(tmp, array)
        tmp.replace(file)
    except OSError as exc:
        logger.warning("%s not cached: %s", file, exc)


def read_optional_parquet(file: Path, what: str = "") -> pd.DataFrame | None:
    """A parquet table that may be absent; an unreadable one is logged and skipped (None)."""
    if not file.exists():
        return None
    try:
        return pd.read_parquet(file)
    except Exception as exc:  # an unreadable table must not stop the explorer
        logger.warning("%s not used: %s", f"{what} {file}".strip(), exc)
        return None


def normalise_rows(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(norms, 1e-12)


class ArtefactLoading:
    """The loading half of `ExplorerData`, kept apart so that each module stays small.

    A mixin rather than a separate object: loaders fill the explorer's own attributes (scores,
    features, maps, ...), which the query methods and the background indexer then share.
    """

    # set by ExplorerData.__init__
    root: str | Path
    results: Path | None
    scores: np.ndarray
    lock: object
    store: object  # rowstore.RowStore
    n_collection: int
    rows_copy: Path | None  # the memory-mapped copy of a large collection

    def _ids_for(self, paths) -> np.ndarray:
        """The id of each results-table path (relative, or absolute under the root), -1 if none."""
        return self.store.ids_for_paths(paths, str(self.root))

    def _with_ids(self, df: pd.DataFrame, table: str) -> pd.DataFrame:
        """The rows of `df` whose path is a table row, tagged with that id and their source table."""
        df["_id"] = self._ids_for(df["path"])
        df["_table"] = table
        return df[df["_id"] >= 0]

    def _read_parquet_artefact(self, name: str) -> pd.DataFrame | None:
        """RESULTS/name/name.parquet, or None when the results have no such table."""
        file = self.results / name / f"{name}.parquet"
        return pd.read_parquet(file) if file.exists() else None

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
        """RESULTS/scores joined to the ids by DuckDB, scanning the Parquet dataset (merged file or
        shards: `batch.results.open_dataset`) without loading it; a CSV table is read whole."""
        folder = self.results / "scores"
        if not folder.exists():
            return None
        from artmem.batch.results import open_dataset

        try:
            source = open_dataset(folder, "scores")
        except ArtmemError:  # a CSV scores table: read whole (lazy reading needs Parquet)
            import pyarrow as pa

            source = pa.Table.from_pandas(read_scores_table(self.results)[["path", "score"]], preserve_index=False)
        n_rows = source.count_rows() if hasattr(source, "count_rows") else source.num_rows
        cached = self._scores_cache_file(source)
        if cached is not None and cached.is_file():  # this collection copy joined with these scores before
            self.scores = np.load(cached)
            n_found = int(np.isfinite(self.scores).sum())
        else:
            got = self.store.join_by_path(source, ["score"], str(self.root))
            score = got["score"]
            self.scores[got["id"]] = np.asarray(score.filled(np.nan) if np.ma.isMaskedArray(score) else score,
                                                dtype=np.float64)
            n_found = len(got["id"])
            if cached is not None:
                save_npy(cached, self.scores)
        if cached is not None:  # and the sorted copy for percentiles (a 10 M-row sort is seconds)
            sorted_file = cached.with_name(cached.stem + ".sorted.npy")
            if sorted_file.is_file():
                self._cache[("sorted_scores", self.version)] = np.load(sorted_file)
            else:
                save_npy(sorted_file, self.collection_scores())
        self.score_source = "scores table"
        try:
            job = read_job_record(folder)
            self.scores_model = job.model if job is not None else None
        except ArtmemError as exc:
            logger.warning("%s: the scoring model is unknown", exc)
        if n_rows > n_found:
            logger.warning("%d scored paths are not in the collection or not finite (ignored)", n_rows - n_found)
        return f"{n_found} scores"

    def _scores_cache_file(self, source) -> Path | None:
        """Where the scores of a large collection, aligned with its ids, are kept between starts:
        beside its memory-mapped copy, named by that copy and the scores files (name, size, time)."""
        files = getattr(source, "files", None)
        if self.rows_copy is None or not files:
            return None
        return self._cache_file("scores", files, ".npy")

    def _cache_file(self, kind: str, files, suffix: str) -> Path:
        """A file beside the memory-mapped copy named by that copy and `files` (name, size, time):
        a restart finds it, a changed artefact gets a new one."""
        h = hashlib.sha1(self.rows_copy.name.encode())
        for f in sorted(str(f) for f in files):
            st = os.stat(f)
            h.update(f"|{f}|{st.st_size}|{st.st_mtime_ns}".encode("utf-8", "surrogateescape"))
        return self.rows_copy.parent / f"{kind}-{h.hexdigest()[:16]}{suffix}"

    def _load_features(self) -> str | None:
        """Embeddings for exact similar-artwork search in memory, up to FEATURES_IN_MEMORY_MAX_BYTES;
        larger sets are used through the results' retrieval index only (OUT/index)."""
        folder = self.results / "features"
        if not folder.exists():
            return None
        from artmem.batch.results import open_dataset

        try:
            ds = open_dataset(folder, "features")
            n = ds.count_rows()
            first = next(iter(ds.to_batches(columns=["embedding"], batch_size=1)), None)
            dim = len(first.column(0)[0]) if first is not None and first.num_rows else 0
        except ArtmemError:  # a CSV features table: small by nature, read whole below
            n, dim = 0, 0
        if n * dim * 4 > FEATURES_IN_MEMORY_MAX_BYTES:
            return (f"{n} embeddings not loaded ({n * dim * 4 / 1e9:.1f} GB > "
                    f"{FEATURES_IN_MEMORY_MAX_BYTES / 1e9:.1f} GB): similar artworks through OUT/index only")
        got = read_features_table(self.results)
        paths, vectors, meta = got
        ids = self._ids_for(paths)
        ok = (ids >= 0) & np.isfinite(vectors).all(axis=1)
        self.features = Features(ids[ok], normalise_rows(vectors[ok]), meta.get("model"), meta.get("layer"))
        return f"{int(ok.sum())} embeddings ({meta.get('model')}, {meta.get('layer')})"

    def _load_maps(self) -> str | None:
        df = self._read_parquet_artefact("maps")
        if df is None:
            return None
        if "overlay_png" not in df.columns:
            return "no overlay_png column"
        ids = self._ids_for(df["path"])
        for i, rel in zip(ids, df["overlay_png"], strict=True):
            if i >= 0 and isinstance(rel, str) and rel:
                self.maps[int(i)] = rel  # resolved safely under results/maps when served
        return f"{len(self.maps)} maps"

    def _load_measures(self) -> str | None:
        """RESULTS/measures (see `measures.py`): columns of the row table for a large collection
        (joined by DuckDB once, then mapped from the cache beside its copy), pandas for a small one."""
        file = self.results / "measures" / "measures.parquet"
        if self.lazy and file.is_file():
            cached = self._cache_file("measures", [file], ".arrow")
            if not cached.is_file():
                join_measures(self.store, file, str(self.root), self.n_collection, cached)
            self.measures = open_measures(self.store, cached)
        else:
            df = self._read_parquet_artefact("measures")
            if df is None:
                return None
            df["_id"] = self._ids_for(df["path"])
            self.measures = FrameMeasures(df[df["_id"] >= 0].drop_duplicates("_id").set_index("_id")
                                          .drop(columns="path"))
        return f"{self.measures.n_rows} rows, {len(self.measures.names)} measures"

    def _load_index(self) -> str | None:
        """OUT/index (artmem.retrieval): used for similar artworks when present (large collections)."""
        folder = self.results / "index"
        if not folder.is_dir():
            return None
        from artmem.retrieval.index import open_index

        index = open_index(folder)
        self.index = index
        return f"{len(index)} vectors ({index.meta.get('backend')}, {index.meta.get('model')}/{index.meta.get('layer')})"

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
            frames.append(self._with_ids(df, f.stem))
        if not frames:
            return None
        self.predictions = pd.concat(frames, ignore_index=True)
        return f"{len(self.predictions)} rows from {len(frames)} table(s)"

    def add_run_predictions(self, run: str | Path, name: str) -> None:
        """A classifier run's test_predictions.parquet (path, label, pred, prob, correct), if any."""
        run = Path(str(run))
        file = (run if run.is_dir() else run.parent) / "test_predictions.parquet"
        df = read_optional_parquet(file)
        if df is None or "path" not in df.columns:
            return
        df = self._with_ids(df, name)
        with self.lock:
            self.predictions = df if self.predictions is None else pd.concat([self.predictions, df], ignore_index=True)
