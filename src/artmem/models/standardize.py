"""Feature standardisation shared by every head trained on frozen features.

`standard_scale` returns the (mean, scale) that scikit-learn's `StandardScaler` learns: the mean
and the population standard deviation (ddof=0) of each column, with scale 1 where a column is
constant on the training data. Clamping the deviation at a small number instead (the old 1e-6)
is wrong for ReLU features: a unit that never fires inside a training fold fires on some held-out
image and gets a z-score of 1e5, which swamps every other input of the head.
"""

from __future__ import annotations

import numpy as np
import torch


def constant_columns(var: np.ndarray, mean: np.ndarray, n: int) -> np.ndarray:
    """Columns whose variance is zero up to float rounding (scikit-learn's `_is_constant_feature`
    bound: a constant column's computed variance is at most about (n * eps * |mean|)^2)."""
    eps = np.finfo(np.float64).eps
    upper = n * eps * var + (n * np.abs(mean) * eps) ** 2
    return var <= upper


def standard_scale(X: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) per column of X (N, D), float64; scale = population sd, 1 where constant."""
    x = X.detach().cpu().double().numpy() if isinstance(X, torch.Tensor) else np.asarray(X, np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"expected a non-empty (N, D) feature matrix, got shape {x.shape}")
    mean = x.mean(0)
    var = x.var(0)
    scale = np.sqrt(var)
    scale[constant_columns(var, mean, len(x))] = 1.0
    return mean, scale
