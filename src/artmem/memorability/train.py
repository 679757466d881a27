"""Training and evaluating memorability predictors on any collection with a score column.

Methods (all end in a `MemorabilityScorer` checkpoint usable as `--model PATH`):

- `regression`: Euclidean loss on a frozen backbone's features (MLP head), or fine-tuning the
  backbone with `finetune=True` (MemNet's recipe);
- `kclass`: Squalli-Houssaini et al. 2018: K balanced classes from the training scores'
  quantiles, softmax, m = sum_k p(k|i) s_k;
- `fusion`: features of two models concatenated into one MLP (regression or K-class head);
- `svr`, `ridge`: scikit-learn baselines on the frozen features.

Evaluation: Spearman on the collection's own splits when present (LaMem's 5 splits as columns
`split_1..split_5`, or one `split` column with train/val/test), else k-fold (5). The torch
training loop is the shared `artmem.classify.engine.fit`; folds come from
`artmem.data.splits.kfold_assign`.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)

METHODS = ("regression", "kclass", "fusion", "svr", "ridge")


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
    epochs: int = 30
    lr: float = 1e-3
    batch_size: int = 32
    hidden: tuple[int, ...] = (256,)
    dropout: float = 0.2
    weight_decay: float = 1e-4
    C: float = 1.0
    epsilon: float = 0.05
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
    try:
        from artmem.data.splits import kfold_assign

        fold = kfold_assign(coll, k=folds, seed=seed).table["fold"].to_numpy()
    except ImportError:  # pragma: no cover - splits ships with artmem
        fold = np.random.default_rng(seed).permutation(len(t)) % folds
    return [{"name": f"fold_{k}", "train": np.flatnonzero(fold != k), "val": None,
             "test": np.flatnonzero(fold == k)} for k in range(folds)]


# ----------------------------------------------------------------------------- data


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


def _collate(batch):
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
        return _collate(batch)

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


# ----------------------------------------------------------------------------- model pieces


def kclass_labels(train_scores: np.ndarray, k: int, top: float | None = None) -> tuple[np.ndarray, list[float]]:
    """Quantile edges for K balanced classes and the thresholds s_1..s_K (s_K = 1 for [0, 1]
    scores, else the training maximum). Returns (edges (K-1,), thresholds)."""
    if not 2 <= k <= 8:
        raise ArtmemError(f"K must be 2..8 (got {k})")
    edges = np.quantile(train_scores, np.arange(1, k) / k)
    if top is None:
        top = 1.0 if float(np.max(train_scores)) <= 1.0 and float(np.min(train_scores)) >= 0.0 \
            else float(np.max(train_scores))
    return edges, [float(e) for e in edges] + [float(top)]


def assign_classes(scores: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.searchsorted(edges, scores, side="right").astype(np.int64)


def _spearman(a, b) -> float:
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return float("nan")
    return float(spearmanr(a[ok], b[ok])[0])


class _HeadOnly(nn.Module):
    """Head trained on cached features: forward(f) -> score (regression) or logits (kclass)."""

    def __init__(self, head: nn.Module, kind: str):
        super().__init__()
        self.head, self.kind = head, kind

    def forward(self, f):
        out = self.head(f)
        return out[:, 0] if self.kind == "regression" else out


def _loss_and_metrics(kind: str, thresholds: list[float] | None):
    from artmem.memorability.heads import kclass_aggregate

    thr = torch.tensor(thresholds or [0.0], dtype=torch.float32)

    def loss_fn(out, y):
        if kind == "kclass":
            return nn.functional.cross_entropy(out.float(), y[:, 0].long())
        return nn.functional.mse_loss(out.float(), y[:, 1])

    def metrics(out, y):
        pred = kclass_aggregate(out, thr) if kind == "kclass" else out
        return {"spearman": _spearman(pred.numpy(), y[:, 1].numpy())}

    return loss_fn, metrics


class _LogitsForTraining(nn.Module):
    """Fine-tuning view of a scorer: forward gives what the loss needs; saves the scorer's state."""

    def __init__(self, scorer):
        super().__init__()
        self.scorer = scorer

    def forward(self, x):
        return self.scorer.forward_logits(x) if self.scorer.kind == "kclass" else self.scorer(x)


# ----------------------------------------------------------------------------- training


