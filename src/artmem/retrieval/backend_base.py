"""What every index backend shares: the `Index` interface, exact search, recall and tuning helpers.

The backends (`faiss_backend`, `lance_backend`) import this module, never `index.py`, which in turn
imports the backends to build and open index folders; so there is no import circle.
"""

from __future__ import annotations

import json
import logging
import os
import time
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.errors import ArtmemError
from artmem.retrieval.pca import PCA
from artmem.retrieval.store import FeatureStore, l2_normalize

logger = logging.getLogger(__name__)
logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its CPU-feature probing is noise

INDEX_FORMAT = 1
META_FILE = "index.json"
# Up to this many vectors exact search is <= 10M multiply-adds per 512-d query: no reason to approximate.
AUTO_FLAT_MAX = 20_000
# Above this HNSW construction on a few cores takes too long (~1M/4 min here); IVF trains on a sample.
AUTO_HNSW_MAX = 5_000_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
EF_SEARCH_CANDIDATES = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024)
NPROBE_CANDIDATES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256, 512)
TARGET_RECALL = 0.95
# Tuning queries are collection vectors (self excluded); outside images are a little harder, so
# the breadth is tuned for the target plus this margin.
TUNE_MARGIN = 0.02
TUNE_QUERIES = 500


def choose_kind(n: int, kind: str = "auto") -> str:
    """The FAISS index kind for `n` vectors (`auto` -> flat / hnsw / ivf by size)."""
    if kind not in ("auto", "flat", "hnsw", "ivf"):
        raise ArtmemError(f"unknown index kind {kind!r} (auto, flat, hnsw, ivf)")
    if kind != "auto":
        return kind
    if n <= AUTO_FLAT_MAX:
        return "flat"
    return "hnsw" if n <= AUTO_HNSW_MAX else "ivf"


