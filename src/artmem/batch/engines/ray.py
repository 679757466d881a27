"""Ray engine: the same batch job as the local engine, run on Ray Data (locally or on a cluster).

Pipeline (one Ray Data dataset per run):

    pending images (path, abs path, shard)        driver: `plan.plan_pending` -> only unfinished
                                                  work, planned out of core (DuckDB, in a child
                                                  process), one Parquet file per shard in OUT;
                                                  Ray Data gets unit numbers (`from_numpy`, a
                                                  block per shard), each a row group that a
                                                  worker reads
      -> map_batches(_decode, tasks)              decode + preprocess (`processor.load`), CPU tasks
      -> map_batches(_ProcessActor, actor pool)   `processor.setup` once per actor, then
                                                  `collate` + `process` batch after batch; each
                                                  batch's rows are written as part files per shard
      -> iter_batches on the driver               counts only (shard id, images); when a shard's
                                                  count is complete, a Ray task compacts its parts
                                                  into the shard files (`ray_parts.compact_shard`)

Workers write every shard file, so OUT must be a location that every node can write (a shared
filesystem, or an object store URL such as s3://bucket/prefix); no result row travels to the
driver, whose memory is a counter per pending shard: it never holds the collection's paths (with a
`plan.CollectionFile` it never loads the table).
Workers read the images from local paths on a shared filesystem or fsspec URLs such as s3://...
Resume works across engines because both use `open_job`/`write_shard_files`/`finalize` of
`artmem.batch.job` and plan the same shards (`prepare_job` in memory, `plan_pending` out of core):
shards finished by the local engine are skipped here and vice versa.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import time
import uuid
from dataclasses import dataclass

import numpy as np

from artmem.batch import storage
from artmem.batch.engines.ray_parts import ShardTracker, parts_root, write_part
from artmem.batch.job import JobResult, JobSpec, finalize, open_job, safe_load
from artmem.batch.plan import (
    PendingShards,
    decode_abs_path,
    locate_unit,
    pending_file,
    plan_pending,
)
from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)

RAY_ADDRESS_ENV = "RAY_ADDRESS"
# Images per decode task: big enough to amortise task overhead, small enough to spread the work.
DECODE_BLOCK = 32
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


# ----------------------------------------------------------------------------- resources


@dataclass(frozen=True)
class ActorPlan:
    """How the model stage is laid out on the cluster."""

    actors: int
    cpus_per_actor: float
    gpus_per_actor: float
    threads: int
    decode_cpus: float

    def describe(self) -> str:
        gpu = f", {self.gpus_per_actor:g} GPU" if self.gpus_per_actor else ""
        return (f"{self.actors} actor(s) x ({self.cpus_per_actor:g} CPU{gpu}, {self.threads} thread(s)); "
                f"decode tasks {self.decode_cpus:g} CPU each")


def plan_actors(
    cluster_cpus: float,
    cluster_gpus: float = 0.0,
    *,
    actors: int | None = None,
    cpus_per_actor: float | None = None,
    gpus_per_actor: float = 0.0,
    threads: int | None = None,
    max_useful: int | None = None,
    node_cpus: list[float] | None = None,
) -> ActorPlan:
    """Choose actor count and per-actor resources so decode tasks always have CPU left.

    On a small machine, actors that reserve every CPU starve the decode tasks and the dataset
    stalls, so by default the actors together reserve at most ~75% of the CPUs (fractional CPUs
    per actor where needed), and decode tasks ask for half a CPU.

    Args:
        cluster_cpus / cluster_gpus: the cluster's totals (`ray.cluster_resources()`).
        actors: number of model actors (default: as many as fit).
        cpus_per_actor: CPUs reserved per actor (default 1, reduced to fit on small machines).
        gpus_per_actor: GPUs per actor (fractions share a GPU between actors).
        threads: torch/OMP threads per actor (default: the actor's CPUs, at least 1).
        max_useful: never start more actors than this (e.g. the number of pending batches).
        node_cpus: CPUs of each node; the default actor count then leaves decode CPU on every
            node (an actor cannot span nodes), not just in the cluster total.
    """
    if cluster_cpus <= 0:
        raise ArtmemError("the Ray cluster reports no CPUs")
    if gpus_per_actor < 0 or (cpus_per_actor is not None and cpus_per_actor <= 0):
        raise ArtmemError("CPUs per actor must be > 0 and GPUs per actor >= 0")
    if gpus_per_actor > 0 and cluster_gpus <= 0:
        raise ArtmemError(f"--gpus-per-actor {gpus_per_actor:g} but the Ray cluster has no GPU")
    def _budget(cpus: float) -> float:  # CPUs actors may reserve, the rest decodes
        return cpus * 0.75 if cpus <= 8 else cpus - 2

    budget = _budget(cluster_cpus)
    if actors is None:
        per = cpus_per_actor or 1.0
        if node_cpus and len(node_cpus) > 1:
            actors = max(1, sum(int(_budget(n) // per) for n in node_cpus if n > 0))
        else:
            actors = max(1, int(budget // per))
        if gpus_per_actor > 0:
            actors = max(1, min(actors, int(cluster_gpus // gpus_per_actor)))
    if actors < 1:
        raise ArtmemError(f"--actors must be >= 1, got {actors}")
    if max_useful is not None:
        actors = max(1, min(actors, max_useful))
    if cpus_per_actor is None:
        cpus_per_actor = min(1.0, budget / actors)
        cpus_per_actor = math.floor(cpus_per_actor * 100) / 100 or 0.01
    elif actors * cpus_per_actor > cluster_cpus:
        raise ArtmemError(
            f"{actors} actor(s) x {cpus_per_actor:g} CPU = {actors * cpus_per_actor:g} CPUs, but the "
            f"cluster has {cluster_cpus:g}; lower --actors or --cpus-per-actor"
        )
    if gpus_per_actor > 0 and actors * gpus_per_actor > cluster_gpus + 1e-9:
        raise ArtmemError(
            f"{actors} actor(s) x {gpus_per_actor:g} GPU exceed the cluster's {cluster_gpus:g} GPU(s)"
        )
    threads = threads or max(1, int(round(cpus_per_actor)))
    decode_cpus = 0.5 if cluster_cpus <= 8 else 1.0
    return ActorPlan(actors, float(cpus_per_actor), float(gpus_per_actor), int(threads), decode_cpus)


# ----------------------------------------------------------------------------- Ray session


@dataclass
class RaySession:
    address: str | None
    started_here: bool
    seconds: float
    cpus: float
    gpus: float
    node_cpus: list[float]


def init_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    object_store_memory: int | None = None,
) -> RaySession:
    """Connect to a Ray cluster (`address`, else $RAY_ADDRESS) or start a local instance.

    An already initialised Ray (e.g. a test fixture, a notebook) is reused as it is.
    """
    try:
        import ray
    except ImportError as exc:
        raise ArtmemError("--engine ray needs Ray Data: pip install 'artmem[scale]'") from exc

    t0 = time.perf_counter()
    started = False
    if not ray.is_initialized():
        address = address or os.environ.get(RAY_ADDRESS_ENV) or None
        kwargs: dict = {"ignore_reinit_error": True, "include_dashboard": False, "logging_level": logging.WARNING}
        if address is None:
            # A local instance: resources are ours to size.
            kwargs.update(num_cpus=num_cpus, num_gpus=num_gpus, object_store_memory=object_store_memory)
            started = True
        try:
            ray.init(address=address, **{k: v for k, v in kwargs.items() if v is not None})
        except ConnectionError as exc:
            raise ArtmemError(f"cannot connect to the Ray cluster at {address!r} ({exc})") from exc
    res = ray.cluster_resources()
    nodes = [float(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    return RaySession(address, started, time.perf_counter() - t0, float(res.get("CPU", 0)),
                      float(res.get("GPU", 0)), nodes)


def _quiet_ray_data() -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # our own tqdm bar counts images
    ctx.print_on_execution_start = False
    ctx.execution_options.preserve_order = False
    if hasattr(ctx, "enable_operator_progress_bars"):
        ctx.enable_operator_progress_bars = False


# ----------------------------------------------------------------------------- pipeline stages


def _thread_env(threads: int) -> dict[str, str]:
    return {k: str(threads) for k in _THREAD_VARS}


def _limit_threads(threads: int) -> None:
    for k, v in _thread_env(threads).items():
        os.environ[k] = v
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def _decode_block(batch: dict[str, np.ndarray], processor_blob: bytes, pending_dir: str,
                  shard_ids: np.ndarray, unit_starts: np.ndarray) -> dict[str, np.ndarray]:
    """Ray task: read the pending images of a block, `processor.load` each; a failure becomes an
    error row.

    The block holds unit numbers (column `data`); unit u is one row group of one shard's
    pending-list file (`plan_pending`, `locate_unit`), read here on the worker. The
    processor arrives pickled without its model (processors drop heavy state when pickled), so
    this stays cheap; items go back pickled so that any processor's item type travels unchanged.
    """

    _limit_threads(1)
    processor = pickle.loads(processor_blob)
    paths, shards, items, reasons = [], [], [], []
    for unit in batch["data"]:
        sid, group = locate_unit(int(unit), shard_ids, unit_starts)
        rows = storage.parquet_file(pending_file(pending_dir, sid)).read_row_group(group).to_pydict()
        paths += rows["path"]
        shards += rows["shard"]
        for abs_path in rows["abs_path"]:
            item, reason = safe_load(processor, decode_abs_path(abs_path))
            items.append(b"" if reason is not None else pickle.dumps(item, protocol=5))
            reasons.append("" if reason is None else reason)
    return {
        "path": np.array(paths, dtype=object),
        "shard": np.array(shards, dtype=np.int64),
        "item": np.array(items, dtype=object),
        "reason": np.array(reasons, dtype=object),
    }


class _ProcessActor:
    """Ray actor UDF: the processor (model) is set up once per actor, then runs batch after batch.

    Thread limits (OMP/MKL env and torch intra-op threads) are applied in the constructor, before
    the processor imports torch, so actors sharing a node do not oversubscribe its cores.

    Each batch's result rows and error rows are written by the actor as one part file per shard
    (`ray_parts.write_part`), so any processor's result columns (scores, vectors, measures) reach
    OUT unchanged. Output: one row per (input batch, shard) with counts and timings only.
    """

    def __init__(self, processor_blob: bytes, device: str, threads: int, run_dir: str):
        _limit_threads(threads)
        self.run_dir = run_dir
        self.processor = pickle.loads(processor_blob)
        if hasattr(self.processor, "threads"):
            self.processor.threads = threads
        self.processor.setup(device)
        self.backend = getattr(self.processor, "active_backend", None)
        self.node = os.uname().nodename
        self.pid = os.getpid()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        paths = [str(p) for p in batch["path"]]
        shards = [int(s) for s in batch["shard"]]
        good = [i for i, r in enumerate(batch["reason"]) if not r]
        result = None
        if good:
            items = [pickle.loads(batch["item"][i]) for i in good]
            result = self.processor.process(self.processor.collate(items))
            if len(result) != len(good):
                raise RuntimeError(f"processor returned {len(result)} rows for a batch of {len(good)}")
            result = result.reset_index(drop=True)
            result.insert(0, "path", [paths[i] for i in good])
        seconds = time.perf_counter() - t0  # model time; writing the parts is not counted
        out_shard, out_n = [], []
        for sid in sorted(set(shards)):
            mine = [i for i, s in enumerate(shards) if s == sid]
            rows = None
            if result is not None:
                keep = [j for j, i in enumerate(good) if shards[i] == sid]
                rows = result.iloc[keep].reset_index(drop=True) if keep else None
            errs = [(paths[i], str(batch["reason"][i])) for i in mine if batch["reason"][i]]
            write_part(self.run_dir, self.processor.kind, sid, [paths[i] for i in mine], rows, errs)
            out_shard.append(sid)
            out_n.append(len(mine))
        k = len(out_shard)
        return {
            "shard": np.array(out_shard, dtype=np.int64),
            "n": np.array(out_n, dtype=np.int64),
            "seconds": np.full(k, seconds / max(k, 1)),
            "worker": np.array([f"{self.node}:{self.pid}"] * k, dtype=object),
            "backend": np.array([self.backend or ""] * k, dtype=object),
        }


# ----------------------------------------------------------------------------- driver


def run_job(
    spec: JobSpec,
    address: str | None = None,
    actors: int | None = None,
    cpus_per_actor: float | None = None,
    gpus_per_actor: float = 0.0,
    *,
    resume: bool = True,
    batch_size: int = 16,
    threads: int | None = None,
    num_cpus: int | None = None,
    object_store_memory: int | None = None,
    progress: bool = True,
    on_shard_done=None,
) -> JobResult:
    """Run a job on Ray Data and merge its outputs exactly like the local engine.

    Args:
        spec: the job (collection, processor, out, shard size, device).
        address: Ray cluster address ("ray://head:10001", "auto", "host:6379"); default
            $RAY_ADDRESS, else a local Ray instance on this machine.
        actors: model actors (default: as many as the cluster's CPUs/GPUs allow).
        cpus_per_actor: CPUs reserved per actor (default 1, fractional on small machines).
        gpus_per_actor: GPUs per actor (0 = CPU inference; fractions share a GPU).
        resume: skip images already done in OUT/shards by any engine (default).
        batch_size: images per forward pass in an actor.
        threads: torch/OMP threads per actor (default: its CPUs).
        num_cpus / object_store_memory: sizes of a *local* Ray instance (ignored on a cluster).
        progress: tqdm bar (stderr) with images/s.
        on_shard_done: called with each written `ShardResult`.

    Returns:
        JobResult of `finalize` (merged table and errors). `result.ray` (a dict) holds the Ray
        figures: `startup_s` (connecting/starting Ray), `plan` (ActorPlan), `pipeline_s`,
        `first_output_s` (worker start + model load + first batch), `steady_images_per_s` (after
        the first batch) and `workers` ({actor: {images, seconds inside process()}}).
    """
    t0 = time.perf_counter()
    done_files = open_job(spec, resume)
    info: dict = {"startup_s": 0.0, "workers": {}, "plan": None, "pipeline_s": 0.0,
                  "first_output_s": None, "steady_images_per_s": None}
    # Parts left by a killed run belong to shards that were never finished: start clean.
    storage.remove_tree(parts_root(spec.out, spec.kind))
    run_dir = storage.join(parts_root(spec.out, spec.kind), uuid.uuid4().hex[:12])
    plan = plan_pending(spec.collection, done_files, spec.shard_size, storage.join(run_dir, "pending"),
                        DECODE_BLOCK)
    n_pending = plan.n_pending
    if n_pending:
        _run_pending(spec, plan.shards, run_dir, info, address=address, actors=actors,
                     cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor, batch_size=batch_size,
                     threads=threads, num_cpus=num_cpus, object_store_memory=object_store_memory,
                     progress=progress, on_shard_done=on_shard_done)
    storage.remove_tree(parts_root(spec.out, spec.kind))
    result = finalize(spec)
    result.n_processed = n_pending
    result.n_resumed = result.n_total - n_pending
    result.seconds = time.perf_counter() - t0
    result.ray = info  # type: ignore[attr-defined]
    if n_pending:
        logger.info("%s on Ray: %d image(s) in %.1f s (%.2f img/s, of which %.1f s Ray start-up)",
                    spec.kind, n_pending, result.seconds, n_pending / max(result.seconds, 1e-9),
                    info["startup_s"])
    return result


def _run_pending(spec: JobSpec, shards: PendingShards, run_dir, info: dict, *, address, actors, cpus_per_actor,
                 gpus_per_actor, batch_size, threads, num_cpus, object_store_memory, progress,
                 on_shard_done) -> None:
    from tqdm.auto import tqdm

    session = init_ray(address, num_cpus=num_cpus, object_store_memory=object_store_memory)
    info["startup_s"] = session.seconds
    import ray.data

    _quiet_ray_data()
    n_pending = int(shards.rows.sum())
    n_batches = math.ceil(n_pending / batch_size)
    device = spec.device
    if device == "cuda" and session.gpus == 0:
        raise ArtmemError("--device cuda but the Ray cluster has no GPU")
    if not gpus_per_actor and device in ("auto", "cuda") and session.gpus > 0:
        gpus_per_actor = 1.0  # on a GPU cluster, --device auto means one GPU per actor
    if not gpus_per_actor:
        device = "cpu"  # an actor without a GPU reservation must not touch a GPU
    plan = plan_actors(session.cpus, session.gpus, actors=actors, cpus_per_actor=cpus_per_actor,
                       gpus_per_actor=gpus_per_actor, threads=threads, max_useful=n_batches,
                       node_cpus=session.node_cpus)
    info["plan"] = plan
    logger.info("Ray: %g CPU(s), %g GPU(s); %s", session.cpus, session.gpus, plan.describe())
    blob = pickle.dumps(spec.processor, protocol=5)
    # Unit numbers, one input block per shard (more on a small job, to feed every actor): Ray Data
    # costs the driver tens of KB per input block, so the block count must not grow with N. A
    # decode task walks its block one unit at a time (batch_size=1) and streams its output.
    n_blocks = max(1, min(shards.n_units, max(len(shards.ids), 2 * plan.actors)))
    ds = ray.data.from_numpy(np.array_split(np.arange(shards.n_units, dtype=np.int64), n_blocks))
    ds = ds.map_batches(
        _decode_block, batch_size=1, batch_format="numpy", num_cpus=plan.decode_cpus,
        fn_kwargs={"processor_blob": blob, "pending_dir": str(shards.folder), "shard_ids": shards.ids,
                   "unit_starts": shards.unit_starts()},
    )
    ds = ds.map_batches(
        _ProcessActor, fn_constructor_args=(blob, device, plan.threads, str(run_dir)), batch_size=batch_size,
        batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=plan.actors),
        num_cpus=plan.cpus_per_actor, num_gpus=plan.gpus_per_actor or None,
    )
    tracker = ShardTracker(spec, shards, run_dir, on_shard_done)
    bar = tqdm(total=n_pending, desc=f"{spec.kind} on ray ({plan.actors} actor(s))", unit="img",
               disable=not progress, dynamic_ncols=True, smoothing=0.1)
    backends: set[str] = set()
    t_start = time.perf_counter()
    n_done, t_first, n_first = 0, None, 0
    try:
        for out in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
            if t_first is None:  # pipeline warm: workers started, model loaded, first batch done
                t_first, n_first = time.perf_counter(), int(out["n"].sum())
            n_done += int(out["n"].sum())
            for sid, n, sec, worker, backend in zip(out["shard"], out["n"], out["seconds"], out["worker"],
                                                    out["backend"], strict=True):
                w = info["workers"].setdefault(str(worker), {"images": 0, "seconds": 0.0})
                w["images"] += int(n)
                w["seconds"] += float(sec)
                if backend:
                    backends.add(str(backend))
                bar.update(int(n))
                tracker.add(int(sid), int(n))
        tracker.pump(block=True)  # the last compactions
    finally:
        bar.close()
    t_end = time.perf_counter()
    info["pipeline_s"] = t_end - t_start
    info["first_output_s"] = (t_first - t_start) if t_first is not None else None
    if t_first is not None and n_done > n_first and t_end > t_first:
        info["steady_images_per_s"] = (n_done - n_first) / (t_end - t_first)
    if tracker.incomplete:
        raise RuntimeError(f"Ray run ended with shard(s) {tracker.incomplete[:5]} incomplete")
    if backends and hasattr(spec.processor, "active_backend"):
        spec.processor.active_backend = sorted(backends)[0]  # recorded in features.json


def shutdown() -> None:
    """Stop the Ray instance this process started or joined (no-op without Ray)."""
    try:
        import ray
    except ImportError:
        return
    if ray.is_initialized():
        ray.shutdown()
