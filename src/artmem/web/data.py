"""What the explorer shows: the collection table joined with the analysis folder's artefacts.

Every artefact is optional (scores, features, measures, maps, predictions, uploads); a missing
or unreadable one is logged and the matching part of the pages says it is not available.
Loading lives in `artefacts.py`, kept uploads in `uploads_table.py`; this module holds the queries.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.data.collection import Collection, open_collection
from artmem.errors import ArtmemError
from artmem.web.artefacts import (
    ArtefactLoading,
    Features,
    normalise_rows,
    read_features_table,
    read_scores_table,
)
from artmem.web.labels import path_key
from artmem.web.sorting import sort_options, sort_values, text_mask
from artmem.web.uploads_table import COLLECTION, UPLOADS, UploadsTable

# what this module exported before it was split stays importable from here
__all__ = ["COLLECTION", "MAX_FILTER_VALUES", "UPLOADS", "ExplorerData", "Features", "normalise_rows",
           "read_features_table", "read_scores_table"]

logger = logging.getLogger(__name__)

MAX_FILTER_VALUES = 500  # label columns with more distinct values get no drop-down


class ExplorerData(ArtefactLoading, UploadsTable):
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
        self._key_index: tuple[int, dict[str, int]] | None = None
        self._sort_labels: tuple[tuple, dict[str, str]] | None = None
        if self.results is not None:
            self._load_results()
            self._load_uploads()

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

    def sort_keys(self) -> list[str]:
        """What the grid can be sorted by (see `sorting`): the score, the path, a numeric
        column, a measure or a numeric predictions column."""
        return list(self.sort_labels())

    def sort_labels(self) -> dict[str, str]:
        """Sort key -> its human name (computed once per state of the data: every grid request
        validates its sort key against these)."""
        with self.lock:
            state = (self.version, len(self.table), id(self.predictions), id(self.measures))
            if self._sort_labels is None or self._sort_labels[0] != state:
                self._sort_labels = (state, dict(sort_options(self)))
            return self._sort_labels[1]

    def key_of(self, item_id: int) -> str:
        """The stable URL key of a row (a hash of its source and path; see `labels.path_key`)."""
        return path_key(int(self.table.at[item_id, "_root"]), str(self.table.at[item_id, "path"]))

    def id_of_key(self, key: str) -> int | None:
        with self.lock:
            n = len(self.table)
            if self._key_index is None or self._key_index[0] != n:  # rebuilt when uploads are added
                keys = [path_key(int(r), str(p)) for r, p in zip(self.table["_root"], self.table["path"],
                                                                   strict=True)]
                self._key_index = (n, {k: i for i, k in enumerate(keys)})
            return self._key_index[1].get(key)

    def _check_label_column(self, column: str) -> None:
        if column not in self.label_columns:
            raise ArtmemError(f"unknown label column {column!r}; label columns: {', '.join(self.label_columns)}")

    def _snapshot(self) -> tuple[pd.DataFrame, np.ndarray]:
        """The table and a copy of the scores, taken together (uploads may change both meanwhile)."""
        with self.lock:
            return self.table, self.scores.copy()

    def query(self, filters: dict[str, str], sort: str = "score", order: str = "desc",
              text: str = "") -> np.ndarray:
        """Ids of the rows matching all `filters` (label column -> value) and the search `text`
        (a substring of the path or of a label value), sorted; NaN goes last.

        Results are cached per (data version, filters, sort, order), so paging is cheap even on
        large collections.
        """
        for col in filters:
            self._check_label_column(col)
        if sort not in self.sort_keys():
            raise ArtmemError(f"cannot sort by {sort!r}; use score, path, a numeric column, measure:NAME "
                              "or pred:TABLE:COLUMN (GET /api/filters lists them)")
        with self.lock:
            table, scores, version = self.table, self.scores.copy(), self.version
        key = (version, len(table), tuple(sorted(filters.items())), sort, order, text.strip().lower())
        hit = self._query_cache.get(key)
        if hit is not None:
            return hit
        mask = np.ones(len(table), dtype=bool)
        for col, val in filters.items():
            mask &= (table[col].astype(str) == str(val)).to_numpy()
        if text.strip():
            mask &= text_mask(table, self.label_columns, text)
        ids = np.nonzero(mask)[0]
        keys = sort_values(self, sort, table, scores)[ids]
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
        self._check_label_column(column)
        table, scores = self._snapshot()
        df = pd.DataFrame({"value": _category_values(table, column), "score": scores})
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
        table, scores = self._snapshot()
        labels = _category_values(table, column)
        return {v: scores[(labels == v).to_numpy() & np.isfinite(scores)] for v in sorted(labels.unique())}


def _category_values(table: pd.DataFrame, column: str) -> pd.Series:
    """The column as strings, missing values shown as "(none)" (a category of their own)."""
    return table[column].astype(str).where(table[column].notna(), "(none)")
