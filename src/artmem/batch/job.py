"""Engine-independent batch jobs: deterministic shards, atomic shard files, resume and merge.

A job is (collection, processor, output folder, shard size). Its images are the collection's
relative paths, sorted and de-duplicated, cut into fixed-size shards. Each finished shard is written
atomically as `OUT/shards/<kind>-<NNNNN>.errors.parquet` then `OUT/shards/<kind>-<NNNNN>.parquet`
(the latter marks the shard done), so a killed job loses at most the shards in flight.
Resuming skips every image that already has a result in a finished shard (images that failed
before are retried) and numbers new shards after the last finished one, so no row is duplicated.
`finalize` merges the shards into `OUT/<kind>.parquet` and `OUT/errors.parquet`, or (large results,
`merge=False`) leaves them as a shard dataset listed in `OUT/<kind>.dataset.json` (see
`artmem.batch.dataset`). OUT may be a local folder or an fsspec URL (`artmem.batch.storage`).

Any engine drives a job with the same four calls:

    spec = JobSpec(collection, processor, out, shard_size=256, device="auto")
    shards = prepare_job(spec, resume=True)     # pending Shard(id, paths) list; writes job.json
    for shard in shards:                        # in any order, in any process
        run_shard(spec, shard)                  # or: load/process yourself, then write_shard(...)
    result = finalize(spec)                     # merged tables, JobResult
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.batch import storage
from artmem.batch.dataset import manifest_file, shard_names
from artmem.batch.results import (
    JOB_FILE,
    SHARDS_DIR,
    atomic_write_parquet,
    errors_frame,
    read_job_record,
    write_json,
)
from artmem.batch.storage import Location
from artmem.errors import ArtmemError, ImageReadError

logger = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 256


@dataclass
class JobSpec:
    """What to run: `processor` over every image of `collection`, results under `out` (a folder
    or an fsspec URL). `merge`: True = one merged OUT/<kind>.parquet, False = a shard dataset,
    None = merged below the size limits of `artmem.batch.dataset.should_merge`."""

    collection: object  # artmem.data.collection.Collection
    processor: object  # artmem.batch.processors.Processor
    out: Location
    shard_size: int = DEFAULT_SHARD_SIZE
    device: str = "auto"
    csv: bool = False
    merge: bool | None = None

    def __post_init__(self) -> None:
        self.out = storage.location(self.out)
        if self.shard_size < 1:
            raise ArtmemError(f"shard size must be >= 1, got {self.shard_size}")
        if self.csv and self.merge is False:
            raise ArtmemError("--csv writes copies of the merged tables: it needs --merge (or no --no-merge)")

    @property
    def kind(self) -> str:
        return self.processor.kind

    @property
    def shard_dir(self) -> Location:
        return storage.join(self.out, SHARDS_DIR)

    def all_paths(self) -> list[str]:
        """The job's images: sorted, unique relative paths of the collection."""
        return sorted(set(str(p) for p in self.collection.paths))


@dataclass(frozen=True)
class Shard:
    id: int
    paths: tuple[str, ...]


@dataclass
class ShardResult:
    shard_id: int
    n_ok: int
    n_errors: int
    path: Location


@dataclass
class JobResult:
    """Outcome of a job: its table (loaded on first use when the job left a shard dataset),
    errors and the files written. `n_rows` counts the table's rows without loading it."""

    out: Location
    kind: str
    errors: pd.DataFrame
    written: list[Location] = field(default_factory=list)
    n_total: int = 0
    n_resumed: int = 0
    n_processed: int = 0
    seconds: float = 0.0
    backend: str | None = None
    n_rows: int = 0
    merged: bool = True
    _table: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def table(self) -> pd.DataFrame:
        """The whole result table (path + result columns), sorted by path."""
        if self._table is None:
            from artmem.batch.finalize import load_table

            self._table = load_table(self.out, self.kind)
        return self._table

    @property
    def images_per_second(self) -> float:
        return self.n_processed / self.seconds if self.seconds > 0 else float("nan")


def shard_file(out: Location, kind: str, shard_id: int) -> Location:
    return storage.join(out, SHARDS_DIR, f"{kind}-{shard_id:05d}.parquet")


