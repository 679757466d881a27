"""FAISS backend: exact (IndexFlatIP), HNSW or IVF over unit vectors, saved next to the store."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.errors import ArtmemError
from artmem.retrieval.backend_base import (
    EF_SEARCH_CANDIDATES,
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    NPROBE_CANDIDATES,
    Index,
    choose_kind,
    exact_knn,
    ivf_nlist,
    tune_breadth,
    tuning_sample,
)
from artmem.retrieval.filters import filter_mask
from artmem.retrieval.pca import PCA
from artmem.retrieval.store import FeatureStore, store_checksum

logger = logging.getLogger(__name__)

# A filter leaving at most this many candidates is answered by exact search over them.
EXACT_FILTER_MAX = 200_000
ADD_CHUNK = 100_000


def _faiss():
    import faiss

    return faiss


def make_faiss_index(dim: int, kind: str, n_train: int, params: dict):
    """An empty FAISS index of `kind` for unit vectors (inner product); returns (index, params)."""
    faiss = _faiss()
    ip = faiss.METRIC_INNER_PRODUCT
    if kind == "flat":
        return faiss.IndexFlatIP(dim), {}
    if kind == "hnsw":
        m = int(params.get("M", HNSW_M))
        efc = int(params.get("ef_construction", HNSW_EF_CONSTRUCTION))
        index = faiss.IndexHNSWFlat(dim, m, ip)
        index.hnsw.efConstruction = efc
        return index, {"M": m, "ef_construction": efc}
    if kind == "ivf":
        nlist = int(params.get("nlist", ivf_nlist(n_train)))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, ip)  # the wrapper keeps `quantizer` alive
        return index, {"nlist": nlist}
    raise ArtmemError(f"unknown faiss index kind {kind!r}")


def fill_faiss_index(index, vectors: np.ndarray, kind: str, seed: int = 0, progress=None) -> None:
    """Train (IVF) and add `vectors` (already in index space) in chunks."""
    if kind == "ivf":
        nlist = index.nlist
        rng = np.random.default_rng(seed)
        n_train = min(len(vectors), max(64 * nlist, 50_000))
        sample = np.ascontiguousarray(vectors[np.sort(rng.choice(len(vectors), n_train, replace=False))])
        index.train(sample)
        index.make_direct_map()  # lets `check` reconstruct stored vectors by id
    for i in range(0, len(vectors), ADD_CHUNK):
        index.add(np.ascontiguousarray(vectors[i : i + ADD_CHUNK], np.float32))
        if progress:
            progress(min(i + ADD_CHUNK, len(vectors)))


def set_breadth(index, kind: str, value: int) -> None:
    if kind == "hnsw":
        index.hnsw.efSearch = int(value)
    elif kind == "ivf":
        index.nprobe = int(value)


class FaissIndex(Index):
    backend = "faiss"

    def __init__(self, path, meta, pca, index, items: pd.DataFrame, vectors: np.ndarray):
        super().__init__(path, meta, pca)
        self.faiss_index = index
        self._items = items
        self._store = vectors  # normalised store before PCA (memory-mapped when loaded)
        self._lookup = None

    # ---- construction / persistence ----
    @classmethod
    def create(cls, out: Path, store: FeatureStore, meta: dict, pca: PCA | None, kind: str,
               params: dict) -> FaissIndex:
        kind = choose_kind(len(store), kind)
        vecs = pca.transform(store.vectors) if pca is not None else store.vectors
        index, used = make_faiss_index(vecs.shape[1], kind, len(vecs), params)
        from tqdm import tqdm

        with tqdm(total=len(vecs), desc=f"faiss {kind}", unit="vec", disable=len(vecs) < 50_000,
                  file=None) as bar:
            fill_faiss_index(index, vecs, kind, progress=lambda done: bar.update(done - bar.n))
        items = store.items.copy()
        items.insert(0, "id", np.arange(len(items), dtype=np.int64))
        meta.update(kind=kind, params=used, faiss_class=type(index).__name__)
        self = cls(out, meta, pca, index, items, store.vectors)
        self._save(items=True, vectors=True)
        return self

    @classmethod
    def load(cls, path: Path, meta: dict, pca: PCA | None) -> FaissIndex:
        faiss = _faiss()
        for name in ("index.faiss", "items.parquet", "vectors.npy"):
            if not (path / name).exists():
                raise ArtmemError(f"{path}: index file {name} is missing")
        index = faiss.read_index(str(path / "index.faiss"))
        if meta["kind"] == "ivf":
            index.make_direct_map()
        value = (meta.get("tuning") or {}).get("value")
        if value:
            set_breadth(index, meta["kind"], value)
        items = pd.read_parquet(path / "items.parquet")
        vectors = np.load(path / "vectors.npy", mmap_mode="r")
        return cls(path, meta, pca, index, items, vectors)

    def _save(self, items: bool, vectors: bool) -> None:
        faiss = _faiss()
        tmp = self.dir / "index.faiss.tmp"
        faiss.write_index(self.faiss_index, str(tmp))
        os.replace(tmp, self.dir / "index.faiss")
        if items:
            tmp = self.dir / "items.tmp.parquet"
            self._items.to_parquet(tmp, index=False)
            os.replace(tmp, self.dir / "items.parquet")
        if vectors:
            tmp = self.dir / "vectors.tmp.npy"
            np.save(tmp, np.ascontiguousarray(self._store, np.float32))
            os.replace(tmp, self.dir / "vectors.npy")
            self._store = np.load(self.dir / "vectors.npy", mmap_mode="r")
        self.meta["count"] = int(self.faiss_index.ntotal)
        self.meta["store_checksum"] = store_checksum(self._items["path"], self._store)
        self.write_meta()

    # ---- reading ----
    @property
    def items(self) -> pd.DataFrame:
        return self._items

    @property
    def store_vectors(self) -> np.ndarray:
        """The normalised store (before PCA), row i = id i."""
        return self._store

    def vectors(self, ids) -> np.ndarray:
        ids = np.asarray(ids, np.int64)
        v = np.asarray(self._store[ids], np.float32)
        return self.pca.transform(v) if self.pca is not None else v

    def _all_index_vectors(self) -> np.ndarray:
        return self.pca.transform(self._store) if self.pca is not None else np.asarray(self._store)

    def _search(self, q: np.ndarray, k: int, filter: str | None):
        n = len(self._items)
        k_eff = min(k, n)
        if filter:
            sel = np.flatnonzero(filter_mask(self._items, filter))
            if len(sel) == 0:
                return (np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64))
            if len(sel) < n:
                return self._search_subset(q, k, sel)
        sims, ids = self.faiss_index.search(np.ascontiguousarray(q, np.float32), k_eff)
        return self._pad(sims, ids, k)

    @staticmethod
    def _pad(sims, ids, k):
        if sims.shape[1] < k:
            pad = k - sims.shape[1]
            sims = np.pad(sims, ((0, 0), (0, pad)), constant_values=-np.inf)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        return sims.astype(np.float32), ids.astype(np.int64)

    def _search_subset(self, q, k, sel: np.ndarray):
        kind = self.meta["kind"]
        if len(sel) <= EXACT_FILTER_MAX or kind == "flat":
            sims, local = exact_knn(q, self.vectors(sel), min(k, len(sel)))
            ids = np.where(local >= 0, sel[np.clip(local, 0, None)], -1)
            return self._pad(sims, ids, k)
        faiss = _faiss()
        selector = faiss.IDSelectorBatch(sel.astype(np.int64))
        value = (self.meta.get("tuning") or {}).get("value")
        if kind == "hnsw":
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(int(value or 64), 2 * k))
        else:
            params = faiss.SearchParametersIVF(sel=selector, nprobe=int(value or 8))
        sims, ids = self.faiss_index.search(np.ascontiguousarray(q, np.float32), min(k, len(sel)),
                                            params=params)
        return self._pad(sims, ids, k)

    # ---- tuning / updates / checks ----
    def tune(self, target: float = 0.95, k: int = 10) -> dict:
        kind = self.meta["kind"]
        n = len(self._items)
        if kind == "flat" or n <= k + 1:
            return {}
        base = self._all_index_vectors()
        qids, queries, truth = tuning_sample(self.vectors, n, k, lambda q, kk: exact_knn(q, base, kk))
        cands = EF_SEARCH_CANDIDATES if kind == "hnsw" else [
            p for p in NPROBE_CANDIDATES if p <= self.faiss_index.nlist
        ]
        result = tune_breadth(
            lambda q, kk: self.faiss_index.search(q, kk),
            lambda v: set_breadth(self.faiss_index, kind, v),
            cands, queries, qids, truth, target, k,
        )
        result["parameter"] = "efSearch" if kind == "hnsw" else "nprobe"
        return result

    def add(self, store: FeatureStore) -> dict:
        known = set(self._items["path"])
        is_new = ~store.items["path"].isin(known).to_numpy()
        changed = 0
        if (~is_new).any():
            old_ids = np.array([self._path_lookup()[p] for p in store.items["path"][~is_new]])
            diff = np.abs(np.asarray(self._store[old_ids]) - store.vectors[~is_new]).max(axis=1)
            changed = int((diff > 1e-4).sum())
            if changed:
                logger.warning("%d already-indexed images have different features now; they are "
                               "kept as indexed (rebuild the index to update them)", changed)
        new_items = store.items[is_new].copy()
        new_vecs = store.vectors[is_new]
        if len(new_items):
            start = len(self._items)
            new_items.insert(0, "id", np.arange(start, start + len(new_items), dtype=np.int64))
            vecs = self.pca.transform(new_vecs) if self.pca is not None else new_vecs
            for i in range(0, len(vecs), 100_000):
                self.faiss_index.add(np.ascontiguousarray(vecs[i : i + 100_000], np.float32))
            self._items = pd.concat([self._items, new_items], ignore_index=True)
            self._store = np.concatenate([np.asarray(self._store), new_vecs]).astype(np.float32)
            self._lookup = None
            self._save(items=True, vectors=True)
        return {"added": int(len(new_items)), "skipped_existing": int((~is_new).sum()),
                "changed_not_updated": changed, "count": len(self._items)}

    def check(self, sample: int = 200) -> list[str]:
        problems = []
        n_items, n_vec, n_index = len(self._items), len(self._store), int(self.faiss_index.ntotal)
        if not (n_items == n_vec == n_index == int(self.meta["count"])):
            problems.append(f"counts disagree: items {n_items}, store vectors {n_vec}, "
                            f"faiss {n_index}, index.json {self.meta['count']}")
        if not np.array_equal(self._items["id"].to_numpy(), np.arange(n_items)):
            problems.append("item ids are not 0..N-1 in order")
        dup = int(self._items["path"].duplicated().sum())
        if dup:
            problems.append(f"{dup} duplicate paths in the index")
        if self.faiss_index.d != self.index_dim:
            problems.append(f"faiss index is {self.faiss_index.d}-d, index.json says {self.index_dim}")
        checksum = store_checksum(self._items["path"], self._store)
        if checksum != self.meta.get("store_checksum"):
            problems.append("store checksum differs from the one recorded at build/add time "
                            "(items.parquet or vectors.npy changed)")
        if problems:
            return problems
        rng = np.random.default_rng(0)
        ids = np.sort(rng.choice(n_items, size=min(sample, n_items), replace=False))
        expected = self.vectors(ids)
        got = np.vstack([self.faiss_index.reconstruct(int(i)) for i in ids])
        bad = int((np.abs(got - expected).max(axis=1) > 1e-4).sum())
        if bad:
            problems.append(f"{bad} of {len(ids)} sampled index vectors differ from the store")
        norms = np.linalg.norm(np.asarray(self._store[ids]), axis=1)
        if (np.abs(norms - 1) > 1e-3).sum() > (norms < 1e-6).sum():
            problems.append("store vectors are not unit-normalised")
        return problems