def _make_scorer(cfg: TrainConfig, kind: str, dim: int | None, out_dim: int, thresholds, head=None,
                 backbone=None, second=None):
    from artmem.memorability.heads import MemorabilityScorer, build_head
    from artmem.models.registry import create_model

    backbone = backbone if backbone is not None else create_model(cfg.model, pretrained=True)
    layer = cfg.layer or backbone.pretrained_cfg.default_layer
    if cfg.model2 and second is None:
        second = create_model(cfg.model2, pretrained=True)
    layer2 = (cfg.layer2 or second.pretrained_cfg.default_layer) if second is not None else None
    if head is None:
        head = build_head("mlp" if cfg.hidden else "linear", dim or 1, out_dim, cfg.hidden, cfg.dropout)
    name = f"{cfg.method}-{cfg.model}" + (f"+{cfg.model2}" if cfg.model2 else "")
    return MemorabilityScorer(backbone, layer, head, kind, thresholds, second, layer2,
                              frozen=not cfg.finetune, name=name)


def _fit_sklearn(cfg: TrainConfig, X: np.ndarray, y: np.ndarray):
    """Fit ridge (RidgeCV over alphas) or RBF SVR on standardised X -> exact torch head."""
    from artmem.memorability.heads import build_head

    mean, std = X.mean(0), np.maximum(X.std(0, ddof=1) if len(X) > 1 else np.ones(X.shape[1]), 1e-6)
    Z = (X - mean) / std
    if cfg.method == "ridge":
        from sklearn.linear_model import RidgeCV

        est = RidgeCV(alphas=np.logspace(-3, 4, 15)).fit(Z, y)
        head = build_head("linear", X.shape[1])
        with torch.no_grad():
            head[1].weight.copy_(torch.as_tensor(est.coef_, dtype=torch.float32)[None])
            head[1].bias.fill_(float(est.intercept_))
        info = {"alpha": float(est.alpha_)}
    else:
        from sklearn.svm import SVR

        est = SVR(kernel="rbf", C=cfg.C, epsilon=cfg.epsilon, gamma="scale").fit(Z, y)
        head = build_head("svr_rbf", X.shape[1], n_support=len(est.support_))
        k = head[1]
        k.support.copy_(torch.as_tensor(est.support_vectors_, dtype=torch.float32))
        k.dual.copy_(torch.as_tensor(est.dual_coef_[0], dtype=torch.float32))
        k.intercept.fill_(float(est.intercept_[0]))
        k.gamma.fill_(float(est._gamma))
        info = {"support_vectors": int(len(est.support_)), "gamma": float(est._gamma)}
    with torch.no_grad():
        head[0].mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        head[0].std.copy_(torch.as_tensor(std, dtype=torch.float32))
    return head, est, info


def _train_head(cfg, kind, X_tr, y_tr, X_va, y_va, edges, thresholds, run_dir):
    """Torch head on cached features with the shared fit loop; returns (head, history)."""
    from artmem.classify.engine import fit
    from artmem.memorability.heads import build_head

    def targets(y):
        cls = assign_classes(y, edges) if kind == "kclass" else np.zeros(len(y))
        return torch.as_tensor(np.stack([cls, y], 1), dtype=torch.float32)

    out_dim = len(thresholds) if kind == "kclass" else 1
    head = build_head("mlp" if cfg.hidden else "linear", X_tr.shape[1], out_dim, cfg.hidden, cfg.dropout)
    head[0].set(torch.as_tensor(X_tr))
    if kind == "regression":  # start at the mean score: faster, stabler Euclidean training
        with torch.no_grad():
            head[-1].bias.fill_(float(np.mean(y_tr)))
    model = _HeadOnly(head, kind)
    g = torch.Generator().manual_seed(cfg.seed)
    tr = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.as_tensor(X_tr), targets(y_tr)),
                                     batch_size=cfg.batch_size, shuffle=True, generator=g)
    va = None
    if X_va is not None and len(X_va):
        va = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.as_tensor(X_va), targets(y_va)),
                                         batch_size=256)
    loss_fn, metrics = _loss_and_metrics(kind, thresholds)
    fit_cfg = {"epochs": cfg.epochs, "optimizer": "adam", "lr": cfg.lr, "weight_decay": cfg.weight_decay,
               "schedule": "constant", "seed": cfg.seed, "device": "cpu", "amp": False,
               "monitor": "val_spearman" if va is not None else "train_loss"}
    res = fit(model, tr, va, loss_fn, fit_cfg, run_dir, metrics_fn=metrics,
              checkpoint_config={"base_model": cfg.model, "note": "feature head only (not an image model)"})
    state = torch.load(res.best_path, map_location="cpu", weights_only=False)["model"]
    model.load_state_dict(state)
    return head, res.history


