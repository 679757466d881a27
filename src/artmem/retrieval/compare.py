"""Comparing feature spaces over the same images (Cetinic et al. 2018, section 5.5 and Figure 16).

For feature sets A and B of the same images:
- mean cosine distance: mean over images i of 1 - cos(a_i, b_i); defined only where the two spaces
  have the same dimension (e.g. the fc7 of differently initialised / fine-tuned copies of one
  architecture, as in their Figure 16); n/a otherwise.
- top-k neighbour overlap: mean over images of |N_k^A(i) ∩ N_k^B(i)| / k, with each image's k
  nearest neighbours (cosine, itself excluded) in each space: works across architectures.
- linear CKA (Kornblith et al. 2019) between the two representations: also across dimensions.
Per space: the mean pairwise cosine distance between images (how spread out the space is).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.errors import ArtmemError
from artmem.retrieval.backend_base import drop_self, exact_knn
from artmem.retrieval.store import l2_normalize, read_feature_set

logger = logging.getLogger(__name__)


@dataclass
class Space:
    name: str
    paths: list[str]
    vectors: np.ndarray  # unit rows
    meta: dict


def load_space(src: str | Path, name: str | None = None) -> Space:
    """A feature set from an extract output folder/file or an index folder."""
    src = Path(src)
    if (src / "index.json").exists():
        from artmem.retrieval.index import open_index

        index = open_index(src)
        paths = index.items["path"].tolist()
        vectors = index.vectors(index.items["id"].to_numpy())
        meta = {"model": index.meta.get("model"), "layer": index.meta.get("layer")}
    else:
        paths, vectors, meta = read_feature_set(src)
    if name is None:
        model, layer = meta.get("model"), meta.get("layer")
        name = f"{Path(str(model)).name}/{layer}" if model else src.name
    return Space(name, list(paths), l2_normalize(vectors), meta)


def align(spaces: list[Space], sample: int | None = None, seed: int = 0) -> tuple[list[str], list[np.ndarray]]:
    """Restrict every space to the images all of them have (sorted paths; optional random sample)."""
    common = set(spaces[0].paths)
    for s in spaces[1:]:
        common &= set(s.paths)
    if len(common) < 3:
        raise ArtmemError(f"the feature sets share only {len(common)} images; they must describe "
                          "the same collection")
    for s in spaces:
        if len(s.paths) != len(common):
            logger.info("%s: using %d of its %d images (those all sets share)", s.name, len(common),
                        len(s.paths))
    paths = sorted(common)
    if sample and len(paths) > sample:
        rng = np.random.default_rng(seed)
        paths = sorted(rng.choice(paths, size=sample, replace=False).tolist())
    out = []
    for s in spaces:
        pos = {p: i for i, p in enumerate(s.paths)}
        out.append(s.vectors[[pos[p] for p in paths]])
    return paths, out


def knn_ids(vectors: np.ndarray, k: int) -> np.ndarray:
    """Exact k nearest neighbours of every row among the rows (itself excluded)."""
    sims, ids = exact_knn(vectors, vectors, k + 1)
    ids, _ = drop_self(ids, sims, np.arange(len(vectors)), k)
    return ids


def knn_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean fraction of shared neighbours between two (n, k) neighbour-id arrays."""
    k = a.shape[1]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a.tolist(), b.tolist(), strict=True)]))


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    x = np.asarray(x, np.float64) - x.mean(axis=0)
    y = np.asarray(y, np.float64) - y.mean(axis=0)
    hsic = np.linalg.norm(y.T @ x) ** 2
    den = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(hsic / den) if den > 0 else float("nan")


def mean_pairwise_distance(v: np.ndarray) -> float:
    """Mean cosine distance over all pairs of distinct rows (without forming the n x n matrix)."""
    n = len(v)
    s = v.sum(axis=0)
    total = float(s @ s) - float((v * v).sum())  # sum over i != j of cos(v_i, v_j)
    return 1.0 - total / (n * (n - 1))


def compare_spaces(spaces: list[Space], k: int = 10, sample: int | None = 5000) -> dict[str, pd.DataFrame]:
    """Matrices (DataFrames indexed by space name): cosine_distance, knn_overlap, cka; and `spaces`."""
    if len(spaces) < 2:
        raise ArtmemError("compare needs at least two feature sets")
    names = [s.name for s in spaces]
    if len(set(names)) < len(names):  # same model/layer twice: fall back to unique labels
        names = [f"{i + 1}:{n}" for i, n in enumerate(names)]
    paths, vecs = align(spaces, sample)
    n = len(paths)
    k = min(k, n - 1)
    m = len(spaces)
    dist = np.full((m, m), np.nan)
    overlap = np.eye(m)
    cka = np.eye(m)
    neighbours = [knn_ids(v, k) for v in vecs]
    for i in range(m):
        dist[i, i] = 0.0
        for j in range(i + 1, m):
            if vecs[i].shape[1] == vecs[j].shape[1]:
                dist[i, j] = dist[j, i] = float(np.mean(1.0 - (vecs[i] * vecs[j]).sum(axis=1)))
            overlap[i, j] = overlap[j, i] = knn_overlap(neighbours[i], neighbours[j])
            cka[i, j] = cka[j, i] = linear_cka(vecs[i], vecs[j])
    info = pd.DataFrame({
        "space": names,
        "model": [s.meta.get("model") for s in spaces],
        "layer": [s.meta.get("layer") for s in spaces],
        "dim": [v.shape[1] for v in vecs],
        "images": n,
        "mean_pairwise_cosine_distance": [mean_pairwise_distance(v) for v in vecs],
        "k": k,
        "chance_knn_overlap": k / (n - 1),
    })
    as_df = lambda a: pd.DataFrame(a, index=names, columns=names)  # noqa: E731
    return {"cosine_distance": as_df(dist), "knn_overlap": as_df(overlap), "cka": as_df(cka),
            "spaces": info}


def write_comparison(result: dict[str, pd.DataFrame], out: str | Path) -> list[Path]:
    """CSV + heat-map PNG per matrix, spaces.csv and a long-form comparison.parquet."""
    from artmem.io import ensure_out_dir
    from artmem.retrieval.plots import heatmap

    out = ensure_out_dir(out)
    k = int(result["spaces"]["k"].iloc[0])
    n = int(result["spaces"]["images"].iloc[0])
    written = []
    titles = {
        "cosine_distance": (f"Mean cosine distance between the spaces' features of the same image "
                            f"(n={n}; n/a: dims differ)", "viridis_r", 0.0, None),
        "knn_overlap": (f"Mean top-{k} neighbour overlap (n={n}; chance {k / (n - 1):.3f})",
                        "viridis", 0.0, 1.0),
        "cka": (f"Linear CKA (n={n})", "viridis", 0.0, 1.0),
    }
    long = []
    for key, (title, cmap, vmin, vmax) in titles.items():
        mat = result[key]
        path = out / f"{key}.csv"
        mat.to_csv(path)
        written += [path, heatmap(mat, out / f"{key}.png", title, cmap=cmap, vmin=vmin, vmax=vmax)]
        stacked = mat.stack(future_stack=True).rename("value").reset_index()
        stacked.columns = ["a", "b", "value"]
        stacked.insert(2, "measure", key)
        long.append(stacked)
    path = out / "spaces.csv"
    result["spaces"].to_csv(path, index=False)
    written.append(path)
    path = out / "comparison.parquet"
    pd.concat(long, ignore_index=True).to_parquet(path, index=False)
    written.append(path)
    return written
