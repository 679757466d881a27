"""On-disk FAISS IVF-PQ index with exact re-ranking, for collections whose vectors exceed RAM.

Search: the coarse quantizer picks `nprobe` inverted lists, whose PQ codes (read from an mmapped
`OnDiskInvertedLists` file) give the top `refine` candidates by approximate distance; those are
re-ranked by exact cosine on their full vectors, read from `vectors.f32` on disk. Memory while
searching: centroids, PQ tables and the lists pages the OS keeps cached; never N x D floats.

Build (resumable): a sample (TRAIN_PER_LIST rows per list, at most TRAIN_MAX) trains the coarse
centroids and the PQ codebooks; then the features are streamed in chunks of `chunk_rows`. Each
chunk's codes go to `blocks/block-NNNNN.faiss`, its vectors and path hashes are appended to
`vectors.f32` / `path_hash.u64` and its items to `items/part-NNNNN.parquet`; index.json then records
the rows done, so a killed build continues from the last completed chunk. At the end the blocks are
merged into one on-disk lists file. Adds encode new blocks the same way and merge them with the
current lists into a new generation (`index-gG.faiss` + `lists-gG.ivfdata`), which index.json
switches to atomically. Removals are tombstones (`removed.npy`) that every search leaves out.

The build steps themselves (training, chunk blocks, merging lists) are in `ondisk_build`.
Folder: index.json, trained.faiss, index-gG.faiss, lists-gG.ivfdata, vectors.f32 (float32, row i =
id i), path_hash.u64, items/part-*.parquet (id, path, metadata), removed.npy.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.errors import ArtmemError
from artmem.retrieval.backend_base import (
    NPROBE_CANDIDATES,
    TUNE_MARGIN,
    TUNE_QUERIES,
    Index,
    drop_self,
    exact_knn,
    exact_knn_chunks,
    recall_at_k,
)
from artmem.retrieval.filters import filter_mask
from artmem.retrieval.ondisk_build import (
    CHUNK_ROWS,
    TRAIN_MAX,
    TRAIN_PER_LIST,
    atomic_write_index,
    clear_files,
    default_nlist,
    faiss_prints_to_stderr,
    merge_lists,
    path_hashes,
    pq_subquantizers,
    train_quantizers,
    truncate,
    write_chunk,
)

logger = logging.getLogger(__name__)

KIND = "ivfpq"
REFINE_CANDIDATES = (50, 100, 200, 400, 800)  # candidates re-ranked exactly, tried in this order
EXACT_FILTER_MAX = 200_000
READ_CHUNK = 65_536


def _faiss():
    import faiss  # imported when used: `artmem --help` does not load it

    return faiss

class OnDiskIndex(Index):
    backend = "faiss"

    def __init__(self, path: Path, meta: dict, pca=None):
        super().__init__(path, meta, None)
        self.faiss_index = None
        self._items = None
        self._fd = None
        self._removed = None
        self._sorted_hashes = None
        p = meta.get("params") or {}
        t = meta.get("tuning") or {}
        self.nprobe = int(t.get("value") or min(32, p.get("nlist", 32)))
        self.refine = int(t.get("refine") or REFINE_CANDIDATES[1])

    # ------------------------------------------------------------------ build
    @classmethod
    def build(cls, out: Path, stream, meta: dict, params: dict, progress=None) -> OnDiskIndex:
        """Build (or resume building) from `stream` (see `artmem.retrieval.stream`).

        `progress(rows_done)` is called after each committed chunk.
        """
        faiss = _faiss()
        n, dim = len(stream), stream.dim
        chunk = int(params.get("chunk_rows") or CHUNK_ROWS)
        nlist = int(params.get("nlist") or default_nlist(n))
        m = int(params.get("pq_m") or pq_subquantizers(dim))
        if dim % m:
            raise ArtmemError(f"--pq-m {m} does not divide the {dim} feature dims")
        n_train = int(min(n, max(TRAIN_PER_LIST * nlist, 10_000), TRAIN_MAX))
        nbits = 8 if n_train >= 39 * 256 else max(4, int(np.log2(max(16, n_train // 39))))
        plan = {"source": stream.source_id, "rows": n, "dim": dim, "chunk_rows": chunk, "nlist": nlist,
                "pq_m": m, "pq_bits": nbits, "train_rows": n_train}
        earlier = dict(meta.get("build") or {})
        resume = earlier.get("plan") == plan and earlier.get("state") == "building"
        meta.update(kind=KIND, faiss_class="IndexIVFPQ", vector_file="vectors.f32",
                    params={"nlist": nlist, "pq_m": m, "pq_bits": nbits, "chunk_rows": chunk,
                            "train_rows": n_train, "metric": "L2 on unit vectors (= cosine order)"})
        self = cls(out, meta)
        if not resume:
            clear_files(self.dir)
            meta["build"] = {"state": "building", "plan": plan, "rows_done": 0, "parts": []}
            meta["count"] = 0
        else:
            logger.info("resuming the on-disk build at row %d of %d", earlier["rows_done"], n)
        build = meta["build"]
        t0 = time.perf_counter()
        if not (out / "trained.faiss").exists():
            trained = train_quantizers(stream, plan, seed=int(params.get("seed", 0)))
            atomic_write_index(trained, out / "trained.faiss")
            build["train_seconds"] = round(time.perf_counter() - t0, 3)
            del trained  # its PQ distance table (nlist x m x 256 floats) is not needed any more
        self.write_meta()
        done = int(build["rows_done"])
        for f in ("vectors.f32", "path_hash.u64"):  # a chunk cut short by the kill: drop its tail
            truncate(out / f, done * (dim * 4 if f == "vectors.f32" else 8))
        (out / "blocks").mkdir(exist_ok=True)
        (out / "items").mkdir(exist_ok=True)
        block = faiss.read_index(str(out / "trained.faiss"))
        for items, vecs in stream.chunks(chunk, skip_rows=done):
            k = done // chunk
            write_chunk(self.dir, block, items, vecs, done, f"{k:05d}")
            done += len(vecs)
            build["rows_done"] = done
            build["parts"].append([f"part-{k:05d}.parquet", done - len(vecs), len(vecs)])
            self.write_meta()  # the commit point of the chunk
            if progress:
                progress(done)
        if done != n:
            raise ArtmemError(f"{stream.source_id}: the stream gave {done} rows, expected {n}")
        blocks = sorted((out / "blocks").glob("block-*.faiss"))
        merge_lists(self.dir, [], blocks, generation=1)
        self.meta["generation"] = 1
        self.meta["parts"] = build.pop("parts")
        self.meta["count"] = n
        build["state"] = "complete"
        self._tombstone_duplicates()
        shutil.rmtree(out / "blocks")
        self.write_meta()
        self._open()
        return self

    def _tombstone_duplicates(self) -> None:
        """A path given twice keeps its first live id; later ones become removed ids (as
        `load_store`). A removed image given again is live again under its new id."""
        hashes = np.fromfile(self.dir / "path_hash.u64", "<u8", count=int(self.meta["count"]))
        live = np.setdiff1d(np.arange(len(hashes)), self.removed_ids())
        uniq, first, counts = np.unique(hashes[live], return_index=True, return_counts=True)
        if counts.max(initial=1) <= 1:
            return
        first = live[first]
        dup_ids = np.setdiff1d(live[np.isin(hashes[live], uniq[counts > 1])], first)
        rows = self.items_of(dup_ids)
        firsts = self.items_of(first[np.searchsorted(uniq, hashes[dup_ids])])
        same = rows["path"].to_numpy() == firsts["path"].to_numpy()  # not a 64-bit hash collision
        if same.any():
            logger.warning("%d duplicate paths in the features; keeping the first of each", int(same.sum()))
            self._save_removed(np.union1d(self.removed_ids(), dup_ids[same]))

    # ------------------------------------------------------------------ open
    @classmethod
    def load(cls, path: Path, meta: dict, pca=None) -> OnDiskIndex:
        state = (meta.get("build") or {}).get("state")
        if state != "complete":
            raise ArtmemError(f"{path}: the on-disk build stopped at row {meta['build'].get('rows_done')} "
                              "of " f"{meta['build']['plan']['rows']}; run `artmem index build` again with "
                              "the same arguments to resume it")
        self = cls(path, meta)
        for name in (f"index-g{meta['generation']}.faiss", f"lists-g{meta['generation']}.ivfdata",
                     "vectors.f32", "path_hash.u64", "trained.faiss"):
            if not (path / name).exists():
                raise ArtmemError(f"{path}: index file {name} is missing")
        self._open()
        return self

    def _open(self) -> None:
        faiss = _faiss()
        g = self.meta["generation"]
        with faiss_prints_to_stderr():
            self.faiss_index = faiss.read_index(str(self.dir / f"index-g{g}.faiss"),
                                                faiss.IO_FLAG_ONDISK_SAME_DIR)
        if self._fd is not None:
            os.close(self._fd)
        self._fd = os.open(self.dir / "vectors.f32", os.O_RDONLY)
        self._items = None
        self._sorted_hashes = None
        self._removed = None

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)

    # ------------------------------------------------------------------ reading
    @property
    def items(self) -> pd.DataFrame:
        """All items (loads the whole metadata table: prefer `items_of` for a few ids)."""
        if self._items is None:
            frames = [pd.read_parquet(self.dir / "items" / name) for name, _, _ in self.meta["parts"]]
            self._items = pd.concat(frames, ignore_index=True)
        return self._items

    def items_of(self, ids) -> pd.DataFrame:
        """Items rows of `ids`, reading only the Parquet row groups that hold them."""
        import pyarrow.parquet as pq

        ids = np.asarray(ids, np.int64)
        if self._items is not None or not len(ids):
            return super().items_of(ids)
        parts = self.meta.get("parts") or self.meta["build"]["parts"]
        starts = np.array([s for _, s, _ in parts])
        uniq = np.unique(ids)
        part_of = np.searchsorted(starts, uniq, side="right") - 1
        frames = []
        for p in np.unique(part_of):  # ascending, so the frames come in id order
            local = uniq[part_of == p] - starts[p]
            f = pq.ParquetFile(self.dir / "items" / parts[p][0])
            rg_rows = f.metadata.row_group(0).num_rows
            group = local // rg_rows
            for g in np.unique(group):
                table = f.read_row_group(int(g)).to_pandas()
                frames.append(table.iloc[local[group == g] - g * rg_rows])
        found = pd.concat(frames, ignore_index=True)
        return found.iloc[np.searchsorted(uniq, ids)].reset_index(drop=True)

    def live_ids_of(self, paths) -> np.ndarray:
        """Id of each path among the live (not removed) images, -1 where it is not indexed.

        Matched by 64-bit path hash (sorted once per opened index), then confirmed on the
        stored path, so a hash collision cannot return another image.
        """
        if self._sorted_hashes is None:
            h = np.fromfile(self.dir / "path_hash.u64", "<u8", count=len(self))
            order = np.argsort(h, kind="stable")
            self._sorted_hashes = (h[order], order)
        h_sorted, order = self._sorted_hashes
        paths = [str(p) for p in paths]
        x = path_hashes(paths)
        lo, hi = np.searchsorted(h_sorted, x, "left"), np.searchsorted(h_sorted, x, "right")
        removed = self.removed_ids()
        rows, cands = [], []
        for r in np.flatnonzero(hi > lo):
            for i in order[lo[r] : hi[r]]:
                rows.append(r)
                cands.append(int(i))
        out = np.full(len(paths), -1, np.int64)
        if not cands:
            return out
        cands = np.array(cands, np.int64)
        stored = self.items_of(cands)["path"].to_numpy()
        for r, i, sp in zip(rows, cands, stored, strict=True):
            if out[r] < 0 and sp == paths[r] and not np.isin(i, removed):
                out[r] = i
        return out

    def id_of(self, path: str) -> int | None:
        """Vector id of a live (not removed) path (relative, or absolute under the collection root)."""
        for candidate in (path, self._relative(path)):
            if candidate is not None:
                i = int(self.live_ids_of([candidate])[0])
                if i >= 0:
                    return i
        return None

    def _relative(self, path: str) -> str | None:
        root = self.meta.get("collection_root")
        if not root:
            return None
        try:
            return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
        except (ValueError, OSError):
            return None

    def removed_ids(self) -> np.ndarray:
        if self._removed is None:
            f = self.dir / "removed.npy"
            self._removed = np.load(f) if f.exists() else np.zeros(0, np.int64)
        return self._removed

    def vectors(self, ids) -> np.ndarray:
        """Full unit vectors of `ids` read from vectors.f32 (pread: no mapping of the whole file)."""
        ids = np.asarray(ids, np.int64)
        dim = self.index_dim
        row = dim * 4
        uniq = np.unique(ids)
        buf = b"".join(os.pread(self._fd, row, int(i) * row) for i in uniq)
        block = np.frombuffer(buf, "<f4").reshape(len(uniq), dim)
        return block[np.searchsorted(uniq, ids)]

    def iter_index_vectors(self, chunk: int = READ_CHUNK):
        n, dim = len(self), self.index_dim
        with open(self.dir / "vectors.f32", "rb") as f:
            for s in range(0, n, chunk):
                rows = min(chunk, n - s)
                yield s, np.fromfile(f, "<f4", count=rows * dim).reshape(rows, dim)

    # ------------------------------------------------------------------ search
    def _selector(self, allowed: np.ndarray | None):
        faiss = _faiss()
        removed = self.removed_ids()
        if allowed is not None:
            return faiss.IDSelectorBatch(np.setdiff1d(allowed, removed).astype(np.int64))
        if not len(removed):
            return None
        batch = faiss.IDSelectorBatch(removed.astype(np.int64))
        sel = faiss.IDSelectorNot(batch)
        sel.referenced_objects = [batch]  # keep the wrapped selector alive
        return sel

    def _search(self, q: np.ndarray, k: int, filter: str | None, nprobe: int | None = None,
                refine: int | None = None):
        faiss = _faiss()
        allowed = None
        if filter:
            allowed = np.setdiff1d(np.flatnonzero(filter_mask(self.items, filter)), self.removed_ids())
            if len(allowed) <= EXACT_FILTER_MAX:
                return self._exact_subset(q, k, allowed)
        sel = self._selector(allowed)
        params = faiss.SearchParametersIVF(nprobe=int(nprobe or self.nprobe))
        if sel is not None:
            params.sel = sel
        r = max(k, int(refine or self.refine))
        _, cand = self.faiss_index.search(np.ascontiguousarray(q, np.float32), r, params=params)
        return self._rerank(q, cand, k)

    def _rerank(self, q: np.ndarray, cand: np.ndarray, k: int):
        """Exact cosine of the candidates on their full vectors; the top k of each row."""
        sims = np.full((len(q), k), -np.inf, np.float32)
        ids = np.full((len(q), k), -1, np.int64)
        valid = cand[cand >= 0]
        if not len(valid):
            return sims, ids
        uniq = np.unique(valid)
        vecs = self.vectors(uniq)
        for r in range(len(q)):
            c = cand[r][cand[r] >= 0]
            s = vecs[np.searchsorted(uniq, c)] @ q[r]
            top = np.argsort(-s, kind="stable")[:k]
            sims[r, : len(top)], ids[r, : len(top)] = s[top], c[top]
        return sims, ids

    def _exact_subset(self, q: np.ndarray, k: int, allowed: np.ndarray):
        sims = np.full((len(q), k), -np.inf, np.float32)
        ids = np.full((len(q), k), -1, np.int64)
        if len(allowed):
            s, local = exact_knn(q, self.vectors(allowed), min(k, len(allowed)))
            sims[:, : s.shape[1]] = s
            ids[:, : s.shape[1]] = np.where(local >= 0, allowed[np.clip(local, 0, None)], -1)
        return sims, ids

    # ------------------------------------------------------------------ tuning / updates / checks
    def tune(self, target: float = 0.95, k: int = 10) -> dict:
        """Smallest (refine, nprobe) whose recall@k on stored queries reaches `target` + margin.

        nprobe grows along NPROBE_CANDIDATES; when recall stops rising (< 0.005 per step) the PQ
        ranking, not the lists probed, is what misses neighbours, so refine goes to the next
        depth at the same nprobe. Each setting is tried once: a few dozen passes at most.
        """
        live = np.setdiff1d(np.arange(len(self)), self.removed_ids())
        if len(live) <= k + 1:
            return {}
        rng = np.random.default_rng(0)
        qids = np.sort(rng.choice(live, size=min(TUNE_QUERIES, len(live)), replace=False))
        queries = self.vectors(qids)
        s, i = exact_knn_chunks(queries, self.iter_index_vectors(), k + 1, self.removed_ids())
        truth, _ = drop_self(i, s, qids, k)
        nprobes = [p for p in NPROBE_CANDIDATES if p <= int(self.meta["params"]["nlist"])]
        goal = min(0.995, target + TUNE_MARGIN)
        tried, pi, ri, prev = [], 0, 0, -1.0
        while pi < len(nprobes) and ri < len(REFINE_CANDIDATES):
            p, r = nprobes[pi], REFINE_CANDIDATES[ri]
            t0 = time.perf_counter()
            sims, ids = self._search(queries, k + 1, None, p, r)
            ms = 1e3 * (time.perf_counter() - t0) / len(queries)
            rec = recall_at_k(drop_self(ids, sims, qids, k)[0], truth)
            tried.append({"value": p, "refine": r, "recall": round(rec, 4), "ms_per_query": round(ms, 4)})
            if rec >= goal:
                break
            if prev >= 0 and rec - prev < 0.005:
                ri, prev = ri + 1, -1.0  # plateau: re-rank deeper at this nprobe
            else:
                pi, prev = pi + 1, rec
        best = tried[-1] if tried[-1]["recall"] >= goal else max(tried, key=lambda t: t["recall"])
        if best["recall"] < goal:
            logger.warning("nprobe %d, refine %d reach recall@%d %.3f only (target %.2f)",
                           best["value"], best["refine"], k, best["recall"], target)
        self.nprobe, self.refine = int(best["value"]), int(best["refine"])
        return {"parameter": "nprobe", "value": best["value"], "refine": best["refine"],
                "recall": best["recall"], "target": target, "tuned_for": goal, "k": k,
                "queries": len(queries), "tried": tried}

    def add(self, source) -> dict:
        """Add the rows of `source` (a FeatureStore or a stream) whose paths are not indexed."""
        from artmem.retrieval.stream import StoreStream

        stream = source if hasattr(source, "chunks") else StoreStream(source)
        faiss = _faiss()
        n0, dim = len(self), self.index_dim
        for f in ("vectors.f32", "path_hash.u64"):  # an interrupted earlier add: drop its tail
            truncate(self.dir / f, n0 * (dim * 4 if f == "vectors.f32" else 8))
        shutil.rmtree(self.dir / "blocks", ignore_errors=True)  # an interrupted earlier add's
        (self.dir / "blocks").mkdir()
        block = faiss.read_index(str(self.dir / "trained.faiss"))
        parts = list(self.meta["parts"])
        start, skipped = n0, 0
        tag0 = 1 + max(int(name[len("part-"):].split(".")[0]) for name, _, _ in parts)
        for c, (items, vecs) in enumerate(stream.chunks(int(self.meta["params"]["chunk_rows"]))):
            known = self.live_ids_of(items["path"]) >= 0
            dup = items["path"].duplicated().to_numpy()
            new = ~known & ~dup
            skipped += int(known.sum())
            if not new.any():
                continue
            tag = f"{tag0 + c:05d}"
            write_chunk(self.dir, block, items[new], vecs[new], start, tag)
            parts.append([f"part-{tag}.parquet", start, int(new.sum())])
            start += int(new.sum())
        added = start - n0
        if added:
            g = int(self.meta["generation"])
            merge_lists(self.dir, [faiss.extract_index_ivf(self.faiss_index).invlists],
                        sorted((self.dir / "blocks").glob("block-*.faiss")), g + 1)
            self.meta["generation"] = g + 1
            self.meta.update(parts=parts, count=start)
            self.write_meta()  # the commit point: index.json now names generation g + 1
            for f in (f"index-g{g}.faiss", f"lists-g{g}.ivfdata"):
                (self.dir / f).unlink(missing_ok=True)
            self._open()
            self._tombstone_duplicates()  # a path given twice in different chunks of `source`
        shutil.rmtree(self.dir / "blocks", ignore_errors=True)
        return {"added": int(added), "skipped_existing": skipped, "changed_not_updated": 0,
                "count": len(self)}

    def remove(self, paths: list[str]) -> dict:
        """Tombstone the images of `paths`: searches leave them out; ids are not reused."""
        ids = [self.id_of(str(p)) for p in paths]
        found = np.array(sorted({i for i in ids if i is not None}), np.int64)
        self._save_removed(np.union1d(self.removed_ids(), found))
        return {"removed": len(found), "not_found": sum(i is None for i in ids),
                "removed_total": len(self.removed_ids()), "count": len(self)}

    def _save_removed(self, removed: np.ndarray) -> None:
        tmp = self.dir / "removed.tmp.npy"
        np.save(tmp, removed.astype(np.int64))
        os.replace(tmp, self.dir / "removed.npy")
        self._removed = None
        self.meta["removed"] = len(removed)
        self.write_meta()

    def check(self, sample: int = 200) -> list[str]:
        problems = []
        n, dim = len(self), self.index_dim
        sizes = {"vectors.f32": n * dim * 4, "path_hash.u64": n * 8}
        for name, want in sizes.items():
            have = (self.dir / name).stat().st_size
            if have < want:
                problems.append(f"{name} holds {have} bytes, {want} expected for {n} vectors")
        part_rows = sum(r for _, _, r in self.meta["parts"])
        if not (part_rows == n == int(self.faiss_index.ntotal)):
            problems.append(f"counts disagree: items {part_rows}, IVF-PQ lists "
                            f"{self.faiss_index.ntotal}, index.json {n}")
        if problems:
            return problems
        rng = np.random.default_rng(0)
        ids = np.sort(rng.choice(n, size=min(sample, n), replace=False))
        vecs = self.vectors(ids)
        norms = np.linalg.norm(vecs, axis=1)
        if (np.abs(norms - 1) > 1e-3).sum() > (norms < 1e-6).sum():
            problems.append("stored vectors are not unit-normalised")
        ivf = _faiss().extract_index_ivf(self.faiss_index)
        _, lists = ivf.quantizer.search(vecs, 1)
        missing = 0
        for i, lst in zip(ids.tolist(), lists[:, 0].tolist(), strict=True):
            size = ivf.invlists.list_size(lst)
            in_list = _faiss().rev_swig_ptr(ivf.invlists.get_ids(lst), size)
            missing += int(i not in set(np.asarray(in_list).tolist()))
        if missing:
            problems.append(f"{missing} of {len(ids)} sampled vectors are not in their inverted list")
        paths = self.items_of(ids[:20])["path"]
        if not np.array_equal(path_hashes(paths), np.fromfile(self.dir / "path_hash.u64", "<u8")[ids[:20]]):
            problems.append("path_hash.u64 does not match the items' paths")
        return problems