def shard_errors_file(out: Location, kind: str, shard_id: int) -> Location:
    return storage.join(out, SHARDS_DIR, f"{kind}-{shard_id:05d}.errors.parquet")


def finished_shards(out: Location, kind: str) -> dict[int, Location]:
    """{shard id: results file} of the shards of `kind` already written under `out` (one listing
    of OUT/shards, also on an object store)."""
    return {sid: storage.join(out, SHARDS_DIR, n) for sid, n in shard_names(out, kind).items()}


def _readable_shards(spec: JobSpec, keep_paths: bool = True) -> tuple[dict[int, Location], set[str]]:
    """The finished shards whose files can be read, and the images they hold (an empty set unless
    `keep_paths`: the Ray driver's plan reads them out of core); an unreadable one (a disk error, a
    copy cut short) is renamed `*.corrupt` with a warning, so its images are simply computed again.
    Each shard is read once (its path column)."""
    names = set(storage.list_names(spec.shard_dir))
    shards = finished_shards(spec.out, spec.kind)

    def check(f: Location):
        errs = storage.join(storage.parent(f), storage.name(f).replace(".parquet", ".errors.parquet"))
        try:
            paths = storage.read_parquet(f, columns=["path"]).column("path")
            if storage.name(errs) in names:
                storage.parquet_file(errs)
        except Exception as exc:  # Arrow raises several types for a damaged file
            return exc
        return paths.to_pylist() if keep_paths else []

    good: dict[int, Location] = {}
    done: set[str] = set()
    for (sid, f), got in zip(shards.items(), storage.map_files(check, list(shards.values())), strict=True):
        if isinstance(got, Exception):
            logger.warning("%s: unreadable shard (%s); its images are computed again", f, got)
            for bad in (f, shard_errors_file(spec.out, spec.kind, sid)):
                if storage.name(bad) in names:
                    storage.rename(bad, storage.join(spec.shard_dir, storage.name(bad) + ".corrupt"))
            continue
        good[sid] = f
        done.update(map(str, got))
    return good, done


def cut_shards(paths: list[str], shard_size: int, first_id: int = 0) -> list[Shard]:
    """Fixed-size shards of `paths` (already sorted), numbered from `first_id`."""
    return [
        Shard(first_id + i, tuple(paths[s : s + shard_size]))
        for i, s in enumerate(range(0, len(paths), shard_size))
    ]


def _job_record(spec: JobSpec) -> dict:
    from artmem import __version__

    proc = spec.processor.spec()
    return {
        "kind": spec.kind,
        "processor": proc,
        "shard_size": spec.shard_size,
        "precision": proc.get("precision", "fp32"),
        "collection": {"name": getattr(spec.collection, "name", None), "root": str(spec.collection.root),
                       "count": len(spec.collection)},
        "artmem": __version__,
    }


def _comparable(processor_spec: dict | None) -> dict | None:
    """A processor spec with the default precision made explicit (job.json files written before
    precision was recorded hold fp32 results)."""
    if isinstance(processor_spec, dict) and processor_spec.get("processor") in ("model", "measures"):
        return {"precision": "fp32", **processor_spec}
    return processor_spec


def _refuse_precision_change(out: Path, old: dict | None, new: dict) -> None:
    """One-line error when a resumed job differs from the earlier run in precision alone: mixing
    fp32 and int8 rows in one table would make their scores incomparable."""
    old, new = _comparable(old) or {}, _comparable(new) or {}
    if {k: v for k, v in old.items() if k != "precision"} == {k: v for k, v in new.items() if k != "precision"}:
        raise ArtmemError(
            f"{out} holds {old.get('precision')} results; this run computes {new.get('precision')}: "
            f"resume with --precision {old.get('precision')}, or use --no-resume / another output folder"
        )


def _clear(spec: JobSpec) -> None:
    """Remove this kind's shards and merged tables (only files this job kind writes)."""
    for f in finished_shards(spec.out, spec.kind).values():
        storage.remove(f)
    for n in storage.list_names(spec.shard_dir):
        if n.startswith(f"{spec.kind}-") and n.endswith(".errors.parquet"):
            storage.remove(storage.join(spec.shard_dir, n))
    for name in (f"{spec.kind}.parquet", f"{spec.kind}.csv", f"{spec.kind}.json", "errors.parquet", "errors.csv"):
        storage.remove(storage.join(spec.out, name))
    storage.remove(manifest_file(spec.out, spec.kind))


