"""The explorer at archive scale (`web_load.py --rows N`): a collection of N rows written directly
as Parquet (only the first few hundred image files exist), a scores dataset in shards of 1 M
rows, and a sequence of uncached filtered + sorted grid pages.

Each grid request has its own (filters, sort key, order, page), never repeated, so that no cache
in the server answers it; the latency is measured one request at a time (no queueing).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import httpx
import numpy as np

STYLES = [f"style_{i:02d}" for i in range(20)]
GENRES = [f"genre_{i}" for i in range(10)]
SORTS = ["score", "year", "path"]
CHUNK = 1_000_000  # rows per Parquet row group and per scores shard


def write_rows_collection(folder: Path, n: int, n_real: int = 200, seed: int = 0) -> tuple[Path, Path]:
    """(collection.parquet, results folder) for n rows: path, style, genre, year (10 % missing);
    scores for 98 % of the rows in shards of 1 M. Only the first `n_real` images exist (96 px)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    coll = folder / "collection.parquet"
    results = folder / "results"
    shards = results / "scores" / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(min(n_real, n)):
        f = folder / "img" / f"{i:08d}.jpg"
        f.parent.mkdir(exist_ok=True)
        Image.fromarray((rng.random((96, 96, 3)) * 255).astype(np.uint8)).save(f, quality=85)
    schema = pa.schema([("path", pa.string()), ("style", pa.dictionary(pa.int32(), pa.string())),
                        ("genre", pa.dictionary(pa.int32(), pa.string())), ("year", pa.float64())])
    with pq.ParquetWriter(coll, schema) as writer:
        for k, start in enumerate(range(0, n, CHUNK)):
            m = min(CHUNK, n - start)
            ids = np.arange(start, start + m)
            paths = pa.array(np.char.add(np.char.add("img/", np.char.zfill(ids.astype(str), 8)), ".jpg"))
            year = rng.integers(1400, 2000, m).astype(np.float64)
            year[rng.random(m) < 0.1] = np.nan
            table = pa.table({
                "path": paths,
                "style": pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, len(STYLES), m, dtype=np.int32)),
                                                        pa.array(STYLES)),
                "genre": pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, len(GENRES), m, dtype=np.int32)),
                                                        pa.array(GENRES)),
                "year": pa.array(year, from_pandas=True),
            }, schema=schema)
            writer.write_table(table)
            keep = rng.random(m) < 0.98
            pq.write_table(pa.table({"path": paths.filter(pa.array(keep)),
                                     "score": pa.array(rng.random(int(keep.sum())).astype(np.float32))}),
                           shards / f"scores-{k:05d}.parquet")
    return coll, results


def grid_params(rng: random.Random, used: set | None = None) -> dict:
    """One filtered + sorted grid request; with `used`, never the same one twice."""
    while True:
        params = {"style": rng.choice(STYLES), "sort": rng.choice(SORTS), "order": rng.choice(["asc", "desc"]),
                  "page": rng.randint(1, 200), "per_page": 48}
        if rng.random() < 0.5:
            params["genre"] = rng.choice(GENRES)
        key = tuple(sorted(params.items()))
        if used is None or key not in used:
            if used is not None:
                used.add(key)
            return params


def measure_pages(base: str, n: int, seed: int = 0) -> dict:
    """p50 / p99 / max of n uncached filtered + sorted grid pages, one at a time."""
    rng = random.Random(seed)
    used: set = set()
    lat = []
    with httpx.Client(base_url=base, timeout=120) as client:
        for _ in range(n):
            params = grid_params(rng, used)
            t0 = time.perf_counter()
            r = client.get("/api/collection", params=params)
            lat.append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
            if not r.json()["items"] and r.json()["total"] > 0:
                raise SystemExit(f"empty page for {params}")
    lat = np.array(lat)
    return {"pages": n, "p50_ms": round(float(np.percentile(lat, 50)), 1),
            "p99_ms": round(float(np.percentile(lat, 99)), 1), "max_ms": round(float(lat.max()), 1)}
