"""Persistent similarity indexes over a feature store, with one API for FAISS and LanceDB.

An index folder holds `index.json` (model, layer, dims, normalisation, PCA, backend, kind,
parameters, build time, store checksum, history) plus the backend's files:

- faiss:   `index.faiss`, `items.parquet` (row i = vector id i), `vectors.npy` (the normalised
           store, before PCA), optional `pca.npz`.
- lancedb: `lance/` (an embedded, versioned LanceDB database; table `items` with id, path,
           metadata and the indexed vector), optional `pca.npz`.

Kinds (FAISS): `flat` = exact inner product (IndexFlatIP); `hnsw` = IndexHNSWFlat (inner product);
`ivf` = IndexIVFFlat. `auto` picks flat below AUTO_FLAT_MAX vectors, HNSW up to AUTO_HNSW_MAX,
IVF above. Approximate kinds have their search breadth (efSearch / nprobe) tuned at build time on
a sample of the store's own vectors so that recall@10 against exact search reaches the target.
"""

from __future__ import annotations

import json
import logging
import os
import time
from abc import ABC, abstractmethod
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.errors import ArtmemError
from artmem.retrieval.pca import PCA, fit_pca
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


def check_index_folder(out: str | Path) -> dict:
    """The index.json of the index already in `out` ({} for a missing or empty folder).

    Raises:
        ArtmemError: `out` holds anything else (building would overwrite or delete files that
            artmem did not create there).
    """
    out = Path(out)
    if not out.is_dir():
        if out.exists():
            raise ArtmemError(f"{out}: not a folder")
        return {}
    found = sorted(e.name for e in out.iterdir() if not (e.name == "features" and _is_extract_output(e)))
    if not found:
        return {}
    meta_file = out / META_FILE
    try:
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else None
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict) or "backend" not in meta:
        raise ArtmemError(f"{out}: the folder is not empty and is not an artmem index (it holds "
                          f"{found[0]!r}{' and more' if len(found) > 1 else ''}); give an empty or new folder")
    return meta


def _is_extract_output(p: Path) -> bool:
    """`index build --model` extracts into OUT/features first: that folder is artmem's own."""
    return p.is_dir() and ((p / "features.json").exists() or (p / "job.json").exists())


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


def _base_meta(store: FeatureStore, backend: str, pca: PCA | None) -> dict:
    return {
        "format": INDEX_FORMAT,
        "backend": backend,
        "model": store.meta.get("model"),
        "layer": store.meta.get("layer"),
        "dim": store.dim,
        "index_dim": pca.out_dim if pca is not None else store.dim,
        "normalization": "l2",
        "metric": "cosine (inner product of unit vectors)",
        "pca": None if pca is None else {
            "dim": pca.out_dim, "fit_rows": pca.n_fit, "file": "pca.npz",
            "explained_variance": float(pca.explained.sum()),
        },
        "count": len(store),
        "features": store.meta.get("features"),
        "collection_root": store.meta.get("collection_root"),
        "collection_name": store.meta.get("collection_name"),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "history": [],
    }


def build_index(
    store: FeatureStore,
    out: str | Path,
    backend: str = "faiss",
    kind: str = "auto",
    pca_dim: int | None = None,
    target_recall: float = TARGET_RECALL,
    params: dict | None = None,
) -> Index:
    """Build and save an index of `store` in folder `out` (replacing an index already there).

    Args:
        store: the normalised feature store.
        out: index folder.
        backend: "faiss" (in RAM, fastest) or "lancedb" (on disk, SQL filters, versioned).
        kind: faiss index kind: auto, flat, hnsw or ivf.
        pca_dim: project to this many dims first (PCA fitted on up to 100k rows).
        target_recall: recall@10 the approximate search breadth is tuned for.
        params: override build parameters (M, ef_construction, nlist, ...).
    """
    if len(store) == 0:
        raise ArtmemError("cannot index an empty feature store")
    out = Path(out)
    earlier = check_index_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    if backend == "lancedb":  # files of an earlier FAISS index in the same folder
        for name in ("index.faiss", "items.parquet", "vectors.npy"):
            (out / name).unlink(missing_ok=True)
    elif (out / "lance").is_dir() and earlier.get("backend") == "lancedb":
        import shutil

        shutil.rmtree(out / "lance")
    t0 = time.perf_counter()
    pca = None
    if pca_dim:
        pca = fit_pca(store.vectors, pca_dim)
        pca.save(out / "pca.npz")
        logger.info("PCA %d -> %d dims keeps %.1f%% of the variance",
                    store.dim, pca_dim, 100 * float(pca.explained.sum()))
    elif (out / "pca.npz").exists():
        (out / "pca.npz").unlink()
    meta = _base_meta(store, backend, pca)
    meta["store_checksum"] = None
    if backend == "faiss":
        from artmem.retrieval.faiss_backend import FaissIndex

        index = FaissIndex.create(out, store, meta, pca, kind, params or {})
    elif backend == "lancedb":
        from artmem.retrieval.lance_backend import LanceIndex

        index = LanceIndex.create(out, store, meta, pca, params or {})
    else:
        raise ArtmemError(f"unknown backend {backend!r} (faiss or lancedb)")
    t_build = time.perf_counter() - t0
    tuning = index.tune(target_recall) if index.meta["kind"] not in ("flat", "scan") else {}
    index.meta["build_seconds"] = round(t_build, 3)
    index.meta["tuning"] = tuning
    index.meta["history"].append({"op": "build", "count": len(store),
                                  "at": index.meta["created"], "seconds": round(t_build, 3)})
    index.write_meta()
    logger.info("built %s/%s index of %d vectors in %.1f s", backend, index.meta["kind"],
                len(store), t_build)
    return index