def _has_kind(out: Location, kind: str) -> bool:
    from artmem.batch.dataset import has_results

    return has_results(out, kind, complete=False)


def _open_record(spec: JobSpec, resume: bool) -> None:
    """Check/record OUT/job.json, clearing OUT's results of this kind unless resuming.

    Raises:
        ArtmemError: `resume` and OUT holds results of a different job (other model/layer/kind).
    """
    from artmem.io import ensure_out_dir

    if not storage.is_remote(spec.out):
        ensure_out_dir(spec.out)
    if hasattr(spec.processor, "resolved_precision"):  # decided for the job's device, before job.json
        spec.processor.resolved_precision(spec.device)
    record = _job_record(spec)
    job_file = storage.join(spec.out, JOB_FILE)
    old = read_job_record(spec.out)
    if old is not None:
        other = old.kind
        if other and other != spec.kind and _has_kind(spec.out, other):
            # job.json, errors.parquet and the readers are one job's: a second kind would break both
            raise ArtmemError(f"{spec.out} holds the {other} of another job; write {spec.kind} "
                              "to another output folder")
        if _comparable(old.processor) != _comparable(record["processor"]):
            if resume and finished_shards(spec.out, spec.kind):
                _refuse_precision_change(spec.out, old.processor, record["processor"])
                raise ArtmemError(
                    f"{spec.out} holds results of another job ({old.processor}); "
                    "use --no-resume to overwrite them or choose another output folder"
                )
            _clear(spec)
    if not resume:
        _clear(spec)
    write_json(record, job_file)


def open_job(spec: JobSpec, resume: bool = True) -> dict[int, Location]:
    """Check/record OUT/job.json (clearing OUT's results of this kind unless resuming) and return
    the readable finished shards {shard id: results file}, without their paths (the Ray engine's
    plan subtracts them out of core, `artmem.batch.plan`).

    Raises:
        ArtmemError: `resume` and OUT holds results of a different job (other model/layer/kind).
    """
    _open_record(spec, resume)
    return _readable_shards(spec, keep_paths=False)[0]


def prepare_job(spec: JobSpec, resume: bool = True) -> list[Shard]:
    """`open_job`, then the shards still to run, every path in memory (the local engines; the Ray
    engine plans the same shards out of core: `artmem.batch.plan.plan_pending`).

    Raises:
        ArtmemError: `resume` and OUT holds results of a different job (other model/layer/kind).
    """
    _open_record(spec, resume)
    done_files, done = _readable_shards(spec)
    wanted = spec.all_paths()
    if not wanted:
        raise ArtmemError("the collection has no images")
    remaining = [p for p in wanted if p not in done]
    first_id = max(done_files) + 1 if done_files else 0
    shards = cut_shards(remaining, spec.shard_size, first_id)
    n_done = len(wanted) - len(remaining)
    if n_done:
        logger.info("resuming: %d of %d images already done in %d shard(s); %d to go",
                    n_done, len(wanted), len(done_files), len(remaining))
    return shards


# ------------------------------------------------------------------------ loading + processing


def safe_load(processor, abs_path: str):
    """(item, None) or (None, reason): a bad image is recorded, never fatal for the batch."""
    try:
        return processor.load(abs_path), None
    except ImageReadError as exc:
        return None, exc.reason
    except Exception as exc:  # any decoder/transform failure is that image's problem
        return None, f"{type(exc).__name__}: {exc}"


class ImageItems:
    """Map-style dataset of (index, item | None, reason | None) over job paths (DataLoader-ready)."""

    def __init__(self, spec: JobSpec, paths: list[str]):
        self.processor = spec.processor
        self.root_paths = [spec.collection.abs_path(p) for p in paths]

    def __len__(self) -> int:
        return len(self.root_paths)

    def __getitem__(self, i: int):
        item, reason = safe_load(self.processor, self.root_paths[i])
        return i, item, reason


