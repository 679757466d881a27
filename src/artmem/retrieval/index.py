"""Persistent similarity indexes over a feature store, with one API for FAISS and LanceDB.

An index folder holds `index.json` (model, layer, dims, normalisation, PCA, backend, kind,
parameters, build time, store checksum, history) plus the backend's files:

- faiss:   `index.faiss`, `items.parquet` (row i = vector id i), `vectors.npy` (the normalised
           store, before PCA), optional `pca.npz`.
- lancedb: `lance/` (an embedded, versioned LanceDB database; table `items` with id, path,
           metadata and the indexed vector), optional `pca.npz`.

- faiss/ivfpq (on disk): see `ondisk_backend` (IVF-PQ lists on disk + `vectors.f32` for re-ranking).

Kinds (FAISS): `flat` = exact inner product (IndexFlatIP); `hnsw` = IndexHNSWFlat (inner product);
`ivf` = IndexIVFFlat; `ivfpq` = the on-disk IVF-PQ index, built by streaming the features.
`auto` picks flat below AUTO_FLAT_MAX vectors, HNSW up to AUTO_HNSW_MAX, IVF above; and, from
the CLI (before anything is loaded), ivfpq when N x D float32 would take more than
ONDISK_RAM_FRACTION of the available memory. Approximate kinds have their search breadth (efSearch / nprobe) tuned at build time on
a sample of the store's own vectors so that recall@10 against exact search reaches the target.
The `Index` interface and the helpers the backends share live in `backend_base`.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from artmem.errors import ArtmemError
from artmem.retrieval.backend_base import (
    INDEX_FORMAT,
    META_FILE,
    TARGET_RECALL,
    TUNE_QUERIES,
    Index,
    choose_kind,
    drop_self,
    exact_knn_chunks,
    recall_at_k,
)
from artmem.retrieval.pca import PCA, fit_pca
from artmem.retrieval.store import FeatureStore

logger = logging.getLogger(__name__)

# The in-RAM FAISS path holds the raw and the normalised vectors plus the index (~3 x N x D x 4
# bytes at its peak): above this fraction of the available memory for N x D x 4, auto goes on disk.
ONDISK_RAM_FRACTION = 0.25


def available_ram() -> int:
    """Bytes of memory available to a new allocation now (psutil's `available`)."""
    import psutil

    return int(psutil.virtual_memory().available)


def wants_on_disk(n: int, dim: int, ram: int | None = None) -> bool:
    """Whether `kind=auto` builds the on-disk IVF-PQ index for n x dim features."""
    return n * dim * 4 > ONDISK_RAM_FRACTION * (available_ram() if ram is None else ram)


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
    if kind == "ivfpq":
        if pca_dim:
            raise ArtmemError("--pca does not apply to the on-disk index (its PQ codes compress already)")
        if backend != "faiss":
            raise ArtmemError("the on-disk IVF-PQ index (--on-disk / --kind ivfpq) is a faiss index")
        from artmem.retrieval.stream import StoreStream

        return build_ondisk_index(StoreStream(store), out, target_recall, params)
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
    if earlier.get("kind") == "ivfpq":
        from artmem.retrieval.ondisk_build import clear_files

        clear_files(out)
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


def build_ondisk_index(stream, out: str | Path, target_recall: float = TARGET_RECALL,
                       params: dict | None = None, progress=None) -> Index:
    """Build the on-disk IVF-PQ index of a feature stream in folder `out`, or resume its build.

    A folder holding an unfinished build of the same features with the same parameters
    continues from its last completed chunk; anything else there is replaced.

    Args:
        stream: `FeatureStream` (a features dataset read in chunks) or `StoreStream`.
        params: nlist, pq_m, chunk_rows, seed.
        progress: called with the rows done after each chunk.
    """
    from artmem.retrieval.ondisk_backend import OnDiskIndex

    if len(stream) == 0:
        raise ArtmemError("cannot index an empty feature store")
    out = Path(out)
    earlier = check_index_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("index.faiss", "items.parquet", "vectors.npy", "pca.npz"):  # another kind's files
        (out / name).unlink(missing_ok=True)
    if (out / "lance").is_dir() and earlier.get("backend") == "lancedb":
        import shutil

        shutil.rmtree(out / "lance")
    building = earlier.get("kind") == "ivfpq" and (earlier.get("build") or {}).get("state") == "building"
    meta = earlier if building else {**_base_meta(stream, "faiss", None), "store_checksum": None}
    t0 = time.perf_counter()
    index = OnDiskIndex.build(out, stream, meta, params or {}, progress=progress)
    t_build = time.perf_counter() - t0
    index.meta["tuning"] = index.tune(target_recall)
    index.meta["build_seconds"] = round(t_build, 3)
    index.meta["history"].append({"op": "build", "count": len(index), "at": index.meta["created"],
                                  "seconds": round(t_build, 3)})
    index.write_meta()
    logger.info("built the on-disk ivfpq index of %d vectors in %.1f s", len(index), t_build)
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
    if meta["backend"] == "faiss" and meta.get("kind") == "ivfpq":
        from artmem.retrieval.ondisk_backend import OnDiskIndex

        if version is not None:
            raise ArtmemError("--version applies to LanceDB indexes only")
        return OnDiskIndex.load(path, meta, pca)
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
    """Add the new paths of `store` to `index` (already-indexed paths are skipped); saves it.

    For an on-disk index `store` may also be a `FeatureStream` (new features read in chunks).
    """
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


def remove_from_index(index: Index, paths: list[str]) -> dict:
    """Remove images by path (on-disk indexes: tombstones that every search leaves out)."""
    counts = index.remove(paths)
    if counts["removed"]:
        index.meta["history"].append({"op": "remove", **counts,
                                      "at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        index.write_meta()
    return counts


def measure_recall(index: Index, queries: int = 200, k: int = 10, seed: int = 1) -> dict:
    """recall@k and single-query latency of `index.search` against exact search.

    The queries are stored vectors of images drawn with another seed than the tuning queries
    and excluding them (held out from tuning), unless the collection is too small to leave
    `queries` images besides the tuning ones (`held_out_from_tuning` says which); each query's
    own image is left out of both result lists. The exact neighbours stream over the stored vectors in chunks, so this works
    for indexes larger than RAM.
    """
    n = len(index)
    removed = index.removed_ids()
    tune_ids = np.random.default_rng(0).choice(n, size=min(TUNE_QUERIES, n), replace=False)
    live = np.setdiff1d(np.arange(n), removed)
    pool = np.setdiff1d(live, tune_ids)
    held_out = len(pool) >= min(queries, len(live))
    if not held_out:
        pool = live
    if len(pool) == 0 or n <= k + 1:
        return {"queries": 0, "k": k}
    qids = np.sort(np.random.default_rng(seed).choice(pool, size=min(queries, len(pool)), replace=False))
    vecs = index.vectors(qids)
    t0 = time.perf_counter()
    s, i = exact_knn_chunks(vecs, index.iter_index_vectors(), k + 1, removed)
    truth, _ = drop_self(i, s, qids, k)
    t_exact = time.perf_counter() - t0
    found = np.full((len(qids), k), -1, np.int64)
    lat = []
    for r, q in enumerate(qids.tolist()):
        t = time.perf_counter()
        _, ids = index.search(vecs[r : r + 1], k, exclude=[q], raw=False)
        lat.append(time.perf_counter() - t)
        found[r] = ids[0]
    ms = np.asarray(lat) * 1e3
    return {"queries": len(qids), "k": k, "recall": round(recall_at_k(found, truth), 4),
            "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "exact_seconds": round(t_exact, 2), "held_out_from_tuning": bool(held_out)}
