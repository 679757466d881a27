"""Clustered synthetic feature vectors for tests and benchmarks.

Real CNN features lie near a low-dimensional manifold and form clusters (content, style).
i.i.d. Gaussian vectors in 512-d have no neighbour structure at all (every point is about as far
from every other), which defeats every approximate index and says nothing about real use. Here
each vector is a cluster centre plus a latent offset in a low-dimensional subspace plus a little
isotropic noise, then L2-normalised.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def clustered_chunks(
    n: int,
    dim: int = 512,
    n_clusters: int | None = None,
    latent_dim: int = 32,
    spread: float = 0.6,
    noise: float = 0.05,
    seed: int = 0,
    chunk: int = 200_000,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The rows of `clustered_vectors` as (vectors (<= chunk, dim), labels) chunks, in order.

    Only one chunk of vectors is in memory at a time (plus the n int labels), so benchmarks can
    write 10^7 vectors to disk without holding them.
    """
    rng = np.random.default_rng(seed)
    n_clusters = n_clusters or max(2, int(np.sqrt(n) / 2))
    basis = rng.normal(size=(latent_dim, dim)).astype(np.float32) / np.sqrt(latent_dim)
    centres = rng.normal(size=(n_clusters, latent_dim)).astype(np.float32)
    labels = rng.integers(0, n_clusters, size=n)
    for s in range(0, n, chunk):
        lab = labels[s : s + chunk]
        z = centres[lab] + spread * rng.normal(size=(len(lab), latent_dim)).astype(np.float32)
        x = z @ basis
        x += noise * rng.normal(size=x.shape).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        yield x, lab


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
    out = np.empty((n, dim), np.float32)
    labels = np.empty(n, np.int64)
    s = 0
    for x, lab in clustered_chunks(n, dim, n_clusters, latent_dim, spread, noise, seed, chunk):
        out[s : s + len(x)] = x
        labels[s : s + len(x)] = lab
        s += len(x)
    return out, labels
