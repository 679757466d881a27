"""Images through a memorability scorer: the training dataset, and feature extraction and
image-level prediction as batch jobs (`ScorerOutputs` run by `run_job`). Unreadable images are
recorded and skipped, never fatal for a batch."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from artmem.errors import ArtmemError

# training-run messages keep one logger name, whichever module writes them
logger = logging.getLogger("artmem.memorability.train")


class ImageTable(torch.utils.data.Dataset):
    """(tensor, target) per training image; an unreadable image yields an error marker, dropped by
    `collate_readable` (fine-tuning skips it; the evaluation jobs list it in errors.parquet)."""

    def __init__(self, sources: list[str], transform, targets: np.ndarray):
        self.sources, self.transform, self.targets = sources, transform, targets

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i):
        from artmem.data.images import load_image
        from artmem.errors import ImageReadError

        try:
            x = self.transform(load_image(self.sources[i]))
        except ImageReadError as exc:
            return ("error", i, exc.reason)
        return x, torch.as_tensor(self.targets[i], dtype=torch.float32)


def collate_readable(batch):
    """Default collate over the readable items of a batch (ImageTable yields a marker for the rest)."""
    ok = [b for b in batch if not (isinstance(b, tuple) and len(b) == 3 and b[0] == "error")]
    if not ok:
        return torch.empty(0), torch.empty(0)
    return torch.utils.data.default_collate(ok)


def compute_features(scorer_like, coll, device, batch_size: int = 32, num_workers: int | None = 0,
                     out=None, identity: dict | None = None):
    """Features of every collection image through `scorer_like.features` (a frozen scorer).

    A batch job (`ScorerOutputs`) in `out` (None: a temporary folder): unreadable images are
    listed in its errors whatever `num_workers` is, and an interrupted run resumes; features of
    another network in `out` are replaced.

    Returns:
        (features float32 (N, D) with NaN rows for unreadable images, errors DataFrame).
    """
    from artmem.batch.api import run_job
    from artmem.batch.results import read_job_record, stack_vectors
    from artmem.memorability.processors import ScorerOutputs

    proc = ScorerOutputs(scorer_like, "features", identity or {"model": scorer_like.pretrained_cfg.name})
    old = read_job_record(out) if out is not None else None
    resume = old is None or old.processor == proc.spec()
    if not resume:
        logger.info("%s holds features of %s/%s: recomputing them", out, old.model, old.layer)
    result = run_job(coll, proc, out, device=device, batch_size=batch_size, num_workers=num_workers,
                     resume=resume)
    if not len(result.table):
        raise ArtmemError("no readable image in the collection")
    vectors = stack_vectors(result.table["embedding"])
    feats = np.full((len(coll), vectors.shape[1]), np.nan, dtype=np.float32)
    pos = pd.Series(np.arange(len(result.table)), index=result.table["path"].to_numpy())
    idx = pos.reindex(coll.paths).to_numpy()
    have = ~np.isnan(idx)
    feats[have] = vectors[idx[have].astype(int)]
    return feats, result.errors.reset_index(drop=True)


def feature_dim(scorer) -> int:
    """Width of `scorer.features` for one blank input of the scorer's size."""
    cfg = scorer.pretrained_cfg
    x = torch.zeros(1, *cfg.input_size)
    with torch.inference_mode():
        return int(scorer.eval().features(x).shape[1])


def predict_images(scorer, coll, rows, device, batch_size, num_workers: int | None = 0, identity: dict | None = None):
    """Scores of the collection rows `rows` from images (a `ScorerOutputs` batch job).

    Returns:
        (predictions with NaN where unreadable, errors as [{path, reason}]).
    """
    from artmem.batch.api import run_job
    from artmem.memorability.processors import ScorerOutputs

    part = coll.subset(np.asarray(rows))
    proc = ScorerOutputs(scorer, "scores", identity or {"model": scorer.pretrained_cfg.name})
    result = run_job(part, proc, None, device=device, batch_size=batch_size, num_workers=num_workers)
    pred = result.table.set_index("path")["score"].reindex(part.paths).to_numpy(np.float64)
    return pred, result.errors.to_dict("records")


def features_from_store(path, coll, model: str, layer: str) -> np.ndarray:
    """Features of the collection rows from an `artmem extract` folder, checked to be of
    `model`/`layer`; NaN rows for images the folder lacks."""
    from artmem.batch.results import read_features

    fs = read_features(path)
    want = (model, layer)
    got = (fs.meta.get("model"), fs.meta.get("layer"))
    if got[0] is not None and (str(got[0]) != want[0] or (got[1] is not None and got[1] != want[1])):
        raise ArtmemError(f"{path}: features of {got[0]}/{got[1]}, but training uses "
                          f"{want[0]}/{want[1]} (set --model/--layer to match)")
    pos = pd.Series(np.arange(len(fs.paths)), index=fs.paths)
    X = np.full((len(coll), fs.vectors.shape[1]), np.nan, dtype=np.float32)
    idx = pos.reindex(coll.paths).to_numpy()
    have = ~np.isnan(idx)
    X[have] = fs.vectors[idx[have].astype(int)]
    logger.info(
        "features from %s (%s), %d of %d images", path, fs.meta.get("layer"), int(have.sum()), len(coll))
    return X
