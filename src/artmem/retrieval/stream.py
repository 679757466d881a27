"""Feature streams: a features dataset read chunk by chunk, for indexes built without loading it.

`FeatureStream` wraps `artmem.batch.results.iter_feature_batches` (a merged features.parquet or a
directory of Parquet shards, read lazily) and re-cuts its record batches into chunks of exactly
`rows` rows, so that chunk k always covers rows [k*rows, (k+1)*rows) of the dataset: a resumed
build skips whole chunks by row number. Each chunk comes as (items DataFrame with `path` and the
collection's metadata, L2-normalised float32 vectors). `StoreStream` gives an in-memory
`FeatureStore` the same interface.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.errors import ArtmemError
from artmem.retrieval.store import FeatureStore, l2_normalize, metadata_for


class StoreStream:
    """A `FeatureStore` (already in memory) seen as a stream of chunks."""

    def __init__(self, store: FeatureStore):
        self.store = store
        self.meta = dict(store.meta)

    def __len__(self) -> int:
        return len(self.store)

    @property
    def dim(self) -> int:
        return self.store.dim

    @property
    def source_id(self) -> str:
        return f"store:{self.meta.get('features') or 'memory'}:{len(self)}x{self.dim}"

    def chunks(self, rows: int, skip_rows: int = 0) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
        for s in range(skip_rows, len(self.store), rows):
            items = self.store.items.iloc[s : s + rows].reset_index(drop=True)
            yield items, np.ascontiguousarray(self.store.vectors[s : s + rows], np.float32)


class FeatureStream:
    """The features of an `artmem extract` output, streamed (never all in memory).

    Args:
        features: extract output folder, features.parquet, or a folder of Parquet shards.
        collection: joined on `path` for metadata columns (optional).
    """

    def __init__(self, features: str | Path, collection=None):
        from artmem.batch.results import open_dataset

        self.features = Path(features)
        if not self.features.exists():
            raise ArtmemError(f"{features}: no such features file or folder")
        self.collection = collection
        self._dataset = open_dataset(self.features, "features")
        self._count = int(self._dataset.count_rows())
        if self._count == 0:
            raise ArtmemError(f"{features}: the features table is empty")
        base = self.features if self.features.is_dir() else self.features.parent
        raw = {}
        if (base / "features.json").is_file():
            raw = json.loads((base / "features.json").read_text())
        self._dim = int(raw["dim"]) if raw.get("dim") else None
        self.meta = {
            "model": raw.get("model"), "layer": raw.get("layer"),
            "features": str(self.features.resolve()),
            **({"collection_root": collection.root, "collection_name": collection.name}
               if collection is not None else {}),
        }

    def __len__(self) -> int:
        return self._count

    @property
    def dim(self) -> int:
        if self._dim is None:  # no features.json: the first batch tells
            _, vecs = next(self._batches(1024))
            self._dim = int(vecs.shape[1])
        return self._dim

    @property
    def source_id(self) -> str:
        return f"features:{self.meta['features']}:{len(self)}"

    def _batches(self, rows: int):
        """(paths, vectors) record batches of the dataset, in order, about one batch in memory
        (`iter_feature_batches` scans without pre-buffering or read-ahead)."""
        from artmem.batch.results import iter_feature_batches

        yield from iter_feature_batches(self.features, rows)

    def chunks(self, rows: int, skip_rows: int = 0) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
        """(items, unit vectors) chunks of exactly `rows` rows (the last may be shorter),
        starting at dataset row `skip_rows` (a multiple of `rows`)."""
        paths: list[str] = []
        blocks: list[np.ndarray] = []
        held = 0
        seen = 0  # rows of the dataset passed so far
        for batch_paths, vecs in self._batches(min(rows, 65536)):
            if seen + len(batch_paths) <= skip_rows:  # a resumed build: already indexed
                seen += len(batch_paths)
                continue
            cut = max(0, skip_rows - seen)
            seen += len(batch_paths)
            paths += batch_paths[cut:]
            blocks.append(vecs[cut:])
            held += len(batch_paths) - cut
            while held >= rows:
                buf = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
                yield self._chunk(paths[:rows], buf[:rows])
                paths, blocks, held = paths[rows:], [buf[rows:]], held - rows
        if held:
            yield self._chunk(paths, np.concatenate(blocks))

    def _chunk(self, paths: list[str], vecs: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
        if self._dim is not None and vecs.shape[1] != self._dim:
            raise ArtmemError(f"{self.features}: vectors are {vecs.shape[1]}-d, features.json says {self._dim}")
        if not np.isfinite(vecs).all():
            bad = int((~np.isfinite(vecs)).any(axis=1).sum())
            raise ArtmemError(f"{self.features}: {bad} feature vectors contain NaN or inf")
        items = metadata_for(paths, self.collection, self.features)
        return items, np.ascontiguousarray(l2_normalize(vecs))
