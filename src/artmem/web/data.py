"""What the explorer shows: the collection table joined with the analysis folder's artefacts.

Every artefact is optional (scores, features, measures, maps, predictions, uploads); a missing
or unreadable one is logged and the matching part of the pages says it is not available.
The rows are queried per request with DuckDB (`rowstore.py`: a large Parquet collection is
memory-mapped, never loaded); loading the artefacts lives in `artefacts.py`, kept uploads in
`uploads_table.py`; this module holds the queries.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.data.collection import Collection
from artmem.errors import ArtmemError
from artmem.usercache import cache_dir
from artmem.web.artefacts import (
    ArtefactLoading,
    Features,
    normalise_rows,
    read_features_table,
    read_scores_table,
    save_npy,
)
from artmem.web.collection_rows import open_rows
from artmem.web.labels import path_key
from artmem.web.measures import ColumnMeasures, FrameMeasures
from artmem.web.rowstore import (
    LAZY_MIN_ROWS,
    RowStore,
    frame_to_arrow,
    quote_ident,
)
from artmem.web.sorting import SCORE_COLUMN, sort_options, sort_source
from artmem.web.uploads_table import COLLECTION, UPLOADS, UploadsTable

# what this module exported before it was split stays importable from here
__all__ = ["COLLECTION", "LAZY_MIN_ROWS", "MAX_FILTER_VALUES", "UPLOADS", "ExplorerData", "Features",
           "normalise_rows", "read_features_table", "read_scores_table"]

logger = logging.getLogger(__name__)

MAX_FILTER_VALUES = 500  # label columns with more distinct values get no drop-down
PAGE_CACHE = 256  # grid pages kept (key: data version, filters, search, sort, page)


class ExplorerData(ArtefactLoading, UploadsTable):
    """The collection (+ uploads kept with `add=true`) and the analysis artefacts, thread-safe.

    Rows get a stable integer `id` (their position: collection rows first, then uploads).
    Scores live in `self.scores` (NaN where not scored yet; 8 bytes a row, the one per-row array
    held in memory besides the sorted copy used for percentiles); `version` increments whenever
    scores or embeddings change so that cached pages and summaries are recomputed.
    `lazy` is True when the collection is a large Parquet file served from its memory-mapped
    cache (`rowstore.py`); `self._frame` (the pandas table) exists only when it is not.
    """

    def __init__(self, collection: str | Path | Collection, results: str | Path | None = None):
        self.results = Path(results) if results else None
        if self.results is not None and not self.results.is_dir():
            raise ArtmemError(f"{self.results}: --results must be an analysis folder (artmem analyze -o DIR)")
        self.lock = threading.RLock()
        self.version = 0
        self._open_rows(collection)
        if self.n_collection == 0:
            raise ArtmemError("the collection is empty: nothing to show")
        self.root = self.collection.root
        self.scores = np.full(self.n_collection, np.nan, dtype=np.float64)
        self.score_source = None  # "scores table" | "computed at start with ..."
        self.scores_model: str | None = None  # the model of the scores table, when job.json says
        self.features: Features | None = None
        self.maps: dict[int, Path] = {}
        self.measures: FrameMeasures | ColumnMeasures | None = None  # see measures.py
        self.predictions: pd.DataFrame | None = None
        self.errors: dict[int, str] = {}
        self.index = None  # an artmem.retrieval index over the collection, when the results hold one
        self._index_ids: dict[int, int | None] = {}  # collection id -> index id, looked up on demand
        self.artefacts: dict[str, str] = {}
        self._cache: dict = {}  # (what, version, ...) -> value; cleared when it grows
        self._computing: dict[tuple, threading.Event] = {}  # keys of `_cache` being computed now
        self._key_index = None
        self._sort_labels: tuple[tuple, dict[str, str]] | None = None
        if self.results is not None:
            self._load_results()
            self._load_uploads()
        self.collection_scores()  # sorted once here, so that the first page does not wait for it
        if self.lazy:  # no background scoring nor uploads change them: sorted as a column
            self.store.add_column(SCORE_COLUMN, self.scores)

    def _open_rows(self, source) -> None:
        collection, table, frame, self.rows_copy = open_rows(source, self._cache_candidates(), self.cache_folder)
        self.collection = collection
        self.label_columns = list(collection.label_columns)
        self._frame = frame
        self._path_to_id = None if frame is None else {p: i for i, p in enumerate(frame["path"])}
        self.lazy = frame is None
        self.n_collection = table.num_rows
        self.store = RowStore(table)

    def _cache_candidates(self) -> list[Path]:
        """Where a cache copy may already be (looked up without creating folders)."""
        return ([self.results / ".explorer"] if self.results is not None else []) + [cache_dir() / "explorer"]

    def cache_folder(self) -> Path:
        """Where the memory-mapped copy of a large collection goes: RESULTS/.explorer when the
        results folder is writable, else artmem's cache folder."""
        if self.results is not None:
            folder = self.results / ".explorer"
            try:
                folder.mkdir(exist_ok=True)
                return folder
            except OSError as exc:
                logger.info("results folder not writable (%s); caching in %s", exc, cache_dir())
        return cache_dir() / "explorer"

    def _refresh_store(self) -> None:
        """After uploads changed the pandas table (small collections only)."""
        self.store.set_table(frame_to_arrow(self._frame, self.label_columns))

    # ---------------------------------------------------------------- rows
    @property
    def n_rows(self) -> int:
        return len(self.store)

    def path_of(self, item_id: int) -> str:
        return self.store.path_of(item_id)

    def root_of(self, item_id: int) -> str | Path:
        return self.root if self.store.root_of(item_id) == COLLECTION else self.uploads_dir

    def id_of_path(self, rel: str) -> int | None:
        """The id of a collection path (the /files route)."""
        if self._path_to_id is not None:
            return self._path_to_id.get(rel)
        got = self.store.sql("SELECT id FROM items WHERE path = ? AND _root = 0 LIMIT 1", [rel])["id"]
        return int(got[0]) if len(got) else None

    def valid_id(self, item_id: int) -> bool:
        return 0 <= item_id < self.n_rows

    def rows(self, ids: np.ndarray) -> pd.DataFrame:
        """Table rows for `ids` (with their `id`) and a `score` column added."""
        ids = np.asarray(ids, dtype=np.int64)
        with self.lock:
            scores = self.scores[ids]
        return self.store.take(ids).assign(score=scores)

    def records(self, ids: np.ndarray) -> list[dict]:
        """Table rows for `ids` as dicts (with their `id`, and `score`: NaN when not scored)."""
        ids = np.asarray(ids, dtype=np.int64)
        with self.lock:
            scores = self.scores[ids].tolist()
        rows = self.store.records(ids)
        for row, score in zip(rows, scores, strict=True):
            row["score"] = score
        return rows

    def _cached(self, key: tuple, fn):
        """`fn()` kept under `key` = (what, data version, ...), computed once even when many
        requests miss it at the same time (the others wait for it: 20 clients opening the
        categories of 10 M rows at once ran 20 DuckDB quantile queries, 4.4 GB). When the cache
        grows past PAGE_CACHE, pages and the values of older versions go; the current version's
        summaries (sorted scores: a second to remake for 10 M rows; counts; filter values) stay."""
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        with self.lock:
            running = self._computing.get(key)
            if running is None:
                self._computing[key] = threading.Event()
        if running is not None:
            running.wait()
            hit = self._cache.get(key)
            return hit if hit is not None else fn()  # the first caller failed: try (and fail) here
        try:
            hit = fn()
            with self.lock:
                if len(self._cache) > PAGE_CACHE:
                    self._cache = {k: v for k, v in self._cache.items()
                                   if k[0] not in ("page", "count") and k[1] == self.version}
                self._cache[key] = hit
        finally:
            with self.lock:
                self._computing.pop(key).set()
        return hit

    # ---------------------------------------------------------------- scores
    def collection_scores(self) -> np.ndarray:
        """Sorted finite scores of the collection rows (the reference for percentiles): sorted
        once per data version (10 M scores: 80 MB and about a second)."""
        def compute():
            s = self.scores[: self.n_collection]
            return np.sort(s[np.isfinite(s)])
        return self._cached(("sorted_scores", self.version), compute)

    def n_scored(self) -> int:
        return self._cached(("n_scored", self.version, self.n_rows), lambda: int(np.isfinite(self.scores).sum()))

    def percentile(self, score: float | None, sorted_scores: np.ndarray | None = None) -> float | None:
        """Percent of collection images scoring at or below `score` (None if unknown)."""
        if score is None or not np.isfinite(score):
            return None
        ref = self.collection_scores() if sorted_scores is None else sorted_scores
        if len(ref) == 0:
            return None
        return float(100.0 * np.searchsorted(ref, score, side="right") / len(ref))

    # ---------------------------------------------------------------- filters and sorting
    def filter_options(self) -> dict[str, list[str]]:
        """Label column -> its distinct values (columns with many values get an empty list)."""
        def compute():
            out = {}
            for c in self.label_columns:
                vals = self.store.distinct(c, MAX_FILTER_VALUES + 1)
                out[c] = sorted(vals) if len(vals) <= MAX_FILTER_VALUES else []
            return out
        return self._cached(("filters", self.version, self.n_rows, tuple(self.label_columns)), compute)

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
            state = (self.version, self.n_rows, id(self.predictions), id(self.measures))
            if self._sort_labels is None or self._sort_labels[0] != state:
                self._sort_labels = (state, dict(sort_options(self)))
            return self._sort_labels[1]

    def sort_source(self, sort: str) -> tuple[str | None, np.ndarray | None]:
        """`sorting.sort_source`, kept per state of the data: a grid page and the values shown on
        its cards share it, and an array sort key (a measure or a prediction column of a small
        collection) is built once, not on every page."""
        state = (self.version, self.n_rows, id(self.predictions), id(self.measures))
        return self._cached(("sort_source", *state, sort), lambda: sort_source(self, sort))

    def _check_label_column(self, column: str) -> None:
        if column not in self.label_columns:
            raise ArtmemError(f"unknown label column {column!r}; label columns: {', '.join(self.label_columns)}")

    def page(self, filters: dict[str, str], sort: str = "score", order: str = "desc", text: str = "",
             offset: int = 0, limit: int = 48) -> tuple[int, np.ndarray]:
        """(number of matching rows, ids of rows offset..offset+limit) for the rows matching all
        `filters` (label column -> value) and the search `text` (a substring of the path or of a
        label value), sorted by `sort`; missing values go last, ties in id order.

        One DuckDB query per uncached page (and one count per filter set); see `rowstore.py`.
        """
        for col in filters:
            self._check_label_column(col)
        if sort not in self.sort_keys():
            raise ArtmemError(f"cannot sort by {sort!r}; use score, path, a numeric column, measure:NAME "
                              "or pred:TABLE:COLUMN (GET /api/filters lists them)")
        version, n = self.version, self.n_rows
        fkey = (version, n, tuple(sorted(filters.items())), text.strip().lower())
        where, params = self.store.where(filters, text, self.label_columns)
        if filters and not text.strip():  # counts of every value combination of these columns, once
            cols = tuple(sorted(filters))
            counts = self._cached(("counts", version, n, cols), lambda: self.store.counts_by(list(cols)))
            total = counts.get(tuple(str(filters[c]) for c in cols), 0)
        else:
            total = self._cached(("count", *fkey), lambda: self.store.count(where, params))
        offset = max(0, min(int(offset), total))
        if limit <= 0:
            return total, np.empty(0, dtype=np.int64)

        def compute():
            column, values = self.sort_source(sort)
            return self.store.page_ids(where, params, order, offset, limit, column=column, values=values,
                                       values_key=(version, n, sort), filters=None if text.strip() else filters)
        return total, self._cached(("page", *fkey, sort, order, offset, limit), compute)

    # ---------------------------------------------------------------- one artwork
    def key_of(self, item_id: int) -> str:
        """The stable URL key of a row (a hash of its source and path; see `labels.path_key`)."""
        return path_key(self.store.root_of(item_id), self.path_of(item_id))

    def _large_keys(self) -> tuple[np.ndarray, np.ndarray]:
        with self.lock:
            if self._key_index is None:
                self._key_index = self._large_key_index()
            return self._key_index

    def id_of_key(self, key: str) -> int | None:
        if self.lazy:
            keys, ids = self._large_keys()
            try:
                k = int(key, 16)
            except ValueError:
                return None
            j = int(np.searchsorted(keys, k))
            return int(ids[j]) if j < len(keys) and keys[j] == k else None
        with self.lock:
            n = self.n_rows
            if self._key_index is None or self._key_index[0] != n:  # rebuilt when uploads are added
                frame = self._frame
                keys = [path_key(int(r), str(p)) for r, p in zip(frame["_root"], frame["path"], strict=True)]
                self._key_index = (n, {k: i for i, k in enumerate(keys)})
            return self._key_index[1].get(key)

    def _large_key_index(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted 48-bit URL keys of a large collection and their ids (16 bytes a row): hashed by
        DuckDB when first needed, then kept beside the memory-mapped copy for later starts."""
        file = self.rows_copy.with_suffix(".keys.npy")
        try:
            both = np.load(file)
            return both[0], both[1].astype(np.int64)
        except (OSError, ValueError):
            pass
        got = self.store.sql("SELECT id, CAST('0x' || substr(sha1(CAST(_root AS VARCHAR) || ':' || path), 1, 12) "
                             "AS UBIGINT) AS k FROM items")
        order = np.argsort(got["k"], kind="stable")
        keys, ids = got["k"][order], got["id"][order]
        save_npy(file, np.stack([keys, ids.astype(np.uint64)]))
        return keys, ids

    def labels_of(self, item_id: int) -> dict[str, str]:
        row = self.records(np.array([item_id]))[0]
        out = {}
        for c in self.label_columns:
            v = row.get(c)
            if isinstance(v, str):
                out[c] = v
        for c in self.numeric_columns():
            v = row.get(c)
            if v is not None and v == v:  # missing: None (or NaN in a table that kept it)
                out[c] = f"{v:g}" if isinstance(v, float) else str(v)
        return out

    def measures_of(self, item_id: int) -> dict[str, float | str]:
        """The measures of a row (numbers as floats, text as text; missing ones left out)."""
        return {} if self.measures is None else self.measures.of(item_id)

    def stored_predictions_of(self, item_id: int) -> list[dict]:
        if self.predictions is None:
            return []
        rows = self.predictions[self.predictions["_id"] == item_id].rename(columns={"_table": "table"})
        return [
            {k: (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()
             if k not in ("_id", "path") and not (isinstance(v, float) and np.isnan(v))}
            for r in rows.to_dict("records")
        ]

    # ---------------------------------------------------------------- similar artworks
    def set_embeddings(self, ids: np.ndarray, vectors: np.ndarray, model: str, layer: str) -> None:
        with self.lock:
            self.features = Features(np.asarray(ids, np.int64), normalise_rows(vectors), model, layer)
            self.version += 1

    def _index_hits(self, ids, sims, exclude: int | None) -> list[tuple[int, float]]:
        """Index hits as (collection id, similarity): the hits' paths read from the index (only
        these rows) and matched to the collection in one query."""
        ids, sims = np.asarray(ids, np.int64), np.asarray(sims)
        keep = ids >= 0
        if not keep.any():
            return []
        cids = self._ids_of_paths(self.index.items_of(ids[keep])["path"].astype(str).tolist())
        return [(int(c), float(sim)) for c, sim in zip(cids, sims[keep], strict=True) if c >= 0 and c != exclude]

    def _ids_of_paths(self, paths: list[str]) -> np.ndarray:
        """Collection ids of a few paths (relative, or absolute under the root), -1 where none: by
        the path dictionary of a small collection, or by the URL-key index of a large one (a
        binary search a path, then the rows' paths compared, so two paths sharing a 48-bit key
        cannot be confused; a DuckDB join of a few paths against every path took ~0.1 s at 10 M)."""
        prefix = str(self.root).replace("\\", "/").rstrip("/") + "/"
        norm = [p.replace("\\", "/") for p in paths]
        rel = [p[len(prefix):] if p.startswith(prefix) else p for p in norm]
        if self._path_to_id is not None:
            return np.array([self._path_to_id.get(r, -1) for r in rel], dtype=np.int64)
        keys, ids = self._large_keys()
        out = np.full(len(rel), -1, dtype=np.int64)
        for j, r in enumerate(rel):
            k = np.uint64(int(path_key(COLLECTION, r), 16))
            lo, hi = np.searchsorted(keys, k, "left"), np.searchsorted(keys, k, "right")
            out[j] = next((int(i) for i in ids[lo:hi] if self.path_of(int(i)) == r), -1)
        return out

    def _index_id(self, item_id: int) -> int | None:
        """The index's id of a collection artwork (by its path), None when not indexed. Looked up
        per artwork and remembered, so a 10 M-image index is never mapped whole at start."""
        index = self.index
        if index is None or not self.valid_id(item_id) or self.store.root_of(item_id) != COLLECTION:
            return None
        if item_id not in self._index_ids:
            if len(self._index_ids) > 100_000:
                self._index_ids.clear()
            self._index_ids[item_id] = index.id_of(self.path_of(item_id))
        return self._index_ids[item_id]

    def indexed(self, item_id: int) -> bool:
        """Whether the results' retrieval index holds this artwork's vector."""
        return self._index_id(item_id) is not None

    def similar_to_item(self, item_id: int, k: int = 8) -> list[tuple[int, float]] | None:
        """Top-k of a collection artwork through the retrieval index, from its own indexed vector
        (no feature matrix in memory); None when the index does not hold it."""
        index = self.index
        j = self._index_id(item_id)
        if j is None:
            return None
        try:
            q = index.vectors(np.array([j], dtype=np.int64))
            sims, ids = index.search(q, k, exclude=[j], raw=False)
        except Exception as exc:  # the page still opens; similar artworks say they are unavailable
            logger.warning("index search failed for id %d: %s", item_id, exc)
            return None
        return self._index_hits(ids[0], sims[0], item_id)

    def _similar_index(self, q: np.ndarray, k: int, exclude: int | None) -> list[tuple[int, float]] | None:
        index = self.index
        if index is None or q.shape[0] != index.in_dim:
            return None
        self_id = self._index_id(exclude) if exclude is not None else None
        try:
            sims, ids = index.search(q[None], k, exclude=[self_id])
        except Exception as exc:  # fall back to the exact search on the features
            logger.warning("index search failed (%s); using exact search", exc)
            return None
        return self._index_hits(ids[0], sims[0], exclude)

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

    # ---------------------------------------------------------------- categories
    def _score_table(self):
        import pyarrow as pa

        return pa.table({"v": pa.array(self.scores.copy(), from_pandas=True)})

    def category_summary(self, column: str) -> pd.DataFrame:
        """n, scored, mean, median, sd, quartiles, min and max of the score per category value
        (DuckDB: quantile_cont is numpy's linear quantile, stddev_samp the ddof=1 deviation)."""
        self._check_label_column(column)
        return self._cached(("categories", self.version, self.n_rows, column), lambda: self._category_summary(column))

    def _category_summary(self, column: str) -> pd.DataFrame:
        col = quote_ident(column)
        got = self.store.sql(
            f"SELECT coalesce(CAST(i.{col} AS VARCHAR), '(none)') AS value, count(*) AS n, count(s.v) AS n_scored, "
            "avg(s.v) AS mean, quantile_cont(s.v, 0.5) AS median, stddev_samp(s.v) AS std, "
            "quantile_cont(s.v, 0.25) AS q1, quantile_cont(s.v, 0.75) AS q3, min(s.v) AS min, max(s.v) AS max "
            "FROM items i POSITIONAL JOIN scores s GROUP BY value ORDER BY value", scores=self._score_table())
        rows = []
        for r in pd.DataFrame(got).to_dict("records"):
            stats = {"value": r["value"], "n": int(r["n"]), "n_scored": int(r["n_scored"])}
            if stats["n_scored"]:
                stats.update({k: float(r[k]) for k in ("mean", "median", "q1", "q3", "min", "max")},
                             std=float(r["std"]) if stats["n_scored"] > 1 else 0.0)
            rows.append(stats)
        return pd.DataFrame(rows)

    def scores_for(self, column: str) -> dict[str, np.ndarray]:
        """Finite scores per value of a label column (missing values: "(none)"): one list per
        value from DuckDB, never a text value per row (10 M rows would be GBs of Python strings)."""
        col = quote_ident(column)
        got = self.store.sql(f"SELECT coalesce(CAST(i.{col} AS VARCHAR), '(none)') AS value, "
                             "list(s.v) FILTER (WHERE s.v IS NOT NULL AND isfinite(s.v)) AS v "
                             "FROM items i POSITIONAL JOIN scores s GROUP BY value ORDER BY value",
                             arrow=True, scores=self._score_table())
        lists = got.column("v").combine_chunks()
        return {str(c): (lists[j].values.to_numpy(zero_copy_only=False).astype(np.float64)
                         if lists[j].is_valid else np.empty(0))
                for j, c in enumerate(got.column("value").to_pylist())}
