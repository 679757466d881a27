"""Python API of batch jobs (mirrors `artmem score` / `artmem extract`).

    >>> import artmem
    >>> scores = artmem.score("my_images/", model="resmem", out="out/scores")   # DataFrame[path, score]
    >>> artmem.score("photo.jpg")["score"][0]                                   # one image
    >>> artmem.score([pil_image, numpy_array])                                  # in memory: image_0.png, ...
    >>> feats = artmem.extract("my_images/", model="resmem", layer="fc7")      # DataFrame[path, embedding]

Inputs: an image file, a folder, a collection file, a list of paths, a PIL image, a numpy array
(HxWx3 uint8 or floats in 0..1) or a list of in-memory images (named image_0.png, ... in the result).

With `out` (a folder or an fsspec URL such as s3://bucket/prefix), results are written
incrementally in shards under OUT and a rerun resumes; without it the job runs in a temporary
folder that is removed afterwards.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import tempfile
from pathlib import Path

import pandas as pd

from artmem.batch.job import DEFAULT_SHARD_SIZE, JobResult, JobSpec
from artmem.batch.lock import output_lock
from artmem.batch.storage import Location
from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)

ENGINES = ("local", "serial", "ray")

# Below this many images `backend="auto"` means PyTorch: ONNX Runtime is faster per image, but its
# one-off export (about a minute for resmem) costs more than it saves on a handful of images.
SMALL_JOB = 16


def backend_for(backend: str, n_images: int, precision: str = "fp32") -> str:
    """The backend a job of `n_images` runs with: "auto" becomes "torch" for a small fp32 job (the
    one-off ONNX export would cost more than it saves; int8 needs ONNX Runtime)."""
    return "torch" if backend == "auto" and n_images < SMALL_JOB and precision == "fp32" else backend


def run_job(
    collection,
    processor,
    out: Location | None = None,
    *,
    device: str = "auto",
    batch_size: int = 16,
    num_workers: int | None = None,
    resume: bool = True,
    csv: bool = False,
    engine: str = "local",
    shard_size: int = DEFAULT_SHARD_SIZE,
    progress: bool = True,
    merge: bool | None = None,
    **engine_opts,
) -> JobResult:
    """Run any `Processor` over a collection with the chosen engine; returns the `JobResult`.

    Args:
        collection: an image file, a folder, a collection file, a Collection, a list of paths, or
            in-memory images (a PIL image, a numpy array or a list of them; see `open_inputs`).
        processor: e.g. `ModelProcessor("resmem")` or a measures processor.
        out: job folder (results + shards), local or an fsspec URL (s3://, gs://, file://); None =
            a temporary folder, removed afterwards.
        engine: "local" (DataLoader workers), "serial" (one process) or "ray" (`artmem.batch.engines.ray`).
        merge: True = one merged OUT/<kind>.parquet, False = leave a shard dataset
            (OUT/<kind>.dataset.json), None = merged below `artmem.batch.dataset.should_merge`'s
            limits (1 M rows, 1 GiB of column data).
        engine_opts: passed to the engine (Ray: `address`, `actors`, ...).
    """
    from artmem.batch.plan import open_job_inputs

    if engine not in ENGINES:
        raise ArtmemError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    with contextlib.ExitStack() as stack:
        coll = stack.enter_context(open_job_inputs(collection, engine))
        if out is None:
            out = stack.enter_context(tempfile.TemporaryDirectory(prefix="artmem-job-"))
            resume = False
        spec = JobSpec(coll, processor, out, shard_size=shard_size, device=device, csv=csv, merge=merge)
        stack.enter_context(output_lock(spec.out, spec.kind))
        if engine == "local":
            from artmem.batch.engines.local import run_local

            return run_local(spec, resume=resume, batch_size=batch_size, num_workers=num_workers,
                             progress=progress, **engine_opts)
        if engine == "serial":
            from artmem.batch.job import run_serial

            return run_serial(spec, resume=resume, batch_size=batch_size)
        try:
            ray_engine = importlib.import_module("artmem.batch.engines.ray")
        except ModuleNotFoundError as exc:
            if exc.name in ("artmem.batch.engines.ray", "ray"):
                raise ArtmemError(f"engine 'ray' is not available ({exc.name} is missing); use --engine local") from None
            raise
        return ray_engine.run_job(spec, resume=resume, batch_size=batch_size, progress=progress, **engine_opts)


def model_processor(coll, model, kind: str, precision: str = "fp32", **kwargs):
    """`ModelProcessor` for a job over `coll`: int8/auto calibrate on a sample of its own images."""
    from artmem.batch.processors import ModelProcessor

    calibration = coll.abs_paths() if precision != "fp32" else None
    return ModelProcessor(model, kind, precision=precision, calibration=calibration,
                          calibration_name=f"collection {coll.name}", **kwargs)


def _model_job(collection, model, kind: str, layer: str | None, out, *, backend: str, threads: int | None,
               precision: str, **job_opts) -> JobResult:
    """`score`/`extract`: a ModelProcessor job over any input `open_inputs` takes."""
    from artmem.batch.plan import open_job_inputs

    with open_job_inputs(collection, job_opts.get("engine", "local")) as coll:
        proc = model_processor(coll, model, kind, layer=layer, backend=backend_for(backend, len(coll), precision),
                               threads=threads, precision=precision)
        return run_job(coll, proc, out, **job_opts)


def score(
    collection,
    model: str | Path = "resmem",
    out: Location | None = None,
    *,
    device: str = "auto",
    batch_size: int = 16,
    num_workers: int | None = None,
    resume: bool = True,
    csv: bool = False,
    engine: str = "local",
    backend: str = "auto",
    threads: int | None = None,
    precision: str = "fp32",
    shard_size: int = DEFAULT_SHARD_SIZE,
    progress: bool = True,
    merge: bool | None = None,
    **engine_opts,
) -> pd.DataFrame:
    """Memorability score of every image: DataFrame[path, score] sorted by path.

    Unreadable images are skipped and listed in OUT/errors.parquet (and in `df.attrs["errors"]`).
    `backend`: "auto" (ONNX Runtime on CPU where the model supports it and the job has at least
    `SMALL_JOB` images, else PyTorch), "torch", "onnx".
    `threads`: compute threads (default: all cores).
    `precision`: "fp32" (default, equals the reference package), "int8" (CPU, calibrated on a sample
    of the collection; see docs/batch.md) or "auto".
    """
    result = _model_job(collection, model, "scores", None, out, device=device, batch_size=batch_size,
                        num_workers=num_workers, resume=resume, csv=csv, engine=engine, backend=backend,
                        threads=threads, precision=precision, shard_size=shard_size, progress=progress,
                        merge=merge, **engine_opts)
    df = result.table[["path", "score"]].reset_index(drop=True)
    df.attrs["errors"] = result.errors
    return df


def extract(
    collection,
    model: str | Path = "resmem",
    layer: str | None = None,
    out: Location | None = None,
    *,
    device: str = "auto",
    batch_size: int = 16,
    num_workers: int | None = None,
    resume: bool = True,
    csv: bool = False,
    engine: str = "local",
    backend: str = "auto",
    threads: int | None = None,
    precision: str = "fp32",
    shard_size: int = DEFAULT_SHARD_SIZE,
    progress: bool = True,
    merge: bool | None = None,
    **engine_opts,
) -> pd.DataFrame:
    """Feature vectors of `layer` (default: the model's default layer): DataFrame[path, embedding].

    With `out`, also writes OUT/features.parquet + OUT/features.json (read them back with
    `artmem.batch.results.read_features`).
    """
    result = _model_job(collection, model, "features", layer, out, device=device, batch_size=batch_size,
                        num_workers=num_workers, resume=resume, csv=csv, engine=engine, backend=backend,
                        threads=threads, precision=precision, shard_size=shard_size, progress=progress,
                        merge=merge, **engine_opts)
    df = result.table[["path", "embedding"]].reset_index(drop=True)
    df.attrs["errors"] = result.errors
    return df
