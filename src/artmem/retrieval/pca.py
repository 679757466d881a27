"""PCA to d dimensions before indexing: fitted on a sample, saved with the index, applied to queries.

Vectors are unit-normalised before projection and re-normalised after it, so the index still
ranks by cosine similarity (now in the d-dimensional principal subspace).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from artmem.errors import ArtmemError
from artmem.retrieval.store import l2_normalize


@dataclass
class PCA:
    """mean (D,), components (d, D) with orthonormal rows, explained variance ratio (d,)."""

    mean: np.ndarray
    components: np.ndarray
    explained: np.ndarray
    n_fit: int

    @property
    def in_dim(self) -> int:
        return int(self.components.shape[1])

    @property
    def out_dim(self) -> int:
        return int(self.components.shape[0])

    def transform(self, x: np.ndarray, chunk: int = 100_000) -> np.ndarray:
        """Project (N, D) vectors and re-normalise; processed in chunks to bound memory."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape[-1] != self.in_dim:
            raise ArtmemError(f"PCA expects {self.in_dim}-d vectors, got {x.shape[-1]}-d")
        single = x.ndim == 1
        x = x[None] if single else x
        out = np.empty((len(x), self.out_dim), np.float32)
        for i in range(0, len(x), chunk):
            out[i : i + chunk] = (x[i : i + chunk] - self.mean) @ self.components.T
        out = l2_normalize(out)
        return out[0] if single else out

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        np.savez(path, mean=self.mean, components=self.components, explained=self.explained,
                 n_fit=np.int64(self.n_fit))
        return path

    @classmethod
    def load(cls, path: str | Path) -> PCA:
        with np.load(path) as z:
            return cls(z["mean"], z["components"], z["explained"], int(z["n_fit"]))


def fit_pca(vectors: np.ndarray, dim: int, sample: int = 100_000, seed: int = 0) -> PCA:
    """Fit PCA on up to `sample` rows chosen at random (seeded)."""
    n, d = vectors.shape
    if not 1 <= dim <= d:
        raise ArtmemError(f"--pca {dim}: must be between 1 and the feature dimension {d}")
    if dim > n:
        raise ArtmemError(f"--pca {dim}: needs at least {dim} vectors to fit, the store has {n}")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, size=min(n, sample), replace=False))
    x = np.asarray(vectors[idx], dtype=np.float64)
    mean = x.mean(axis=0)
    x -= mean
    # Eigen-decomposition of the D x D covariance: cheap for D <= a few thousand.
    cov = x.T @ x / max(1, len(x) - 1)
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1]
    evals, evecs = evals[order], evecs[:, order]
    total = max(float(evals.clip(min=0).sum()), 1e-30)
    comps = evecs[:, :dim].T
    # Fix signs deterministically (largest-magnitude entry positive).
    signs = np.sign(comps[np.arange(dim), np.abs(comps).argmax(axis=1)])
    comps *= signs[:, None]
    return PCA(mean.astype(np.float32), comps.astype(np.float32),
               (evals[:dim].clip(min=0) / total).astype(np.float32), len(idx))