def ivf_nlist(n: int) -> int:
    """Number of IVF cells: ~4 sqrt(n), at most n / 39 so each cell gets training points."""
    return int(max(1, min(4 * np.sqrt(n), n // 39)))


def exact_knn(queries: np.ndarray, base: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product (faiss brute force, no copy of `base`)."""
    import faiss

    k = min(k, len(base))
    sims, ids = faiss.knn(np.ascontiguousarray(queries, np.float32),
                          np.ascontiguousarray(base, np.float32), k,
                          metric=faiss.METRIC_INNER_PRODUCT)
    return sims, ids


def exact_knn_chunks(queries: np.ndarray, chunks, k: int,
                     exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product over a base given as (first id, block) chunks.

    Only one block is in memory at a time, so the base may be larger than RAM. Ids in the sorted
    array `exclude` (removed images) are left out. Missing results have id -1.
    """
    q = np.ascontiguousarray(queries, np.float32)
    best_s = np.full((len(q), k), -np.inf, np.float32)
    best_i = np.full((len(q), k), -1, np.int64)
    exclude = np.zeros(0, np.int64) if exclude is None else np.asarray(exclude, np.int64)
    for start, block in chunks:
        if not len(block):
            continue
        lo, hi = np.searchsorted(exclude, [start, start + len(block)])
        sims, ids = exact_knn(q, block, min(len(block), k + int(hi - lo)))
        ids = np.where(ids >= 0, ids + start, -1)
        if hi > lo:  # drop the excluded ones (they were fetched as extra candidates)
            sims = np.where(np.isin(ids, exclude[lo:hi]), -np.inf, sims)
        all_s = np.concatenate([best_s, sims], axis=1)
        all_i = np.concatenate([best_i, ids], axis=1)
        all_i[~np.isfinite(all_s)] = -1
        order = np.argsort(-all_s, axis=1, kind="stable")[:, :k]
        best_s = np.take_along_axis(all_s, order, axis=1)
        best_i = np.take_along_axis(all_i, order, axis=1)
    return best_s, best_i


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row of `truth` present in the same row of `found`."""
    k = truth.shape[1]
    hits = [len(set(f[f >= 0].tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits) / k) if len(hits) else 1.0


def drop_self(ids: np.ndarray, sims: np.ndarray, self_ids: np.ndarray, k: int):
    """Remove each query's own id from its result row, keeping the first k of the rest."""
    out_i = np.full((len(ids), k), -1, np.int64)
    out_s = np.full((len(ids), k), -np.inf, np.float32)
    for r, (row_i, row_s, s) in enumerate(zip(ids, sims, self_ids, strict=True)):
        keep = (row_i != s) & (row_i >= 0)
        ri, rs = row_i[keep][:k], row_s[keep][:k]
        out_i[r, : len(ri)], out_s[r, : len(rs)] = ri, rs
    return out_i, out_s


class Index(ABC):
    """A loaded index folder. Vectors given to `search` are in the original feature space.

    Attributes:
        dir: the index folder.
        meta: the contents of index.json.
        pca: the PCA stored with the index, or None.
    """

    backend = ""

    def __init__(self, path: Path, meta: dict, pca: PCA | None):
        self.dir = Path(path)
        self.meta = meta
        self.pca = pca

    # ---- common ----
    def __len__(self) -> int:
        return int(self.meta["count"])

    @property
    def in_dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def index_dim(self) -> int:
        return int(self.meta["index_dim"])

    def to_index_space(self, vectors: np.ndarray) -> np.ndarray:
        """Normalise raw feature vectors and apply the stored PCA (queries go through this)."""
        v = np.asarray(vectors, np.float32)
        if v.shape[-1] != self.in_dim:
            raise ArtmemError(
                f"query vector has {v.shape[-1]} dims but index {self.dir} holds "
                f"{self.in_dim}-d {self.meta.get('model')}/{self.meta.get('layer')} features"
            )
        v = l2_normalize(v)
        return self.pca.transform(v) if self.pca is not None else v

    def id_of(self, path: str) -> int | None:
        """Vector id of a collection path (relative, or absolute under the collection root)."""
        lookup = self._path_lookup()
        if path in lookup:
            return lookup[path]
        root = self.meta.get("collection_root")
        if root:
            try:
                rel = Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
            except (ValueError, OSError):
                return None
            return lookup.get(rel)
        return None

    def _path_lookup(self) -> dict[str, int]:
        if getattr(self, "_lookup", None) is None:
            self._lookup = dict(zip(self.items["path"], self.items["id"], strict=True))
        return self._lookup

    def write_meta(self) -> Path:
        path = self.dir / META_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.meta, indent=2, default=str) + "\n")
        os.replace(tmp, path)
        return path

    def search(self, queries: np.ndarray, k: int = 10, filter: str | None = None,
               exclude: list[int | None] | None = None, raw: bool = True):
        """Top-k by cosine similarity for each query row.

        Args:
            queries: (m, D) raw features (normalised + projected here) or, with raw=False,
                (m, d) vectors already in index space.
            k: results per query.
            filter: metadata condition (see `artmem.retrieval.filters`).
            exclude: per query, an id to leave out (the query itself), or None.

        Returns:
            (sims (m, k) float32, ids (m, k) int64); missing results have id -1.
        """
        q = np.atleast_2d(np.asarray(queries, np.float32))
        q = self.to_index_space(q) if raw else l2_normalize(q)
        extra = 1 if exclude is not None and any(e is not None for e in exclude) else 0
        sims, ids = self._search(q, k + extra, filter)
        if extra:
            self_ids = np.array([-2 if e is None else e for e in exclude], np.int64)
            ids, sims = drop_self(ids, sims, self_ids, k)
        return sims[:, :k], ids[:, :k]

    def items_of(self, ids) -> pd.DataFrame:
        """The items rows of `ids`, in that order (on-disk indexes read only these rows)."""
        return self.items.iloc[np.asarray(ids, np.int64)].reset_index(drop=True)

    def removed_ids(self) -> np.ndarray:
        """Sorted ids of removed images, which no search returns (only on-disk indexes remove)."""
        return np.zeros(0, np.int64)

    def remove(self, paths: list[str]) -> dict:
        raise ArtmemError(f"{self.backend}/{self.meta.get('kind')} indexes cannot remove images; "
                          "rebuild without them, or build an on-disk index (`--on-disk`)")

    def iter_index_vectors(self, chunk: int = 65536):
        """(first id, index-space vectors) blocks over all ids in order, one block in memory."""
        for s in range(0, len(self), chunk):
            yield s, self.vectors(np.arange(s, min(s + chunk, len(self))))

    # ---- backend specific ----
    @property
    @abstractmethod
    def items(self) -> pd.DataFrame:
        """Table with `id`, `path` and metadata, row order = id."""

    @abstractmethod
    def _search(self, q: np.ndarray, k: int, filter: str | None): ...

    @abstractmethod
    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Index-space vectors of the given ids."""

    @abstractmethod
    def add(self, store: FeatureStore) -> dict:
        """Add the store rows whose paths are not yet indexed; returns counts."""

    @abstractmethod
    def check(self, sample: int = 200) -> list[str]:
        """Consistency problems between the index and its store (empty list = consistent)."""

    @abstractmethod
    def tune(self, target: float = TARGET_RECALL, k: int = 10) -> dict: ...


def tune_breadth(search_fn, set_fn, candidates, queries: np.ndarray, self_ids: np.ndarray,
                 truth: np.ndarray, target: float, k: int) -> dict:
    """Smallest search breadth whose recall@k on `queries` reaches `target`.

    `search_fn(q, k)` returns (sims, ids); `set_fn(value)` sets the breadth.
    """
    tried = []
    goal = min(0.995, target + TUNE_MARGIN)
    for value in candidates:
        set_fn(value)
        t0 = time.perf_counter()
        sims, ids = search_fn(queries, k + 1)
        per_query = (time.perf_counter() - t0) / len(queries)
        ids, _ = drop_self(ids, sims, self_ids, k)
        rec = recall_at_k(ids, truth)
        tried.append({"value": value, "recall": round(rec, 4), "ms_per_query": round(1e3 * per_query, 4)})
        if rec >= goal:
            return {"value": value, "recall": round(rec, 4), "target": target, "tuned_for": goal, "k": k,
                    "queries": len(queries), "tried": tried}
    best = max(tried, key=lambda t: t["recall"])
    set_fn(best["value"])
    logger.warning("search breadth %s reaches recall@%d %.3f only (target %.2f)",
                   best["value"], k, best["recall"], target)
    return {"value": best["value"], "recall": best["recall"], "target": target, "tuned_for": goal, "k": k,
            "queries": len(queries), "tried": tried}


def tuning_sample(vectors_fn, n: int, k: int, base_fn, seed: int = 0):
    """Sample query ids and their exact neighbour ids (self excluded) for tuning."""
    rng = np.random.default_rng(seed)
    qids = np.sort(rng.choice(n, size=min(TUNE_QUERIES, n), replace=False))
    queries = vectors_fn(qids)
    sims, ids = base_fn(queries, k + 1)
    truth, _ = drop_self(ids, sims, qids, k)
    return qids, queries, truth
