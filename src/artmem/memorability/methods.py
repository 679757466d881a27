"""The training methods: a torch head on frozen features, fine-tuning on images, and the
scikit-learn baselines (ridge, SVR tuned by inner cross-validation) turned into exact torch heads. Each ends in a
`MemorabilityScorer`; `fit_method` picks the one a `TrainConfig` asks for."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from artmem.errors import ArtmemError
from artmem.memorability.evaluate import spearman
from artmem.memorability.features import ImageTable, collate_readable, feature_dim

if TYPE_CHECKING:
    from artmem.memorability.train_plan import TrainConfig


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


def _targets(kind: str, y: np.ndarray, edges, scale: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """(class, standardised score) per image, float32: the K-class loss reads column 0, the
    Euclidean loss column 1, (y - mean) / sd with the training scores' `scale`."""
    cls = assign_classes(y, edges) if kind == "kclass" else np.zeros(len(y))
    return np.stack([cls, (y - scale[0]) / scale[1]], 1).astype(np.float32)


def _target_scale(kind: str, y_tr: np.ndarray) -> tuple[float, float]:
    """(mean, sd) of the training scores for the Euclidean loss, else (0, 1).

    Memorability scores spread little (LaMem: sd 0.12; a collection's can be 0.06): regressing
    them raw, Adam's steps move the output by more than the scores' spread and the head learns
    little. The head regresses z-scores instead, and `_fold_target_scale` folds the mean and sd
    back into its last layer, so the saved head predicts scores on the original scale.
    """
    if kind != "regression":
        return 0.0, 1.0
    sd = float(np.std(y_tr))
    return float(np.mean(y_tr)), sd if sd > 0 else 1.0


def _fold_target_scale(head: nn.Module, scale: tuple[float, float]) -> None:
    mean, sd = scale
    with torch.no_grad():
        head[-1].weight.mul_(sd)
        head[-1].bias.mul_(sd).add_(mean)


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
        return {"spearman": spearman(pred.numpy(), y[:, 1].numpy())}

    return loss_fn, metrics


class _LogitsForTraining(nn.Module):
    """Fine-tuning view of a scorer: forward gives what the loss needs; saves the scorer's state."""

    def __init__(self, scorer):
        super().__init__()
        self.scorer = scorer

    def forward(self, x):
        return self.scorer.forward_logits(x) if self.scorer.kind == "kclass" else self.scorer(x)


def _new_head(cfg: TrainConfig, kind: str, dim: int, thresholds) -> nn.Module:
    """MLP (linear without hidden sizes) head: one score, or one logit per class."""
    from artmem.memorability.heads import build_head

    out_dim = len(thresholds) if kind == "kclass" else 1
    return build_head("mlp" if cfg.hidden else "linear", dim, out_dim, cfg.hidden, cfg.dropout)


def _fit_settings(cfg: TrainConfig, has_val: bool, **device) -> dict:
    """Settings of the shared `fit` loop; `device` names where it runs (and whether with AMP)."""
    return {"epochs": cfg.epochs, "optimizer": "adam", "lr": cfg.lr, "weight_decay": cfg.weight_decay,
            "schedule": "constant", "seed": cfg.seed, **device,
            "monitor": "val_spearman" if has_val else "train_loss"}


def make_scorer(cfg: TrainConfig, kind: str, dim: int | None, out_dim: int, thresholds, head=None,
                backbone=None, second=None):
    """A `MemorabilityScorer` of the configured backbone(s) and `head` (a fresh one when None)."""
    from artmem.memorability.heads import MemorabilityScorer, build_head
    from artmem.models.factory import create_model

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


SVR_C_GRID = {"rbf": (0.1, 1.0, 10.0, 100.0), "linear": (1e-4, 1e-3, 1e-2, 0.1, 1.0)}
SVR_EPSILON_SD = (0.1, 0.5, 1.0)  # epsilon grid in units of the training scores' sd
SVR_GAMMA_D = (0.1, 1.0, 10.0)  # RBF gamma grid in units of 1/D (1/D = 'scale' on standardised X)


