"""Images through a frozen scorer: the image dataset, feature extraction and image-level prediction.
Unreadable images are recorded and skipped, never fatal for a batch."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from artmem.errors import ArtmemError

# training-run messages keep one logger name, whichever module writes them
logger = logging.getLogger("artmem.memorability.train")


class ImageTable(torch.utils.data.Dataset):
    """(tensor, row index) per collection row; unreadable images yield None (dropped by collate)."""

    def __init__(self, sources: list[str], transform, targets: np.ndarray | None = None):
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
        if self.targets is None:
            return x, i
        return x, torch.as_tensor(self.targets[i], dtype=torch.float32)


def collate_readable(batch):
    """Default collate over the readable items of a batch (ImageTable yields a marker for the rest)."""
    ok = [b for b in batch if not (isinstance(b, tuple) and len(b) == 3 and b[0] == "error")]
    if not ok:
        return torch.empty(0), torch.empty(0)
    return torch.utils.data.default_collate(ok)


@torch.inference_mode()
def compute_features(scorer_like, coll, device, batch_size: int = 32, num_workers: int = 0):
    """Features of every collection image through `scorer_like.features` (a frozen scorer).

    Returns:
        (features float32 (N, D) with NaN rows for unreadable images, errors DataFrame).
    """
    from tqdm.auto import tqdm

    from artmem.data.images import try_load_image  # noqa: F401  (documented loader)
    from artmem.models.transforms import build_transform
    from artmem.runtime import autocast

    ds = ImageTable(coll.abs_paths(), build_transform(scorer_like.pretrained_cfg))
    errors = []

    def collate(batch):
        for b in batch:
            if b[0] == "error" if isinstance(b[0], str) else False:
                errors.append({"path": coll.paths[b[1]], "reason": b[2]})
        return collate_readable(batch)

    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=num_workers, collate_fn=collate)
    feats = None
    scorer_like.eval().to(device)
    for x, idx in tqdm(dl, desc="features", unit="batch", leave=False, disable=None):
        if len(x) == 0:
            continue
        with autocast(device):
            f = scorer_like.features(x.to(device)).float().cpu().numpy()
        if feats is None:
            feats = np.full((len(ds), f.shape[1]), np.nan, dtype=np.float32)
        feats[idx.numpy()] = f
    if feats is None:
        raise ArtmemError("no readable image in the collection")
    return feats, pd.DataFrame(errors, columns=["path", "reason"])


def feature_dim(scorer) -> int:
    """Width of `scorer.features` for one blank input of the scorer's size."""
    cfg = scorer.pretrained_cfg
    x = torch.zeros(1, *cfg.input_size)
    with torch.inference_mode():
        return int(scorer.eval().features(x).shape[1])


@torch.inference_mode()
def predict_images(scorer, coll, rows, device, batch_size):
    """Scores of the collection rows `rows` from images; (predictions with NaN where unreadable, errors)."""
    from artmem.models.transforms import build_transform

    ds = ImageTable([coll.abs_paths()[r] for r in rows], build_transform(scorer.pretrained_cfg))
    pred = np.full(len(rows), np.nan)
    errors = []

    def collate(batch):
        errors.extend({"path": coll.paths[rows[b[1]]], "reason": b[2]} for b in batch
                      if isinstance(b[0], str))
        return collate_readable(batch)

    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, collate_fn=collate)
    scorer.eval().to(device)
    for x, idx in dl:
        if len(x):
            pred[idx.numpy()] = scorer(x.to(device)).float().cpu().numpy()
    return pred, errors



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