def _finetune(cfg, kind, coll, rows_tr, y_tr, rows_va, y_va, edges, thresholds, run_dir):
    """Fine-tune backbone + head on images with the shared fit loop; returns (scorer, history)."""
    from artmem.classify.engine import fit
    from artmem.memorability.heads import scorer_config
    from artmem.models.transforms import build_transform

    scorer = _make_scorer(cfg, kind, None, len(thresholds) if kind == "kclass" else 1, thresholds)
    dim = _feature_dim(scorer)
    from artmem.memorability.heads import build_head

    scorer.head = build_head("mlp" if cfg.hidden else "linear", dim,
                             len(thresholds) if kind == "kclass" else 1, cfg.hidden, cfg.dropout)
    if kind == "regression":
        with torch.no_grad():
            scorer.head[-1].bias.fill_(float(np.mean(y_tr)))
    tf = build_transform(scorer.pretrained_cfg)
    paths = coll.abs_paths()

    def loader(rows, y, shuffle):
        cls = assign_classes(y, edges) if kind == "kclass" else np.zeros(len(y))
        ds = ImageTable([paths[r] for r in rows], tf, np.stack([cls, y], 1).astype(np.float32))
        return torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, shuffle=shuffle,
                                           num_workers=cfg.num_workers, collate_fn=_collate)

    tr = loader(rows_tr, y_tr, True)
    va = loader(rows_va, y_va, False) if rows_va is not None and len(rows_va) else None
    loss_fn, metrics = _loss_and_metrics(kind, thresholds)
    fit_cfg = {"epochs": cfg.epochs, "optimizer": "adam", "lr": cfg.lr, "weight_decay": cfg.weight_decay,
               "schedule": "constant", "seed": cfg.seed, "device": cfg.device,
               "monitor": "val_spearman" if va is not None else "train_loss"}
    view = _LogitsForTraining(scorer)
    res = fit(view, tr, va, loss_fn, fit_cfg, Path(run_dir) / "train", metrics_fn=metrics,
              checkpoint_config={"base_model": cfg.model, "note": "training state; use ../model.pt"})
    view.load_state_dict(torch.load(res.best_path, map_location="cpu", weights_only=False)["model"])
    return scorer, res.history, scorer_config


def _feature_dim(scorer) -> int:
    cfg = scorer.pretrained_cfg
    x = torch.zeros(1, *cfg.input_size)
    with torch.inference_mode():
        return int(scorer.eval().features(x).shape[1])


@torch.inference_mode()
def _predict_images(scorer, coll, rows, device, batch_size):
    from artmem.models.transforms import build_transform

    ds = ImageTable([coll.abs_paths()[r] for r in rows], build_transform(scorer.pretrained_cfg))
    pred = np.full(len(rows), np.nan)
    errors = []

    def collate(batch):
        errors.extend({"path": coll.paths[rows[b[1]]], "reason": b[2]} for b in batch
                      if isinstance(b[0], str))
        return _collate(batch)

    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, collate_fn=collate)
    scorer.eval().to(device)
    for x, idx in dl:
        if len(x):
            pred[idx.numpy()] = scorer(x.to(device)).float().cpu().numpy()
    return pred, errors


