"""Local engine: one process runs the model, DataLoader worker processes decode images ahead.

Decoding/preprocessing (`processor.load`) runs in `num_workers` worker processes while the main
process computes the previous batch, so the CPU cores spent on the model are not idle waiting for
JPEG decoding. Batches never cross shard boundaries; each shard is written as soon as its last batch
is done, so an interrupted job keeps every finished shard.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

import pandas as pd

from artmem.batch.finalize import finalize
from artmem.batch.job import (
    CollateItems,
    ImageItems,
    JobResult,
    JobSpec,
    Shard,
    ShardResult,
    _concat,
    prepare_job,
    process_batch,
    write_shard,
)
from artmem.data.pathnames import shown_path

logger = logging.getLogger(__name__)


class ShardBatches:
    """Batch sampler over a flat list of shard images: batches never straddle two shards."""

    def __init__(self, shards: list[Shard], batch_size: int):
        self.batches: list[list[int]] = []
        start = 0
        for shard in shards:
            n = len(shard.paths)
            for s in range(0, n, batch_size):
                self.batches.append(list(range(start + s, start + min(s + batch_size, n))))
            start += n

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, disable=not enabled or total == 0,
                dynamic_ncols=True, smoothing=0.1)


def run_local(
    spec: JobSpec,
    *,
    resume: bool = True,
    batch_size: int = 16,
    num_workers: int | None = None,
    progress: bool = True,
    on_shard_done: Callable[[ShardResult], None] | None = None,
) -> JobResult:
    """Run a job on this machine (CPU or one GPU) and merge its outputs.

    Args:
        spec: the job.
        resume: skip images already done in OUT/shards (default); False starts over.
        batch_size: images per forward pass.
        num_workers: decoding worker processes (default `runtime.default_num_workers()`; 0 = decode
            in the main process).
        progress: tqdm bar (stderr) with images/s.
        on_shard_done: called after each shard is written (e.g. to report or to stop).
    """
    import torch

    from artmem.runtime import default_num_workers

    t0 = time.perf_counter()
    shards = prepare_job(spec, resume)
    n_pending = sum(len(s.paths) for s in shards)
    if num_workers is None:
        num_workers = default_num_workers()
    num_workers = max(0, min(num_workers, n_pending // max(1, batch_size)))
    if shards:
        spec.processor.setup(spec.device)  # the model is loaded once, before workers fork
        flat = [p for s in shards for p in s.paths]
        owner = [(si, len(s.paths)) for si, s in enumerate(shards)]
        dataset = ImageItems(spec, flat)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=ShardBatches(shards, batch_size),
            num_workers=num_workers,
            collate_fn=CollateItems(spec.processor),
            prefetch_factor=4 if num_workers else None,
            pin_memory=getattr(getattr(spec.processor, "device", None), "type", "cpu") == "cuda",
        )
        starts, acc = [], 0
        for _, n in owner:
            starts.append(acc)
            acc += n
        bar = _progress(n_pending, f"{spec.kind} ({getattr(spec.processor, 'model_name', spec.kind)})", progress)
        current, frames, errors, n_seen, n_bad = 0, [], [], 0, 0
        try:
            for idx, batch, errs in loader:
                base = starts[current]
                shard = shards[current]
                local_idx = [i - base for i in idx]
                local_errs = [(i - base, r) for i, r in errs]
                rows, bad = process_batch(spec.processor, list(shard.paths), local_idx, batch, local_errs)
                frames.append(rows)
                errors += bad
                n_batch = len(idx) + len(errs)
                n_seen += n_batch
                bar.update(n_batch)
                if n_seen == len(shard.paths):
                    res = write_shard(spec, shard.id, _concat(frames), errors)
                    if res.n_errors:
                        n_bad += res.n_errors
                        bar.set_postfix(errors=n_bad, refresh=False)
                    if on_shard_done is not None:
                        on_shard_done(res)
                    current, frames, errors, n_seen = current + 1, [], [], 0
        finally:
            bar.close()
    result = finalize(spec)
    result.n_processed = n_pending
    result.n_resumed = result.n_total - n_pending
    result.seconds = time.perf_counter() - t0
    if n_pending:
        logger.info("%s: %d image(s) in %.1f s (%.2f img/s)", spec.kind, n_pending, result.seconds,
                    n_pending / max(result.seconds, 1e-9))
    return result


def summarize_errors(errors: pd.DataFrame, limit: int = 5) -> str:
    """One line per failed image (first `limit`), for stderr."""
    lines = [f"{len(errors)} image(s) could not be read (listed in errors.parquet):"]
    for row in errors.head(limit).itertuples(index=False):
        lines.append(f"  {shown_path(row.path)}: {row.reason}")
    if len(errors) > limit:
        lines.append(f"  ... and {len(errors) - limit} more")
    return "\n".join(lines)