def open_index(path: str | Path, version: int | None = None) -> Index:
    """Load an index folder written by `build_index` (LanceDB: optionally an older `version`)."""
    path = Path(path)
    meta_file = path / META_FILE if path.is_dir() else path
    if not meta_file.exists():
        raise ArtmemError(f"{path}: not an index folder (no {META_FILE}; build one with `artmem index build`)")
    path = meta_file.parent
    meta = json.loads(meta_file.read_text())
    if meta.get("format") != INDEX_FORMAT:
        raise ArtmemError(f"{path}: index format {meta.get('format')} is not supported; rebuild it")
    pca = PCA.load(path / "pca.npz") if meta.get("pca") else None
    if meta["backend"] == "faiss":
        from artmem.retrieval.faiss_backend import FaissIndex

        if version is not None:
            raise ArtmemError("--version applies to LanceDB indexes only")
        return FaissIndex.load(path, meta, pca)
    if meta["backend"] == "lancedb":
        from artmem.retrieval.lance_backend import LanceIndex

        return LanceIndex.load(path, meta, pca, version=version)
    raise ArtmemError(f"{path}: unknown backend {meta['backend']!r}")


def add_to_index(index: Index, store: FeatureStore, retune: bool = True) -> dict:
    """Add the new paths of `store` to `index` (already-indexed paths are skipped); saves it."""
    if store.dim != index.in_dim:
        raise ArtmemError(f"new features are {store.dim}-d but the index holds {index.in_dim}-d vectors")
    for key in ("model", "layer"):
        if store.meta.get(key) and index.meta.get(key) and store.meta[key] != index.meta[key]:
            raise ArtmemError(
                f"new features come from {key} {store.meta[key]!r} but the index holds "
                f"{key} {index.meta[key]!r}"
            )
    t0 = time.perf_counter()
    counts = index.add(store)
    counts["seconds"] = round(time.perf_counter() - t0, 3)
    if counts["added"] and retune and index.meta["kind"] not in ("flat", "scan"):
        index.meta["tuning"] = index.tune(index.meta.get("tuning", {}).get("target", TARGET_RECALL))
    if counts["added"]:
        index.meta["history"].append({"op": "add", **counts,
                                      "at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        suggested = choose_kind(len(index))
        if index.backend == "faiss" and index.meta["kind"] == "flat" and suggested != "flat":
            logger.warning("the index now holds %d vectors; rebuild with --kind auto for a faster "
                           "%s index", len(index), suggested)
    index.write_meta()
    return counts


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


def check_against_features(index: Index, store: FeatureStore, sample: int = 2000) -> dict:
    """Compare an index with a (possibly newer) feature store: paths missing, extra, changed."""
    items = index.items
    indexed = set(items["path"])
    current = set(store.items["path"])
    both = [p for p in store.items["path"] if p in indexed]
    changed = 0
    if both:
        rng = np.random.default_rng(0)
        pick = sorted(rng.choice(len(both), size=min(sample, len(both)), replace=False).tolist())
        paths = [both[i] for i in pick]
        pos = {p: i for i, p in enumerate(store.items["path"])}
        ids = np.array([index.id_of(p) for p in paths])
        expected = index.to_index_space(store.vectors[[pos[p] for p in paths]])
        changed = int((np.abs(index.vectors(ids) - expected).max(axis=1) > 1e-4).sum())
    return {"not_indexed": len(current - indexed), "not_in_features": len(indexed - current),
            "changed_in_sample": changed, "compared": min(sample, len(both))}