def train_predictor(collection, out: str | Path, config: TrainConfig | None = None,
                    splits_dir: str | Path | None = None) -> dict:
    """Train and evaluate a memorability predictor; writes the run folder `out`.

    Writes config.yaml, summary.csv (per fold and epoch, or one row per fold for svr/ridge),
    folds.csv (per-fold Spearman/Pearson/RMSE on the test part), metrics.json (mean, sd),
    predictions.parquet (out-of-fold predictions), errors.parquet, `<fold>/model.pt` per fold and
    model.pt (trained on every labelled image with `refit`, else the first fold's model).

    Returns:
        metrics dict: spearman_mean, spearman_sd, folds, ...
    """
    import yaml

    from artmem.data.collection import open_collection
    from artmem.io import ensure_out_dir, write_table
    from artmem.memorability.heads import scorer_config
    from artmem.models.checkpoint import save_checkpoint
    from artmem.runtime import resolve_device, seed_everything

    cfg = config or TrainConfig()
    if cfg.method not in METHODS:
        raise ArtmemError(f"unknown method {cfg.method!r}; choose one of {', '.join(METHODS)}")
    if cfg.method == "fusion" and not cfg.model2:
        raise ArtmemError("--method fusion needs a second model (--model2, e.g. magenta_style)")
    if cfg.method in ("svr", "ridge", "fusion") and cfg.finetune:
        raise ArtmemError(f"--method {cfg.method} works on frozen features; drop --finetune")
    kind = "kclass" if cfg.method == "kclass" or (cfg.method == "fusion" and cfg.head == "kclass") else "regression"
    coll = open_collection(collection)
    if splits_dir:
        coll = read_lamem_splits(splits_dir, coll)
    if cfg.score_column not in coll.table.columns:
        raise ArtmemError(f"no column {cfg.score_column!r} in the collection "
                          f"(columns: {', '.join(map(str, coll.table.columns))})")
    scores_all = pd.to_numeric(coll.table[cfg.score_column], errors="coerce")
    coll = coll.subset(scores_all.notna().to_numpy())
    y_all = pd.to_numeric(coll.table[cfg.score_column]).to_numpy(np.float64)
    if len(coll) < 2 * max(cfg.folds, 2):
        raise ArtmemError(f"too few images with a {cfg.score_column!r} score ({len(coll)})")
    from artmem.models.registry import get_pretrained_cfg

    for attr, name in (("layer", cfg.model), ("layer2", cfg.model2)):
        if name and not getattr(cfg, attr):
            try:  # record the resolved default layer in config.yaml
                setattr(cfg, attr, get_pretrained_cfg(name).default_layer or None)
            except ArtmemError:
                pass
    out = ensure_out_dir(out)
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    plan = fold_plan(coll, cfg.folds, cfg.seed)
    folds_from = f"{cfg.folds}-fold" if plan[0]["name"].startswith("fold_") else \
        "split columns " + ",".join(f["name"] for f in plan)
    cfg.extra = {**cfg.extra, "n_images": len(coll), "folds_from": folds_from,
                 "kind": kind, "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    (out / "config.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(asdict(cfg))), sort_keys=False))
    logger.info("%s on %d images (%s), %d fold(s) from %s", cfg.method, len(coll), cfg.score_column,
                len(plan), cfg.extra["folds_from"])

    # frozen features, computed once (or read from an `artmem extract` folder)
    errors = pd.DataFrame(columns=["path", "reason"])
    X = None
    proto = None
    if not cfg.finetune:
        proto = _make_scorer(cfg, kind, 1, 1, None)
        if cfg.features:
            from artmem.scale.store import read_features

            if cfg.model2:
                raise ArtmemError("--features holds one model's features; fusion computes its own")
            fs = read_features(cfg.features)
            want = (cfg.model, cfg.layer or proto.layer)
            got = (fs.meta.get("model"), fs.meta.get("layer"))
            if got[0] is not None and (str(got[0]) != want[0] or (got[1] is not None and got[1] != want[1])):
                raise ArtmemError(f"{cfg.features}: features of {got[0]}/{got[1]}, but training uses "
                                  f"{want[0]}/{want[1]} (set --model/--layer to match)")
            pos = pd.Series(np.arange(len(fs.paths)), index=fs.paths)
            X = np.full((len(coll), fs.vectors.shape[1]), np.nan, dtype=np.float32)
            idx = pos.reindex(coll.paths).to_numpy()
            have = ~np.isnan(idx)
            X[have] = fs.vectors[idx[have].astype(int)]
            logger.info("features from %s (%s), %d of %d images", cfg.features, fs.meta.get("layer"),
                        int(have.sum()), len(coll))
        else:
            t0 = time.perf_counter()
            X, errors = compute_features(proto, coll, device, cfg.batch_size, cfg.num_workers)
            logger.info("features %s in %.1f s", X.shape, time.perf_counter() - t0)
        usable = np.isfinite(X).all(1)
    else:
        usable = np.ones(len(coll), bool)

    fold_rows, summaries, preds = [], [], []
    models = {}
    for f in plan:
        tr = f["train"][usable[f["train"]]]
        te = f["test"][usable[f["test"]]]
        va = f["val"][usable[f["val"]]] if f["val"] is not None else None
        fdir = out / f["name"]
        edges, thresholds = (kclass_labels(y_all[tr], cfg.k) if kind == "kclass" else (None, None))
        t0 = time.perf_counter()
        if cfg.method in ("svr", "ridge"):
            head, _, info = _fit_sklearn(cfg, X[tr], y_all[tr])
            scorer = _make_scorer(cfg, "regression", None, 1, None, head=head, backbone=proto.backbone,
                                  second=proto.second)
            summaries.append({"fold": f["name"], **info})
        elif cfg.finetune:
            scorer, hist, _ = _finetune(cfg, kind, coll, tr, y_all[tr], va, y_all[va] if va is not None else None,
                                        edges, thresholds, fdir)
            summaries.append(hist.assign(fold=f["name"]))
        else:
            head, hist = _train_head(cfg, kind, X[tr], y_all[tr], X[va] if va is not None else None,
                                     y_all[va] if va is not None else None, edges, thresholds, fdir / "head")
            scorer = _make_scorer(cfg, kind, None, 1, thresholds, head=head, backbone=proto.backbone,
                                  second=proto.second)
            summaries.append(hist.assign(fold=f["name"]))
        train_time = time.perf_counter() - t0
        if X is not None:
            with torch.inference_mode():
                p = scorer.eval().forward_head(torch.as_tensor(X[te])).numpy()
        else:
            p, errs = _predict_images(scorer, coll, te, device, cfg.batch_size)
            if errs:  # unreadable images are skipped in training and listed once
                errors = pd.concat([errors, pd.DataFrame(errs)], ignore_index=True).drop_duplicates("path")
        ckpt_cfg = scorer_config(scorer, cfg.model, cfg.model2, fold=f["name"], score_column=cfg.score_column)
        save_checkpoint(fdir / "model.pt", scorer, ckpt_cfg)
        models[f["name"]] = fdir / "model.pt"
        rho = _spearman(p, y_all[te])
        ok = np.isfinite(p)
        fold_rows.append({
            "fold": f["name"], "n_train": len(tr), "n_val": 0 if va is None else len(va), "n_test": len(te),
            "spearman": rho, "pearson": float(np.corrcoef(p[ok], y_all[te][ok])[0, 1]) if ok.sum() > 2 else np.nan,
            "rmse": float(np.sqrt(np.nanmean((p - y_all[te]) ** 2))), "train_time_s": train_time,
        })
        preds.append(pd.DataFrame({"path": np.asarray(coll.paths)[te], "fold": f["name"],
                                   "score_true": y_all[te], "score_pred": p}))
        logger.info("%s: Spearman %.3f on %d test images", f["name"], rho, len(te))

    folds = pd.DataFrame(fold_rows)
    summary = pd.concat([s if isinstance(s, pd.DataFrame) else pd.DataFrame([s]) for s in summaries],
                        ignore_index=True)
    summary = summary[["fold", *[c for c in summary.columns if c != "fold"]]]
    summary.to_csv(out / "summary.csv", index=False)
    folds.to_csv(out / "folds.csv", index=False)
    write_table(pd.concat(preds, ignore_index=True), out, "predictions")
    write_table(errors, out, "errors")

    # the final model
    if cfg.refit:
        all_rows = np.flatnonzero(usable)
        edges, thresholds = (kclass_labels(y_all[all_rows], cfg.k) if kind == "kclass" else (None, None))
        if cfg.method in ("svr", "ridge"):
            head, _, _ = _fit_sklearn(cfg, X[all_rows], y_all[all_rows])
            final = _make_scorer(cfg, "regression", None, 1, None, head=head, backbone=proto.backbone,
                                 second=proto.second)
        elif cfg.finetune:
            final, _, _ = _finetune(cfg, kind, coll, all_rows, y_all[all_rows], None, None, edges,
                                    thresholds, out / "refit")
        else:
            head, _ = _train_head(cfg, kind, X[all_rows], y_all[all_rows], None, None, edges, thresholds,
                                  out / "refit" / "head")
            final = _make_scorer(cfg, kind, None, 1, thresholds, head=head, backbone=proto.backbone,
                                 second=proto.second)
        save_checkpoint(out / "model.pt", final,
                        scorer_config(final, cfg.model, cfg.model2, fold="all", score_column=cfg.score_column))
    else:
        import shutil

        shutil.copyfile(next(iter(models.values())), out / "model.pt")
    metrics = {
        "method": cfg.method, "kind": kind, "model": cfg.model, "model2": cfg.model2,
        "spearman_mean": float(np.nanmean(folds["spearman"])),
        "spearman_sd": float(np.nanstd(folds["spearman"], ddof=1)) if len(folds) > 1 else 0.0,
        "pearson_mean": float(np.nanmean(folds["pearson"])), "folds": len(folds),
        "folds_from": cfg.extra["folds_from"], "n_images": int(usable.sum()),
        "unreadable": int(len(errors)), "model_path": str(out / "model.pt"),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    logger.info("Spearman %.3f +- %.3f over %d folds", metrics["spearman_mean"], metrics["spearman_sd"],
                len(folds))
    return metrics


def evaluate_predictor(model: str | Path, collection, out: str | Path, score_column: str = "score",
                       split: str | None = None, device: str = "auto", batch_size: int = 32) -> dict:
    """Score `collection` with `model` (name or checkpoint) and compare with `score_column`.

    Writes predictions.parquet (path, score_true, score_pred), metrics.json and errors.parquet.
    `split`: only rows whose `split` column (or every split_<k> column) equals this value.
    """
    from artmem.data.collection import open_collection
    from artmem.io import ensure_out_dir, write_table
    from artmem.models.registry import create_model
    from artmem.runtime import resolve_device

    coll = open_collection(collection)
    if score_column not in coll.table.columns:
        raise ArtmemError(f"no column {score_column!r} in the collection")
    if split:
        cols = [c for c in coll.table.columns if c == "split" or re.fullmatch(r"split_?\d+", str(c))]
        if not cols:
            raise ArtmemError("--split given but the collection has no split column")
        coll = coll.subset((coll.table[cols[0]].astype(str) == split).to_numpy())
    y = pd.to_numeric(coll.table[score_column], errors="coerce").to_numpy(np.float64)
    coll = coll.subset(np.isfinite(y))
    y = y[np.isfinite(y)]
    out = ensure_out_dir(out)
    dev = resolve_device(device)
    net = create_model(model)
    errors = []
    from artmem.data.images import load_image
    from artmem.errors import ImageReadError
    from artmem.models.transforms import build_transform
    from artmem.runtime import autocast

    tf = build_transform(net.pretrained_cfg)
    pred = np.full(len(coll), np.nan)
    net.eval().to(dev)
    paths = coll.abs_paths()
    with torch.inference_mode():
        for s in range(0, len(coll), batch_size):
            xs, idx = [], []
            for i in range(s, min(s + batch_size, len(coll))):
                try:
                    xs.append(tf(load_image(paths[i])))
                    idx.append(i)
                except ImageReadError as exc:
                    errors.append({"path": coll.paths[i], "reason": exc.reason})
            if xs:
                with autocast(dev):
                    o = net(torch.stack(xs).to(dev)).float().cpu()
                pred[idx] = (o[:, 0] if o.ndim == 2 else o).numpy()
    ok = np.isfinite(pred)
    metrics = {"model": str(model), "n": int(ok.sum()), "spearman": _spearman(pred, y),
               "pearson": float(np.corrcoef(pred[ok], y[ok])[0, 1]) if ok.sum() > 2 else float("nan"),
               "rmse": float(np.sqrt(np.mean((pred[ok] - y[ok]) ** 2))) if ok.any() else float("nan"),
               "score_column": score_column, "split": split, "unreadable": len(errors)}
    write_table(pd.DataFrame({"path": coll.paths, "score_true": y, "score_pred": pred}), out, "predictions")
    write_table(pd.DataFrame(errors, columns=["path", "reason"]), out, "errors")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
