"""`predict`: top-k labels and class probabilities of a trained classifier on any collection.

Writes `OUT/predictions.parquet` (path, pred, prob, top1_label, top1_prob, ..., topK_label,
topK_prob, and `true`/`correct` when the collection has the run's label column) and
`OUT/probabilities.parquet` (path + one `p_<class>` column per class), which can be joined to a
collection as image attributes (e.g. the positive-sentiment probability of a user-trained
sentiment classifier), plus `OUT/errors.parquet`.

Images get exactly the run's evaluation preprocessing: squashed to the run's cache size (the same
`resize_array` as the training cache), centre-cropped to the model input, normalised with the
model's mean/std.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)


class _EvalImages(torch.utils.data.Dataset):
    """Decodes each image, resizes like the training cache, centre-crops and normalises."""

    def __init__(self, sources: list[str], size: int, crop: int, mean, std, mode: str = "squash"):
        self.sources, self.size, self.crop, self.mode = sources, size, crop, mode
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i):
        from artmem.data.cache import resize_array
        from artmem.data.images import try_load_image

        img, reason = try_load_image(self.sources[i])
        c = self.crop
        if img is None:
            return torch.zeros(3, c, c), i, reason or "unreadable"
        arr = resize_array(img, self.size, self.mode)
        top = (self.size - c) // 2
        arr = np.ascontiguousarray(arr[top:top + c, top:top + c])
        x = torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)
        return (x - self.mean) / self.std, i, ""


def _collate(batch):
    xs, idx, reasons = zip(*batch, strict=True)
    return torch.stack(xs), list(idx), list(reasons)


def safe_column(name: str) -> str:
    return "p_" + re.sub(r"[^0-9A-Za-z_]+", "_", str(name)).strip("_")


def predict(collection, run: str | Path, out: str | Path | None = None, topk: int = 3,
            device: str = "auto", batch_size: int = 64, num_workers: int | None = None,
            csv: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, list[Path]]:
    """Classify every image of `collection` with the trained run (or checkpoint) `run`.

    Returns:
        (predictions, probabilities, written paths); nothing is written when `out` is None.
    """
    from tqdm.auto import tqdm

    from artmem.classify.data import default_cache_size
    from artmem.data.collection import open_collection
    from artmem.io import write_table
    from artmem.models.checkpoint import load_run
    from artmem.runtime import autocast, default_num_workers, resolve_device

    coll = open_collection(collection)
    if len(coll) == 0:
        raise ArtmemError("the collection is empty")
    model = load_run(run)
    cfg = model.pretrained_cfg
    names = list(cfg.class_names or [])
    if not names or cfg.output != "logits":
        raise ArtmemError(f"{run}: not a trained classifier (no class names)")
    run_cfg = getattr(model, "trained_config", {}).get("run_config", {}) or {}
    crop = int(cfg.input_size[-1])
    size = int(run_cfg.get("cache_size") or default_cache_size(crop))
    label = getattr(model, "trained_config", {}).get("label")
    topk = max(1, min(int(topk), len(names)))
    dev = resolve_device(device)
    model.to(dev).eval()
    ds = _EvalImages(coll.abs_paths(), size, crop, cfg.mean, cfg.std)
    if num_workers is None:
        num_workers = default_num_workers() if len(ds) > 256 else 0
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=num_workers,
                                         collate_fn=_collate)
    probs = np.full((len(ds), len(names)), np.nan, dtype=np.float32)
    errors: list[tuple[str, str]] = []
    paths = coll.paths
    with torch.inference_mode(), autocast(dev):
        for x, idx, reasons in tqdm(loader, desc="predict", unit="batch", disable=None):
            p = torch.softmax(model(x.to(dev)).float(), dim=1).cpu().numpy()
            for j, (i, r) in enumerate(zip(idx, reasons, strict=True)):
                if r:
                    errors.append((paths[i], r))
                else:
                    probs[i] = p[j]
    ok = ~np.isnan(probs).any(axis=1)
    order = np.argsort(-np.nan_to_num(probs, nan=-1), axis=1)[:, :topk]
    pred = pd.DataFrame({"path": [paths[i] for i in np.flatnonzero(ok)]})
    sel = order[ok]
    pv = probs[ok]
    pred["pred"] = [names[r[0]] for r in sel]
    pred["prob"] = pv[np.arange(len(sel)), sel[:, 0]] if len(sel) else []
    for k in range(topk):
        pred[f"top{k + 1}_label"] = [names[r[k]] for r in sel]
        pred[f"top{k + 1}_prob"] = pv[np.arange(len(sel)), sel[:, k]] if len(sel) else []
    if label and label in coll.table.columns:
        truth = coll.table.set_index("path")[label]
        pred["true"] = pred["path"].map(truth).astype("str")
        known = pred["true"].isin(names)
        pred["correct"] = pred["pred"] == pred["true"]
        if known.any():
            logger.info("accuracy on the %d images labelled with a known %s: %.3f", int(known.sum()),
                        label, float(pred.loc[known, "correct"].mean()))
    cols = [safe_column(n) for n in names]
    if len(set(cols)) != len(cols):
        cols = [f"p_{i}_{c[2:]}" for i, c in enumerate(cols)]
    prob_table = pd.DataFrame(pv, columns=cols)
    prob_table.insert(0, "path", pred["path"].to_numpy())
    err = pd.DataFrame(errors, columns=["path", "reason"])
    if len(err):
        logger.warning("%d of %d images could not be read (errors.parquet)", len(err), len(paths))
    written: list[Path] = []
    if out is not None:
        written += write_table(pred, out, "predictions", csv=csv)
        written += write_table(prob_table, out, "probabilities", csv=csv)
        written += write_table(err, out, "errors", csv=csv)
        (Path(out) / "classes.txt").write_text("\n".join(
            f"{c}\t{n}" for c, n in zip(cols, names, strict=True)) + "\n")
        written.append(Path(out) / "classes.txt")
    return pred, prob_table, written
