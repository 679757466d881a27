"""Building blocks of the on-disk IVF-PQ index (`ondisk_backend`): parameters, training on a
sample, per-chunk code blocks, merging blocks into FAISS on-disk inverted lists.

Every file is written under a temporary name and renamed, or appended and later cut back to the
length index.json records, so a build or an add killed at any point leaves a folder that the next
run continues from (see `OnDiskIndex.build`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

CHUNK_ROWS = 100_000
NLIST_MAX = 4096        # k-means cost grows with nlist x sample; 4096 lists keep 10M-row training ~1 min
TRAIN_PER_LIST = 40     # FAISS asks for >= 39 training points per centroid
TRAIN_MAX = 262_144


def default_nlist(n: int) -> int:
    return int(max(1, min(4 * np.sqrt(n), n // TRAIN_PER_LIST, NLIST_MAX)))


def pq_subquantizers(dim: int) -> int:
    """PQ sub-vectors: ~8 dims each (16 bytes per 128-d code), at most 64, dividing `dim`."""
    m = max(1, min(64, dim // 8))
    while dim % m:
        m -= 1
    return m


def path_hashes(paths) -> np.ndarray:
    return pd.util.hash_pandas_object(pd.Series(paths, dtype=str), index=False).to_numpy(np.uint64)


def _faiss():
    import faiss

    return faiss


@contextlib.contextmanager
def faiss_prints_to_stderr():
    """FAISS's on-disk lists printf progress lines ("resizing ...", "updating ondisk filename")
    to the C stdout, which artmem keeps for results and written paths: send them to stderr."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def atomic_write_index(index, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    _faiss().write_index(index, str(tmp))
    os.replace(tmp, path)


def truncate(path: Path, size: int) -> None:
    with open(path, "ab") as f:
        f.truncate(size)


def clear_files(folder: Path) -> None:
    """Remove every file an on-disk index (finished or not) has in `folder`."""
    for name in ("trained.faiss", "vectors.f32", "path_hash.u64", "removed.npy"):
        (folder / name).unlink(missing_ok=True)
    for pattern in ("index-g*.faiss", "lists-g*.ivfdata"):
        for f in folder.glob(pattern):
            f.unlink()
    for sub in ("blocks", "items"):
        shutil.rmtree(folder / sub, ignore_errors=True)

def train_quantizers(stream, plan: dict, seed: int):
    """Coarse centroids + PQ codebooks from `train_rows` rows drawn uniformly (one pass)."""
    faiss = _faiss()
    n, dim = plan["rows"], plan["dim"]
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(n, size=plan["train_rows"], replace=False))
    sample = np.empty((len(pick), dim), np.float32)
    got, start = 0, 0
    for _, vecs in stream.chunks(plan["chunk_rows"]):
        lo, hi = np.searchsorted(pick, [start, start + len(vecs)])
        sample[got : got + hi - lo] = vecs[pick[lo:hi] - start]
        got, start = got + int(hi - lo), start + len(vecs)
        if got == len(pick):
            break
    quantizer = faiss.IndexFlatL2(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, plan["nlist"], plan["pq_m"], plan["pq_bits"])
    index.cp.seed = seed
    logger.info("training IVF%d,PQ%d on %d sampled rows", plan["nlist"], plan["pq_m"], len(pick))
    index.train(sample)
    return index

def write_chunk(folder: Path, block, items: pd.DataFrame, vecs: np.ndarray, start: int, tag: str) -> None:
    """Codes, vectors, path hashes and items of one chunk whose ids start at `start`."""
    ids = np.arange(start, start + len(vecs), dtype=np.int64)
    block.reset()
    block.add_with_ids(np.ascontiguousarray(vecs, np.float32), ids)
    atomic_write_index(block, folder / "blocks" / f"block-{tag}.faiss")
    with open(folder / "vectors.f32", "ab") as f:
        f.write(np.ascontiguousarray(vecs, "<f4").tobytes())
    with open(folder / "path_hash.u64", "ab") as f:
        f.write(path_hashes(items["path"]).astype("<u8").tobytes())
    table = items.reset_index(drop=True).copy()
    table.insert(0, "id", ids)
    tmp = folder / "items" / f"part-{tag}.tmp.parquet"
    table.to_parquet(tmp, index=False, row_group_size=8192)
    os.replace(tmp, folder / "items" / f"part-{tag}.parquet")

def merge_lists(folder: Path, current_invlists: list, blocks: list[Path], generation: int) -> None:
    """Write lists-gG.ivfdata holding `current_invlists` + the blocks' lists, and its index-gG.faiss."""
    faiss = _faiss()
    index = faiss.read_index(str(folder / "trained.faiss"))
    index.precomputed_table.resize(0)  # only written as a header here (the table is not saved)
    ivf = faiss.extract_index_ivf(index)
    sources, keep = list(current_invlists), []
    for b in blocks:
        bi = faiss.read_index(str(b), faiss.IO_FLAG_MMAP)
        # reading an IVF-PQ index precomputes its nlist x m x 256 distance table (64 MB at
        # 4096 lists, PQ16): 100 blocks held 6.4 GB. Merging needs only their lists.
        bi.precomputed_table.resize(0)
        keep.append(bi)
        sources.append(faiss.extract_index_ivf(bi).invlists)
    lists_file = folder / f"lists-g{generation}.ivfdata"
    lists_file.unlink(missing_ok=True)
    invlists = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(lists_file))
    vec = faiss.InvertedListsPtrVector()
    for s in sources:
        vec.push_back(s)
    with faiss_prints_to_stderr():
        ntotal = invlists.merge_from_multiple(vec.data(), vec.size(), False)
    index.ntotal = ivf.ntotal = ntotal
    ivf.replace_invlists(invlists, True)
    invlists.this.disown()
    atomic_write_index(index, folder / f"index-g{generation}.faiss")
    del keep
