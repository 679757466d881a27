"""2-D t-SNE embedding of feature vectors (Cetinic et al. 2019, Figure 4), safe for tiny n."""

from __future__ import annotations

import numpy as np


def tsne_perplexity(n: int, perplexity: float = 30.0) -> float:
    """A perplexity scikit-learn accepts for n points (it must be < n): at most (n - 1) / 3, at least 1."""
    if n < 2:
        return 1.0
    return float(min(perplexity, max(1.0, (n - 1) / 3.0), n - 1 - 1e-6))


def tsne_embed(
    vectors: np.ndarray,
    perplexity: float = 30.0,
    seed: int = 0,
    pca_dims: int = 50,
    metric: str = "cosine",
) -> np.ndarray:
    """(N, 2) t-SNE coordinates of `vectors` (N, D).

    With the cosine metric the rows are L2-normalised first. Vectors are then reduced to `pca_dims` with PCA first when D is larger (standard practice, and much
    faster for 4096-d fc7 features). The perplexity is lowered below n for small sets; n = 1 gives
    (0, 0), n = 2 two points on a line, and n = 3 runs t-SNE with perplexity 1.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = np.asarray(vectors, dtype=np.float64)
    n = len(x)
    if x.ndim != 2:
        raise ValueError(f"vectors must be (N, D), got shape {x.shape}")
    if n == 0:
        return np.zeros((0, 2))
    if n == 1:
        return np.zeros((1, 2))
    if n == 2:
        return np.array([[-1.0, 0.0], [1.0, 0.0]])
    if metric == "cosine":  # unit rows: euclidean distance is then monotonic in cosine distance
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        metric = "euclidean"
    if x.shape[1] > pca_dims and n > pca_dims:
        x = PCA(n_components=pca_dims, random_state=seed).fit_transform(x)
    tsne = TSNE(
        n_components=2,
        perplexity=tsne_perplexity(n, perplexity),
        init="pca" if n > 3 else "random",
        random_state=seed,
        metric=metric,
    )
    return tsne.fit_transform(x)