def svr_param_grid(cfg: TrainConfig, n_features: int, y: np.ndarray) -> dict[str, list[float]]:
    """The inner-CV grid of the SVR; a value fixed in `cfg` (C, epsilon, gamma) replaces its axis."""
    sd = float(np.std(y)) or 1.0
    grid = {"svr__C": [cfg.C] if cfg.C is not None else list(SVR_C_GRID[cfg.svr_kernel]),
            "svr__epsilon": [cfg.epsilon] if cfg.epsilon is not None else [k * sd for k in SVR_EPSILON_SD]}
    if cfg.svr_kernel == "rbf":
        grid["svr__gamma"] = [cfg.gamma] if cfg.gamma is not None else [k / n_features for k in SVR_GAMMA_D]
    return grid


def _spearman_score(y_true, y_pred) -> float:
    rho = spearman(np.asarray(y_pred), np.asarray(y_true))
    return rho if np.isfinite(rho) else -1.0  # a constant prediction ranks nothing


def svr_search(cfg: TrainConfig, X: np.ndarray, y: np.ndarray):
    """StandardScaler + SVR tuned by `cfg.inner_folds`-fold CV on (X, y) only (the outer fold's
    training part), scored by Spearman, refitted on all of (X, y). Returns the fitted search."""
    from sklearn.metrics import make_scorer as sk_scorer
    from sklearn.model_selection import GridSearchCV, KFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    if cfg.svr_kernel not in SVR_C_GRID:
        raise ArtmemError(f"SVR kernel must be rbf or linear (got {cfg.svr_kernel!r})")
    pipe = Pipeline([("scale", StandardScaler()), ("svr", SVR(kernel=cfg.svr_kernel))])
    inner = KFold(n_splits=min(cfg.inner_folds, len(y)), shuffle=True, random_state=cfg.seed)
    return GridSearchCV(pipe, svr_param_grid(cfg, X.shape[1], y), cv=inner,
                        scoring=sk_scorer(_spearman_score), refit=True).fit(X, y)


def fit_sklearn(cfg: TrainConfig, X: np.ndarray, y: np.ndarray):
    """Fit ridge (RidgeCV over alphas) or a tuned SVR (RBF or linear) on standardised X -> exact
    torch head. Returns (head, estimator, info); info holds the chosen parameters."""
    from artmem.memorability.heads import build_head
    from artmem.models.standardize import standard_scale

    X = np.asarray(X, np.float64)
    if cfg.method == "ridge":
        from sklearn.linear_model import RidgeCV

        mean, scale = standard_scale(X)
        est = RidgeCV(alphas=np.logspace(-3, 4, 15)).fit((X - mean) / scale, y)
        head = build_head("linear", X.shape[1])
        with torch.no_grad():
            head[1].weight.copy_(torch.as_tensor(est.coef_, dtype=torch.float32)[None])
            head[1].bias.fill_(float(est.intercept_))
        info = {"alpha": float(est.alpha_)}
    else:
        search = svr_search(cfg, X, y)
        est = search.best_estimator_
        mean, scale, svr = est["scale"].mean_, est["scale"].scale_, est["svr"]
        info = {"kernel": cfg.svr_kernel, "C": float(svr.C), "epsilon": float(svr.epsilon),
                "inner_folds": int(search.n_splits_), "inner_spearman": float(search.best_score_),
                "support_vectors": int(len(svr.support_))}
        if cfg.svr_kernel == "linear":
            head = build_head("linear", X.shape[1])
            with torch.no_grad():
                head[1].weight.copy_(torch.tensor(svr.coef_, dtype=torch.float32))
                head[1].bias.fill_(float(svr.intercept_[0]))
        else:
            head = build_head("svr_rbf", X.shape[1], n_support=len(svr.support_))
            k = head[1]
            k.support.copy_(torch.as_tensor(svr.support_vectors_, dtype=torch.float32))
            k.dual.copy_(torch.as_tensor(svr.dual_coef_[0], dtype=torch.float32))
            k.intercept.fill_(float(svr.intercept_[0]))
            k.gamma.fill_(float(svr._gamma))
            info["gamma"] = float(svr._gamma)
    with torch.no_grad():
        head[0].mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        head[0].std.copy_(torch.as_tensor(scale, dtype=torch.float32))
    return head, est, info


