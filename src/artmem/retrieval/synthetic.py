"""Clustered synthetic feature vectors for tests and benchmarks.

Real CNN features lie near a low-dimensional manifold and form clusters (content, style).
i.i.d. Gaussian vectors in 512-d have no neighbour structure at all (every point is about as far
from every other), which defeats every approximate index and says nothing about real use. Here
each vector is a cluster centre plus a latent offset in a low-dimensional subspace plus a little
isotropic noise, then L2-normalised.
"""

from __future__ import annotations

import numpy as np


def clustered_vectors(
    n: int,
    dim: int = 512,
    n_clusters: int | None = None,
    latent_dim: int = 32,
    spread: float = 0.6,
    noise: float = 0.05,
    seed: int = 0,
    chunk: int = 200_000,
) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (n, dim) float32 unit rows, cluster labels (n,)).

    Args:
        n_clusters: default ~sqrt(n)/2 (at least 2).
        latent_dim: intrinsic dimension of the within-cluster variation.
        spread: within-cluster latent scale relative to the centre spread.
        noise: isotropic noise scale per dimension (relative).
    """
    rng = np.random.default_rng(seed)
    n_clusters = n_clusters or max(2, int(np.sqrt(n) / 2))
    basis = rng.normal(size=(latent_dim, dim)).astype(np.float32) / np.sqrt(latent_dim)
    centres = rng.normal(size=(n_clusters, latent_dim)).astype(np.float32)
    labels = rng.integers(0, n_clusters, size=n)
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, chunk):
        lab = labels[s : s + chunk]
        z = centres[lab] + spread * rng.normal(size=(len(lab), latent_dim)).astype(np.float32)
        x = z @ basis
        x += noise * rng.normal(size=x.shape).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[s : s + chunk] = x
    return out, labels
