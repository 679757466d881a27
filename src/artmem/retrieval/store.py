"""The feature store: L2-normalised vectors with their image paths and collection metadata.

Built from any `artmem extract` output (any model, any layer: a pretrained network, a trained
classifier's penultimate layer, the painting-style encoder). Cosine similarity is then a plain
inner product, which is what every index here searches.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)

EPS = 1e-12


@dataclass
class FeatureStore:
    """Normalised vectors (N, D) float32 and a table whose row i describes vector i.

    Attributes:
        items: DataFrame with `path` (relative collection path) and metadata columns.
        vectors: (N, D) float32, each row of unit L2 norm (zero vectors stay zero).
        meta: provenance: model, layer, dim, source, collection root.
    """

    items: pd.DataFrame
    vectors: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.items) != len(self.vectors):
            raise ArtmemError(
                f"feature store: {len(self.items)} paths but {len(self.vectors)} vectors"
            )
        if self.vectors.ndim != 2:
            raise ArtmemError(f"feature store: vectors must be 2-D, got shape {self.vectors.shape}")

    def __len__(self) -> int:
        return len(self.items)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def paths(self) -> list[str]:
        return self.items["path"].tolist()


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise unit L2 norm as float32 (all-zero rows are left at zero, not NaN)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        return l2_normalize(x[None])[0]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, EPS)).astype(np.float32, copy=False)


def read_feature_set(src: str | Path) -> tuple[list[str], np.ndarray, dict]:
    """Paths, raw vectors (N, D) and meta of an extract output folder or features file.

    Read with `artmem.batch.results.read_features` (an interrupted job's finished shards too).
    """
    from artmem.batch.results import read_features

    src = Path(src)
    if not src.exists():
        raise ArtmemError(f"{src}: no such features file or folder")
    fs = read_features(src)
    paths, vectors, meta = list(fs.paths), np.asarray(fs.vectors, np.float32), dict(fs.meta)
    if len(paths) == 0:
        raise ArtmemError(f"{src}: the features table is empty")
    if not np.isfinite(vectors).all():
        bad = int((~np.isfinite(vectors)).any(axis=1).sum())
        raise ArtmemError(f"{src}: {bad} feature vectors contain NaN or inf")
    meta.setdefault("source", str(src))
    return paths, vectors, meta


def metadata_for(paths: list[str], collection=None, source: str | Path = "the features") -> pd.DataFrame:
    """The items table for `paths`: `path` plus the collection's columns joined on path.

    Raises:
        ArtmemError: some feature paths are not in the collection (features of another collection:
            their results would have no metadata and name files the collection does not hold).
    """
    items = pd.DataFrame({"path": pd.Series(paths, dtype=str)})
    if collection is None:
        return items
    table = collection.table.drop_duplicates("path")
    joined = items.merge(table, on="path", how="left")
    outside = ~items["path"].isin(table["path"])
    if outside.any():
        raise ArtmemError(f"{source}: {int(outside.sum())} of {len(items)} feature paths (e.g. "
                          f"{items['path'][outside].iloc[0]!r}) are not in collection "
                          f"{getattr(collection, 'name', '')!r}: these features come from another collection")
    return joined


def load_store(features: str | Path, collection=None) -> FeatureStore:
    """Build a `FeatureStore` from an extract output, joined with `collection`'s metadata.

    Duplicate paths keep their first vector (logged); vectors are L2-normalised.
    """
    paths, vectors, meta = read_feature_set(features)
    s = pd.Series(paths)
    dup = s.duplicated().to_numpy()
    if dup.any():
        logger.warning("%d duplicate paths in %s; keeping the first of each", int(dup.sum()), features)
        paths = s[~dup].tolist()
        vectors = vectors[~dup]
    zero = np.linalg.norm(vectors, axis=1) < EPS
    if zero.any():
        logger.warning("%d all-zero feature vectors (they match nothing)", int(zero.sum()))
    items = metadata_for(paths, collection, features)
    meta = {
        "model": meta.get("model"),
        "layer": meta.get("layer"),
        "dim": int(vectors.shape[1]),
        "features": str(Path(features).resolve()),
        **({"collection_root": collection.root, "collection_name": collection.name} if collection else {}),
    }
    if collection is not None:
        outside = len(collection) - int(pd.Series(collection.paths).isin(items["path"]).sum())
        if outside:
            logger.info("%d collection images have no features and are not indexed", outside)
    return FeatureStore(items, l2_normalize(vectors), meta)


def store_checksum(paths: list[str] | pd.Series, vectors: np.ndarray, chunk: int = 65536) -> str:
    """SHA-256 over the ordered paths and the float32 vector bytes (identifies a store exactly)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(str(p).encode("utf-8"))
        h.update(b"\0")
    vectors = np.asarray(vectors)
    h.update(str(vectors.shape).encode())
    for i in range(0, len(vectors), chunk):
        h.update(np.ascontiguousarray(vectors[i : i + chunk], dtype=np.float32).tobytes())
    return "sha256:" + h.hexdigest()
