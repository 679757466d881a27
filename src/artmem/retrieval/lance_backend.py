"""LanceDB backend: an embedded, on-disk (or object-storage) versioned table behind the Index API.

For collections whose vectors outgrow RAM. The table `items` holds id, path, the collection's
metadata columns and the (normalised, optionally PCA-projected) vector. Tables with at least
LANCE_ANN_MIN rows get an IVF_HNSW_SQ index with cosine distance; smaller ones are scanned exactly
(an IVF index needs enough rows per partition to train). Filters are SQL `WHERE` clauses applied
before the vector search (prefiltering). Every add creates a new table version; `open_index(path,
version=N)` reads an older one.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.errors import ArtmemError
from artmem.retrieval.backend_base import (
    Index,
    exact_knn,
    tune_breadth,
    tuning_sample,
)
from artmem.retrieval.filters import to_sql_where
from artmem.retrieval.pca import PCA
from artmem.retrieval.store import FeatureStore, store_checksum

logger = logging.getLogger(__name__)

TABLE = "items"
LANCE_ANN_MIN = 20_000
LANCE_NPROBES = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256)
LANCE_EF = 100
LANCE_REFINE = 2
READ_CHUNK = 100_000


def _arrow_table(items: pd.DataFrame, vectors: np.ndarray):
    import pyarrow as pa

    table = pa.Table.from_pandas(items.reset_index(drop=True), preserve_index=False)
    flat = pa.array(np.ascontiguousarray(vectors, np.float32).ravel(), pa.float32())
    return table.append_column("vector", pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]))


class LanceIndex(Index):
    backend = "lancedb"

    def __init__(self, path, meta, pca, table):
        super().__init__(path, meta, pca)
        self.table = table
        self._items = None
        self._lookup = None

    @staticmethod
    def _connect(path: Path, meta: dict):
        import lancedb

        uri = meta.get("lance_uri") or str(path / "lance")
        return lancedb.connect(uri)

    @classmethod
    def create(cls, out: Path, store: FeatureStore, meta: dict, pca: PCA | None,
               params: dict) -> LanceIndex:
        meta["lance_uri"] = params.get("uri") or str((out / "lance").resolve())
        db = cls._connect(out, meta)
        vecs = pca.transform(store.vectors) if pca is not None else store.vectors
        items = store.items.copy()
        items.insert(0, "id", np.arange(len(items), dtype=np.int64))
        table = db.create_table(TABLE, _arrow_table(items, vecs), mode="overwrite")
        self = cls(out, meta, pca, table)
        self.meta["kind"] = "scan"
        self.meta["params"] = {}
        if len(items) >= int(params.get("ann_min", LANCE_ANN_MIN)):
            self._create_ann(params)
        self._items = items.drop(columns=[]).reset_index(drop=True)
        self._finish()
        return self

    def _create_ann(self, params: dict) -> None:
        from lancedb.index import IvfHnswSq

        m = int(params.get("M", 20))
        efc = int(params.get("ef_construction", 150))
        nparts = params.get("num_partitions")
        self.table.create_index("vector", config=IvfHnswSq(
            distance_type="cosine", num_partitions=nparts, m=m, ef_construction=efc))
        self.meta["kind"] = "ivf_hnsw_sq"
        self.meta["params"] = {"index_type": "IVF_HNSW_SQ", "distance": "cosine", "M": m,
                               "ef_construction": efc, "num_partitions": nparts or "lance default",
                               "ef": LANCE_EF, "refine_factor": LANCE_REFINE}

    def _finish(self) -> None:
        self.meta["count"] = int(self.table.count_rows())
        self.meta["table_version"] = int(self.table.version)
        self.meta["store_checksum"] = self._checksum()
        self.write_meta()

    @classmethod
    def load(cls, path: Path, meta: dict, pca: PCA | None, version: int | None = None) -> LanceIndex:
        db = cls._connect(path, meta)
        try:
            table = db.open_table(TABLE)
        except Exception as exc:
            raise ArtmemError(f"{path}: cannot open the LanceDB table ({exc})") from exc
        if version is not None:
            table.checkout(int(version))
            meta = {**meta, "count": int(table.count_rows()), "checked_out_version": int(version)}
        return cls(path, meta, pca, table)

    # ---- reading ----
    def _read(self, columns: list[str], where: str | None = None) -> pd.DataFrame:
        q = self.table.search().select(columns)
        if where:
            q = q.where(where)
        return q.limit(None).to_pandas()

    @property
    def items(self) -> pd.DataFrame:
        if self._items is None:
            cols = [f.name for f in self.table.schema if f.name != "vector"]
            self._items = self._read(cols).sort_values("id").reset_index(drop=True)
        return self._items

    def vectors(self, ids) -> np.ndarray:
        ids = np.asarray(ids, np.int64)
        out = np.zeros((len(ids), self.index_dim), np.float32)
        uniq = np.unique(ids)
        found = {}
        for i in range(0, len(uniq), 1000):
            chunk = uniq[i : i + 1000]
            df = self._read(["id", "vector"], f"id IN ({','.join(map(str, chunk.tolist()))})")
            found.update(zip(df["id"].tolist(), df["vector"], strict=True))
        for r, i in enumerate(ids.tolist()):
            if i not in found:
                raise ArtmemError(f"id {i} is not in the LanceDB table")
            out[r] = found[i]
        return out

    def _ordered_vectors(self, start: int, stop: int) -> pd.DataFrame:
        df = self._read(["id", "path", "vector"], f"id >= {start} AND id < {stop}")
        return df.sort_values("id")

    def _checksum(self) -> str:
        paths, vecs = [], []
        for s in range(0, int(self.table.count_rows()), READ_CHUNK):
            df = self._ordered_vectors(s, s + READ_CHUNK)
            paths.extend(df["path"].tolist())
            vecs.append(np.stack(df["vector"].to_numpy()).astype(np.float32) if len(df) else
                        np.zeros((0, self.index_dim), np.float32))
        v = np.concatenate(vecs) if vecs else np.zeros((0, self.index_dim), np.float32)
        return store_checksum(paths, v)

    def _query(self, q: np.ndarray, k: int, where: str | None, nprobes: int | None = None):
        builder = self.table.search(q, vector_column_name="vector").distance_type("cosine")
        builder = builder.select(["id", "vector", "_distance"]).limit(k)
        if where:
            builder = builder.where(where, prefilter=True)
        if self.meta["kind"] != "scan":
            value = nprobes or (self.meta.get("tuning") or {}).get("value") or 20
            builder = builder.nprobes(int(value)).ef(max(LANCE_EF, 2 * k)).refine_factor(LANCE_REFINE)
        return builder

    def _search(self, q: np.ndarray, k: int, filter: str | None, nprobes: int | None = None):
        m = len(q)
        sims = np.full((m, k), -np.inf, np.float32)
        ids = np.full((m, k), -1, np.int64)
        where = to_sql_where(filter, [f.name for f in self.table.schema if f.name != "vector"]) \
            if filter else None
        for r in range(m):
            try:
                df = self._query(q[r], k, where, nprobes).to_pandas()
            except Exception as exc:
                if filter:
                    raise ArtmemError(f"bad filter {filter!r}: {exc}") from exc
                raise
            if not len(df):
                continue
            v = np.stack(df["vector"].to_numpy()).astype(np.float32)
            s = v @ q[r]  # exact cosine of unit vectors (the ANN distance is approximate)
            order = np.argsort(-s, kind="stable")[:k]
            sims[r, : len(order)] = s[order]
            ids[r, : len(order)] = df["id"].to_numpy()[order]
        return sims, ids

    # ---- tuning / updates / checks ----
    def tune(self, target: float = 0.95, k: int = 10) -> dict:
        n = len(self)
        if self.meta["kind"] == "scan" or n <= k + 1:
            return {}
        chunks = [np.stack(self._ordered_vectors(s, s + READ_CHUNK)["vector"].to_numpy())
                  for s in range(0, n, READ_CHUNK)]
        base = np.concatenate(chunks).astype(np.float32)
        qids, queries, truth = tuning_sample(lambda ids: base[ids], n, k,
                                             lambda q, kk: exact_knn(q, base, kk))
        qids, queries, truth = qids[:200], queries[:200], truth[:200]
        state = {"nprobes": None}
        result = tune_breadth(
            lambda q, kk: self._search(q, kk, None, state["nprobes"]),
            lambda v: state.update(nprobes=v), LANCE_NPROBES, queries, qids, truth, target, k,
        )
        result["parameter"] = "nprobes"
        return result

    def add(self, store: FeatureStore) -> dict:
        if "checked_out_version" in self.meta:
            raise ArtmemError("cannot add to an older table version; open the latest one")
        items = self.items
        is_new = ~store.items["path"].isin(set(items["path"])).to_numpy()
        new_items = store.items[is_new].copy()
        if len(new_items):
            start = int(items["id"].max()) + 1 if len(items) else 0
            new_items.insert(0, "id", np.arange(start, start + len(new_items), dtype=np.int64))
            vecs = store.vectors[is_new]
            vecs = self.pca.transform(vecs) if self.pca is not None else vecs
            import pyarrow as pa

            new_table = _arrow_table(new_items, vecs)
            new_table = new_table.cast(pa.schema([self.table.schema.field(n) if n in
                                                  self.table.schema.names else new_table.schema.field(n)
                                                  for n in new_table.schema.names]))
            self.table.add(new_table)
            if self.meta["kind"] == "scan" and self.table.count_rows() >= LANCE_ANN_MIN:
                self._create_ann(self.meta.get("params") or {})
            elif self.meta["kind"] != "scan":
                self.table.optimize()  # folds the new rows into the ANN index
            self._items = None
            self._lookup = None
            self._finish()
        return {"added": int(len(new_items)), "skipped_existing": int((~is_new).sum()),
                "changed_not_updated": 0, "count": len(self), "table_version": int(self.table.version)}

    def check(self, sample: int = 200) -> list[str]:
        problems = []
        n = int(self.table.count_rows())
        if n != int(self.meta["count"]):
            problems.append(f"table holds {n} rows, index.json says {self.meta['count']}")
        if "checked_out_version" not in self.meta and int(self.table.version) != int(
                self.meta.get("table_version", -1)):
            problems.append(f"table is at version {self.table.version} but index.json recorded "
                            f"{self.meta.get('table_version')} (changed outside artmem)")
        items = self.items
        if not np.array_equal(items["id"].to_numpy(), np.arange(len(items))):
            problems.append("item ids are not 0..N-1")
        dup = int(items["path"].duplicated().sum())
        if dup:
            problems.append(f"{dup} duplicate paths in the table")
        if "checked_out_version" not in self.meta and self._checksum() != self.meta.get("store_checksum"):
            problems.append("store checksum differs from the one recorded at build/add time")
        if self.meta["kind"] != "scan":
            stats = self.table.index_stats("vector_idx")
            if stats is not None and getattr(stats, "num_unindexed_rows", 0):
                problems.append(f"{stats.num_unindexed_rows} rows are not in the ANN index yet "
                                "(they are still searched exactly; `artmem index add` optimises)")
        return problems
