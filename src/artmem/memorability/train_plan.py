"""What a memorability training run is: its resolved settings and the folds it evaluates on
(the collection's own split columns, LaMem's split files, or k-fold)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.errors import ArtmemError

METHODS = ("regression", "kclass", "fusion", "svr", "ridge")
# A head on cached features costs milliseconds per epoch, and a collection of a few hundred images
# gives only a few steps per epoch: 30 epochs left the Euclidean head far from converged (Spearman
# 0.67 vs ridge's 0.96 on a 96-image set), 100 reach it (0.90).
HEAD_EPOCHS = 100
FINETUNE_EPOCHS = 30


@dataclass
class TrainConfig:
    """Resolved settings of a training run (written to config.yaml)."""

    score_column: str = "score"
    method: str = "regression"
    model: str = "resmem"
    layer: str | None = None
    model2: str | None = None
    layer2: str | None = None
    head: str = "regression"  # fusion head: regression | kclass
    k: int = 4
    finetune: bool = False
    folds: int = 5
    epochs: int | None = None  # None: HEAD_EPOCHS on cached features, FINETUNE_EPOCHS fine-tuning
    lr: float = 1e-3
    batch_size: int = 32
    hidden: tuple[int, ...] = (256,)
    dropout: float = 0.2
    weight_decay: float = 1e-4
    svr_kernel: str = "rbf"  # rbf (Squalli-Houssaini) | linear (Khosla Table 1)
    C: float | None = None  # SVR C, epsilon, gamma: None = tuned by inner CV (methods.svr_param_grid)
    epsilon: float | None = None
    gamma: float | None = None
    inner_folds: int = 3
    seed: int = 0
    device: str = "auto"
    refit: bool = True
    features: str | None = None
    num_workers: int = 0
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- splits


def read_lamem_splits(splits_dir: str | Path, coll) -> object:
    """Add LaMem's `split_<k>` columns (train/val/test) from `{train,val,test}_<k>.txt` files
    (lines `name score`), matching file names to the collection's paths; adds a `score` column
    from the files when the collection has none (e.g. a plain `lamem/images` folder)."""
    splits_dir = Path(splits_dir)
    files = sorted(splits_dir.glob("*_*.txt"))
    if not files:
        raise ArtmemError(f"{splits_dir}: no split files like train_1.txt")
    names = coll.table["path"].map(lambda p: Path(p).name)
    out = coll.subset(slice(None))
    scores: dict[str, float] = {}
    for f in files:
        m = re.fullmatch(r"(train|val|test)_(\d+)\.txt", f.name)
        if not m:
            continue
        part, k = m.group(1), m.group(2)
        listed = pd.read_csv(f, sep=r"\s+", header=None, names=["name", "score"], dtype={"name": str})
        scores.update(zip(listed["name"], listed["score"], strict=True))
        col = f"split_{k}"
        if col not in out.table:
            out.table[col] = pd.Series([None] * len(out.table), dtype=object)
        out.table.loc[names.isin(set(listed["name"])).to_numpy(), col] = part
    if "score" not in out.table.columns:  # an image folder: the scores come from the split files
        out.table["score"] = names.map(scores).astype(float)
    return out


def fold_plan(coll, folds: int = 5, seed: int = 0) -> list[dict]:
    """[{name, train, val, test}] of row positions: the collection's split columns when present
    (`split_1..split_N` or `split`), else `folds`-fold cross-validation."""
    t = coll.table
    split_cols = sorted((c for c in t.columns if re.fullmatch(r"split_?\d+", str(c))),
                        key=lambda c: int(re.sub(r"\D", "", c)))
    if not split_cols and "split" in t.columns:
        split_cols = ["split"]
    plan = []
    for col in split_cols:
        v = t[col].astype(str).str.lower()
        tr, va, te = (np.flatnonzero((v == s).to_numpy()) for s in ("train", "val", "test"))
        if len(tr) and len(te):
            plan.append({"name": col, "train": tr, "val": va if len(va) else None, "test": te})
    if plan:
        return plan
    from artmem.data.splits import kfold_assign

    fold = kfold_assign(coll, k=folds, seed=seed).table["fold"].to_numpy()
    return [{"name": f"fold_{k}", "train": np.flatnonzero(fold != k), "val": None,
             "test": np.flatnonzero(fold == k)} for k in range(folds)]

