"""Engine-independent batch jobs: deterministic shards, atomic shard files, resume and merge.

A job is (collection, processor, output folder, shard size). Its images are the collection's
relative paths, sorted and de-duplicated, cut into fixed-size shards. Each finished shard is written
atomically as `OUT/shards/<kind>-<NNNNN>.errors.parquet` then `OUT/shards/<kind>-<NNNNN>.parquet`
(the latter marks the shard done), so a killed job loses at most the shards in flight.
Resuming skips every image that already has a result in a finished shard (images that failed
before are retried) and numbers new shards after the last finished one, so no row is duplicated.
`finalize` merges the shards into `OUT/<kind>.parquet` and `OUT/errors.parquet`.

Any engine drives a job with the same four calls:

    spec = JobSpec(collection, processor, out, shard_size=256, device="auto")
    shards = prepare_job(spec, resume=True)     # pending Shard(id, paths) list; writes job.json
    for shard in shards:                        # in any order, in any process
        run_shard(spec, shard)                  # or: load/process yourself, then write_shard(...)
    result = finalize(spec)                     # merged tables, JobResult
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.batch.results import (
    JOB_FILE,
    SHARDS_DIR,
    atomic_write_parquet,
    errors_frame,
    read_job_record,
    write_errors,
    write_json,
)
from artmem.errors import ArtmemError, ImageReadError

logger = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 256
_SHARD_RE = re.compile(r"^(?P<kind>[A-Za-z0-9_]+)-(?P<id>\d{5,})\.parquet$")


@dataclass
class JobSpec:
    """What to run: `processor` over every image of `collection`, results under `out`."""

    collection: object  # artmem.data.collection.Collection
    processor: object  # artmem.batch.processors.Processor
    out: Path
    shard_size: int = DEFAULT_SHARD_SIZE
    device: str = "auto"
    csv: bool = False

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.shard_size < 1:
            raise ArtmemError(f"shard size must be >= 1, got {self.shard_size}")

    @property
    def kind(self) -> str:
        return self.processor.kind

    @property
    def shard_dir(self) -> Path:
        return self.out / SHARDS_DIR

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
    path: Path


@dataclass
class JobResult:
    """Outcome of a job: merged table, errors and the files written."""

    out: Path
    kind: str
    table: pd.DataFrame
    errors: pd.DataFrame
    written: list[Path] = field(default_factory=list)
    n_total: int = 0
    n_resumed: int = 0
    n_processed: int = 0
    seconds: float = 0.0
    backend: str | None = None

    @property
    def images_per_second(self) -> float:
        return self.n_processed / self.seconds if self.seconds > 0 else float("nan")


def shard_file(out: Path, kind: str, shard_id: int) -> Path:
    return Path(out) / SHARDS_DIR / f"{kind}-{shard_id:05d}.parquet"


def shard_errors_file(out: Path, kind: str, shard_id: int) -> Path:
    return Path(out) / SHARDS_DIR / f"{kind}-{shard_id:05d}.errors.parquet"


def finished_shards(out: Path, kind: str) -> dict[int, Path]:
    """{shard id: results file} of the shards of `kind` already written under `out`."""
    d = Path(out) / SHARDS_DIR
    found: dict[int, Path] = {}
    if d.is_dir():
        for f in d.iterdir():
            m = _SHARD_RE.match(f.name)
            if m and m["kind"] == kind:
                found[int(m["id"])] = f
    return dict(sorted(found.items()))


def _done_paths(files: Iterable[Path]) -> set[str]:
    import pyarrow.parquet as pq

    done: set[str] = set()
    for f in files:
        done.update(str(p) for p in pq.read_table(f, columns=["path"]).column("path").to_pylist())
    return done


def _readable_shards(spec: JobSpec) -> dict[int, Path]:
    """The finished shards whose files can be read; an unreadable one (a disk error, a copy cut
    short) is renamed `*.corrupt` with a warning, so its images are simply computed again."""
    import pyarrow.parquet as pq

    good: dict[int, Path] = {}
    for sid, f in finished_shards(spec.out, spec.kind).items():
        errs = shard_errors_file(spec.out, spec.kind, sid)
        try:
            pq.read_table(f, columns=["path"])
            if errs.exists():
                pq.read_metadata(errs)
        except Exception as exc:  # Arrow raises several types for a damaged file
            logger.warning("%s: unreadable shard (%s); its images are computed again", f, exc)
            for bad in (f, errs):
                if bad.exists():
                    bad.replace(bad.with_name(bad.name + ".corrupt"))
            continue
        good[sid] = f
    return good


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
        f.unlink(missing_ok=True)
    if spec.shard_dir.is_dir():
        for f in spec.shard_dir.glob(f"{spec.kind}-*.errors.parquet"):
            f.unlink(missing_ok=True)
    for name in (f"{spec.kind}.parquet", f"{spec.kind}.csv", f"{spec.kind}.json", "errors.parquet", "errors.csv"):
        (spec.out / name).unlink(missing_ok=True)


def open_job(spec: JobSpec, resume: bool = True) -> dict[int, Path]:
    """Check/record OUT/job.json (clearing OUT's results of this kind unless resuming) and return
    the readable finished shards {shard id: results file}.

    Raises:
        ArtmemError: `resume` and OUT holds results of a different job (other model/layer/kind).
    """
    from artmem.io import ensure_out_dir

    ensure_out_dir(spec.out)
    if hasattr(spec.processor, "resolved_precision"):  # decided for the job's device, before job.json
        spec.processor.resolved_precision(spec.device)
    record = _job_record(spec)
    job_file = spec.out / JOB_FILE
    old = read_job_record(spec.out)
    if old is not None:
        other = old.kind
        if other and other != spec.kind and (finished_shards(spec.out, other) or (spec.out / f"{other}.parquet").exists()):
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
    return _readable_shards(spec)


def prepare_job(spec: JobSpec, resume: bool = True) -> list[Shard]:
    """`open_job`, then the shards still to run, every path in memory (the local engines; the Ray
    engine plans the same shards out of core: `artmem.batch.plan.PendingPlan`).

    Raises:
        ArtmemError: `resume` and OUT holds results of a different job (other model/layer/kind).
    """
    done_files = open_job(spec, resume)
    wanted = spec.all_paths()
    if not wanted:
        raise ArtmemError("the collection has no images")
    done = _done_paths(done_files.values()) if done_files else set()
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


def write_shard_files(out: Path, kind: str, shard_id: int, results: pd.DataFrame, errors) -> ShardResult:
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


# ------------------------------------------------------------------------ merging


def _read_shards(files: list[Path]) -> pd.DataFrame:
    import pyarrow.parquet as pq

    from artmem.batch.results import arrow_vectors

    frames = []
    for f in files:
        t = pq.read_table(f)
        if t.num_rows == 0:
            continue
        if "embedding" in t.column_names:
            vec = arrow_vectors(t, f)
            df = t.drop_columns(["embedding"]).to_pandas()
            df["embedding"] = list(vec)
        else:
            df = t.to_pandas()
        frames.append(df)
    return _concat(frames)


def finalize(spec: JobSpec) -> JobResult:
    """Merge the finished shards into OUT/<kind>.parquet and OUT/errors.parquet.

    Rows are restricted to the collection's current images, de-duplicated by path and sorted by
    path; an error is kept only for images that have no result.
    """
    shard_files = finished_shards(spec.out, spec.kind)
    wanted = set(spec.all_paths())
    table = _read_shards(list(shard_files.values()))
    if len(table):
        table = table[table["path"].isin(wanted)].drop_duplicates("path", keep="first")
        table = table.sort_values("path", kind="stable").reset_index(drop=True)
    err_files = [shard_errors_file(spec.out, spec.kind, i) for i in shard_files]
    errs = _concat([pd.read_parquet(f) for f in err_files if f.exists()])
    if len(errs):
        have = set(table["path"]) if len(table) else set()
        errs = errs[errs["path"].isin(wanted) & ~errs["path"].isin(have)]
        errs = errs.drop_duplicates("path", keep="last").sort_values("path").reset_index(drop=True)
    errs = errors_frame(errs if len(errs) else None)
    if not len(table):
        table = _empty_table(spec)
    written = spec.processor.write_final(spec.out, table, csv=spec.csv)
    written += write_errors(spec.out, errs, csv=spec.csv)
    return JobResult(out=spec.out, kind=spec.kind, table=table, errors=errs, written=written,
                     n_total=len(wanted), backend=getattr(spec.processor, "active_backend", None))


def _empty_table(spec: JobSpec) -> pd.DataFrame:
    if spec.kind == "scores":
        return pd.DataFrame({"path": pd.Series([], dtype="str"), "score": pd.Series([], dtype="float64")})
    if spec.kind == "features":
        return pd.DataFrame({"path": pd.Series([], dtype="str"), "embedding": pd.Series([], dtype=object)})
    return pd.DataFrame({"path": pd.Series([], dtype="str")})


def run_serial(spec: JobSpec, resume: bool = True, batch_size: int = 32) -> JobResult:
    """The simplest engine: every pending shard in this process, no worker processes."""
    t0 = time.perf_counter()
    shards = prepare_job(spec, resume)
    n = sum(len(s.paths) for s in shards)
    for shard in shards:
        run_shard(spec, shard, batch_size=batch_size)
    result = finalize(spec)
    result.n_processed, result.n_resumed = n, result.n_total - n
    result.seconds = time.perf_counter() - t0
    return result


def stack_features(table: pd.DataFrame) -> np.ndarray:
    """(N, D) float32 from a table's `embedding` column."""
    from artmem.batch.results import stack_vectors

    return stack_vectors(table["embedding"])
