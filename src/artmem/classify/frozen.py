"""Frozen-feature transfer (Yu, Jin & Hsu): backbone features computed once, the dense head trained on them.

When only the head is trained, the frozen backbone gives the same output every epoch, so its
embedding (`forward_features`, the input of the head) is computed once per image by a batch job
(`artmem.classify.processors.CachedEmbeddings`) into `<cache_dir>/features/<key>/`, and the head
trains on those vectors (epochs take milliseconds).
`search_heads` runs a randomized search over head width, dropout and learning rate.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)


class HeadOnly(nn.Module):
    """The head group of a model, run on precomputed embeddings via the model's `forward_head`.

    Its state dict holds only the head's parameters (shared with the full model, so training it
    trains the model's head in place).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.head = dict(model.layer_groups())["head"]
        object.__setattr__(self, "_model", model)

    def train(self, mode: bool = True):
        """The whole model follows: dropout outside the head group (e.g. EfficientNet's dropout
        before its classifier) acts here as it will when the last module is fine-tuned, while
        the frozen backbone stays in eval mode (`set_train_mode`)."""
        from artmem.models.scenarios import set_train_mode

        super().train(mode)
        set_train_mode(self._model, mode)
        return self

    def _apply(self, fn, *args, **kwargs):
        # `.to(device)` moves the whole model: forward_head may use frozen layers outside the
        # head group (ResMem's fc8..fc11 before its classifier fc12)
        self._model._apply(fn, *args, **kwargs)
        return super()._apply(fn, *args, **kwargs)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self._model.forward_head(f)


def feature_key(model_name: str, init: str, seed: int, cache_size: int, crop: int) -> str:
    spec = {"model": model_name, "init": init, "seed": seed if init == "random" else None,
            "cache_size": cache_size, "crop": crop, "v": 1}
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def cached_features(model: nn.Module, collection, cache, crop: int, job_dir: Path, identity: dict,
                    device="auto", batch_size: int = 64) -> tuple[np.ndarray, float]:
    """`forward_features` of every collection image's cached centre crop, in collection order.

    A batch job (`CachedEmbeddings` run by `run_job`) in `job_dir`: computed once, resumed when
    interrupted, reused by later runs with the same `identity` (model, init, seed, cache size,
    crop); the images of a new collection that the folder lacks are added.

    Returns:
        (features (N, D) float32, seconds spent computing; 0 when everything was on disk).
    """
    from artmem.batch.api import run_job
    from artmem.batch.results import stack_vectors
    from artmem.classify.processors import CachedEmbeddings

    proc = CachedEmbeddings(model, cache, crop, identity)
    # decoding is already done (memmap reads): no worker processes, they would only add IPC
    result = run_job(collection, proc, job_dir, device=device, batch_size=batch_size, num_workers=0,
                     progress=False)
    if len(result.errors):
        raise ArtmemError(f"{job_dir}: {len(result.errors)} cached image(s) could not be read, e.g. "
                          f"{result.errors['path'].iloc[0]}: {result.errors['reason'].iloc[0]}")
    pos = {p: i for i, p in enumerate(result.table["path"])}
    feats = stack_vectors(result.table["embedding"])[[pos[p] for p in collection.paths]]
    elapsed = result.seconds if result.n_processed else 0.0
    if result.n_processed:
        logger.info("backbone features: %d images in %.1f s (%.1f img/s), kept in %s", result.n_processed,
                    elapsed, result.n_processed / max(elapsed, 1e-9), job_dir)
    else:
        logger.info("reusing cached backbone features %s", job_dir)
    return feats, elapsed


def sample_trials(n: int, seed: int, lr: float, head_width: int, dropout: float | None) -> list[dict]:
    """Random head settings: width log-uniform in [64, 2048], dropout U(0.1, 0.8), lr log-U(lr/10, lr*10).

    Trial 0 is the configured setting, so a search never does worse on validation than no search.
    """
    rng = np.random.default_rng(seed + 7919)
    trials = [{"head_width": int(head_width), "dropout": 0.5 if dropout is None else float(dropout),
               "lr": float(lr)}]
    for _ in range(max(0, n - 1)):
        trials.append({
            "head_width": int(round(float(np.exp(rng.uniform(np.log(64), np.log(2048)))))),
            "dropout": round(float(rng.uniform(0.1, 0.8)), 3),
            "lr": float(np.exp(rng.uniform(np.log(lr / 10), np.log(lr * 10)))),
        })
    return trials