class CollateItems:
    """Picklable collate: (indices of good items, processor batch or None, [(index, reason)])."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, samples):
        good = [(i, item) for i, item, reason in samples if reason is None]
        errors = [(i, reason) for i, item, reason in samples if reason is not None]
        batch = self.processor.collate([item for _, item in good]) if good else None
        return [i for i, _ in good], batch, errors


def process_batch(processor, paths: list[str], indices: list[int], batch, errors) -> tuple[pd.DataFrame, list]:
    """Run `processor.process` on a collated batch; returns (rows with `path`, [(path, reason)])."""
    err_rows = [(paths[i], reason) for i, reason in errors]
    if not indices:
        return pd.DataFrame({"path": pd.Series([], dtype="str")}), err_rows
    result = processor.process(batch)
    if len(result) != len(indices):
        raise RuntimeError(f"processor returned {len(result)} rows for a batch of {len(indices)}")
    result = result.reset_index(drop=True)
    result.insert(0, "path", [paths[i] for i in indices])
    return result, err_rows


def write_shard(spec: JobSpec, shard_id: int, results: pd.DataFrame, errors) -> ShardResult:
    """Atomically write one shard: its errors first, then its results (which mark it done)."""
    return write_shard_files(spec.out, spec.kind, shard_id, results, errors)


def write_shard_files(out: Location, kind: str, shard_id: int, results: pd.DataFrame, errors) -> ShardResult:
    """`write_shard` given only the output folder and job kind (what a Ray worker holds)."""
    errs = errors_frame(errors)
    atomic_write_parquet(errs, shard_errors_file(out, kind, shard_id))
    if "path" not in results.columns:
        results = results.assign(path=pd.Series([], dtype="str"))
    path = atomic_write_parquet(results.reset_index(drop=True), shard_file(out, kind, shard_id))
    return ShardResult(shard_id, len(results), len(errs), path)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({"path": pd.Series([], dtype="str")})
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def iter_batches(spec: JobSpec, shard: Shard, batch_size: int) -> Iterator[tuple[list[str], list[int], object, list]]:
    """In-process loading (no worker processes): yields collated batches of one shard."""
    paths = list(shard.paths)
    ds = ImageItems(spec, paths)
    collate = CollateItems(spec.processor)
    for s in range(0, len(paths), batch_size):
        idx, batch, errs = collate([ds[i] for i in range(s, min(s + batch_size, len(paths)))])
        yield paths, idx, batch, errs


def run_shard(spec: JobSpec, shard: Shard, batch_size: int = 32, num_workers: int = 0) -> ShardResult:
    """Load, process and write one shard; usable from any engine (local loop, Ray task/actor).

    The processor is set up (model loaded) on first use in this process and reused afterwards.
    """
    spec.processor.setup(spec.device)
    paths = list(shard.paths)
    frames, err_rows = [], []
    if num_workers > 0:
        import torch

        loader = torch.utils.data.DataLoader(
            ImageItems(spec, paths), batch_size=batch_size, num_workers=num_workers,
            collate_fn=CollateItems(spec.processor), shuffle=False,
        )
        batches = ((paths, i, b, e) for i, b, e in loader)
    else:
        batches = iter_batches(spec, shard, batch_size)
    for p, idx, batch, errs in batches:
        rows, bad = process_batch(spec.processor, p, idx, batch, errs)
        frames.append(rows)
        err_rows += bad
    return write_shard(spec, shard.id, _concat(frames), err_rows)


def run_serial(spec: JobSpec, resume: bool = True, batch_size: int = 32) -> JobResult:
    """The simplest engine: every pending shard in this process, no worker processes."""
    t0 = time.perf_counter()
    shards = prepare_job(spec, resume)
    n = sum(len(s.paths) for s in shards)
    for shard in shards:
        run_shard(spec, shard, batch_size=batch_size)
    from artmem.batch.finalize import finalize

    result = finalize(spec)
    result.n_processed, result.n_resumed = n, result.n_total - n
    result.seconds = time.perf_counter() - t0
    return result


def stack_features(table: pd.DataFrame) -> np.ndarray:
    """(N, D) float32 from a table's `embedding` column."""
    from artmem.batch.results import stack_vectors

    return stack_vectors(table["embedding"])


def __getattr__(name: str):
    """`finalize` and the shard readers moved to `artmem.batch.finalize`; the engines import them
    from here (a lazy import: that module imports this one)."""
    if name in ("finalize", "load_table", "_read_shards"):
        from artmem.batch import finalize as module

        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