def train_head(cfg, kind, X_tr, y_tr, X_va, y_va, edges, thresholds, run_dir):
    """Torch head on cached features with the shared fit loop; returns (head, history)."""
    from artmem.training.loop import fit

    head = _new_head(cfg, kind, X_tr.shape[1], thresholds)
    head[0].set(torch.as_tensor(X_tr))
    scale = _target_scale(kind, y_tr)
    model = _HeadOnly(head, kind)
    g = torch.Generator().manual_seed(cfg.seed)
    tr = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.as_tensor(X_tr), torch.as_tensor(_targets(kind, y_tr, edges, scale))),
        batch_size=cfg.batch_size, shuffle=True, generator=g)
    va = None
    if X_va is not None and len(X_va):
        va = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(torch.as_tensor(X_va),
                                           torch.as_tensor(_targets(kind, y_va, edges, scale))),
            batch_size=256)
    loss_fn, metrics = _loss_and_metrics(kind, thresholds)
    res = fit(model, tr, va, loss_fn, _fit_settings(cfg, va is not None, device="cpu", amp=False), run_dir,
              metrics_fn=metrics,
              checkpoint_config={"base_model": cfg.model, "note": "feature head only (not an image model)"})
    from artmem.models.checkpoint import load_weights

    model.load_state_dict(load_weights(res.best_path))
    if kind == "regression":
        _fold_target_scale(head, scale)
    return head, res.history


def finetune(cfg, kind, coll, rows_tr, y_tr, rows_va, y_va, edges, thresholds, run_dir):
    """Fine-tune backbone + head on images with the shared fit loop; returns (scorer, history)."""
    from artmem.models.preprocess import preprocess_for
    from artmem.training.loop import fit

    scorer = make_scorer(cfg, kind, None, len(thresholds) if kind == "kclass" else 1, thresholds)
    scorer.head = _new_head(cfg, kind, feature_dim(scorer), thresholds)
    scale = _target_scale(kind, y_tr)
    tf = preprocess_for(scorer)
    paths = coll.abs_paths()

    def loader(rows, y, shuffle):
        ds = ImageTable([paths[r] for r in rows], tf, _targets(kind, y, edges, scale))
        return torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, shuffle=shuffle,
                                           num_workers=cfg.num_workers, collate_fn=collate_readable)

    tr = loader(rows_tr, y_tr, True)
    va = loader(rows_va, y_va, False) if rows_va is not None and len(rows_va) else None
    loss_fn, metrics = _loss_and_metrics(kind, thresholds)
    view = _LogitsForTraining(scorer)
    res = fit(view, tr, va, loss_fn, _fit_settings(cfg, va is not None, device=cfg.device),
              Path(run_dir) / "train", metrics_fn=metrics,
              checkpoint_config={"base_model": cfg.model, "note": "training state; use ../model.safetensors"})
    from artmem.models.checkpoint import load_weights

    view.load_state_dict(load_weights(res.best_path))
    if kind == "regression":
        _fold_target_scale(scorer.head, scale)
    return scorer, res.history


def fit_method(cfg: TrainConfig, kind: str, coll, X, y_all, proto, rows_tr, rows_va, run_dir: Path):
    """Train the configured method on `rows_tr` (validating on `rows_va` when given).

    Returns:
        (scorer, record): the per-run info dict of svr/ridge, else the per-epoch history.
    """
    y_va = y_all[rows_va] if rows_va is not None else None
    edges, thresholds = (kclass_labels(y_all[rows_tr], cfg.k) if kind == "kclass" else (None, None))
    if cfg.method in ("svr", "ridge"):
        head, _, info = fit_sklearn(cfg, X[rows_tr], y_all[rows_tr])
        scorer = make_scorer(cfg, "regression", None, 1, None, head=head, backbone=proto.backbone,
                             second=proto.second)
        return scorer, info
    if cfg.finetune:
        return finetune(cfg, kind, coll, rows_tr, y_all[rows_tr], rows_va, y_va, edges, thresholds, run_dir)
    head, hist = train_head(cfg, kind, X[rows_tr], y_all[rows_tr], X[rows_va] if rows_va is not None else None,
                            y_va, edges, thresholds, run_dir / "head")
    scorer = make_scorer(cfg, kind, None, 1, thresholds, head=head, backbone=proto.backbone,
                         second=proto.second)
    return scorer, hist
