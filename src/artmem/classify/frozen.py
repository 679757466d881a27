"""Frozen-feature transfer (Yu, Jin & Hsu): backbone features computed once, the dense head trained on them.

When only the head is trained, the frozen backbone gives the same output every epoch, so its
embedding (`forward_features`, the input of the head) is computed once per image, cached on disk
under `<cache_dir>/features/`, and the head trains on those vectors (epochs take milliseconds).
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

from artmem.runtime import autocast, resolve_device

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


def compute_features(model: nn.Module, dataset, device="auto", batch_size: int = 64,
                     num_workers: int | None = None) -> np.ndarray:
    """`forward_features` of every item of `dataset` (centre crops), float32 (N, D)."""
    from tqdm.auto import tqdm

    from artmem.classify.data import make_loader

    dev = resolve_device(device)
    model.to(dev).eval()
    loader = make_loader(dataset, batch_size, shuffle=False, num_workers=num_workers, device=dev)
    out = []
    with torch.inference_mode(), autocast(dev):
        for x, _ in tqdm(loader, desc="backbone features", unit="batch", leave=False, disable=None):
            out.append(model.forward_features(x.to(dev)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def cached_features(model: nn.Module, dataset, cache_file: Path, device="auto",
                    batch_size: int = 64) -> tuple[np.ndarray, float]:
    """Features of `dataset.paths`, read from `cache_file` (.npz) when present, else computed and saved.

    Returns:
        (features (N, D) in dataset order, seconds spent computing; 0 when read from disk).
    """
    import time

    paths = list(dataset.paths)
    if cache_file.exists():
        data = np.load(cache_file, allow_pickle=False)
        known = {p: i for i, p in enumerate(data["paths"].tolist())}
        if all(p in known for p in paths):
            logger.info("reusing cached backbone features %s", cache_file)
            return data["vectors"][[known[p] for p in paths]], 0.0
    t0 = time.perf_counter()
    feats = compute_features(model, dataset, device=device, batch_size=batch_size)
    elapsed = time.perf_counter() - t0
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(".tmp.npz")
    np.savez(tmp, paths=np.asarray(paths, dtype=str), vectors=feats.astype(np.float32))
    tmp.replace(cache_file)
    logger.info("backbone features: %d images in %.1f s (%.1f img/s), cached in %s",
                len(paths), elapsed, len(paths) / max(elapsed, 1e-9), cache_file)
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
