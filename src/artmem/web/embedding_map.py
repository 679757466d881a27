"""The embedding map's 2-D layout: the stored features laid out by UMAP (when `umap-learn` is
installed) or t-SNE, computed once per set of embeddings and cached in memory and, with a
results folder, in RESULTS/embedding_map/ (so a restart reuses it)."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


def layout_method() -> str:
    """'umap' when umap-learn is importable, else 't-SNE' (scikit-learn)."""
    try:
        import umap  # noqa: F401
    except ImportError:
        return "t-SNE"
    return "umap"


def compute_layout(vectors: np.ndarray, seed: int = 0, perplexity: float = 30.0) -> tuple[np.ndarray, dict]:
    """(N, 2) coordinates scaled to [0, 1] (aspect kept) and what was used to make them."""
    method = layout_method()
    n = len(vectors)
    if method == "umap" and n > 15:
        import umap

        xy = umap.UMAP(n_components=2, metric="cosine", n_neighbors=min(15, n - 1),
                       random_state=seed).fit_transform(vectors)
        used = {"method": "umap", "metric": "cosine", "n_neighbors": min(15, n - 1), "seed": seed}
    else:
        from artmem.analysis.embedding import tsne_embed, tsne_perplexity

        xy = tsne_embed(vectors, perplexity=perplexity, seed=seed)
        used = {"method": "t-SNE", "metric": "cosine", "perplexity": tsne_perplexity(n, perplexity), "seed": seed}
    xy = np.asarray(xy, dtype=np.float64)
    if n:
        xy = xy - xy.min(axis=0)
        span = float(xy.max()) or 1.0
        xy = xy / span
    return xy, used


class EmbeddingLayout:
    """The layout of the explorer's current embeddings, recomputed only when they change."""

    def __init__(self, data):
        self.data = data
        self.lock = threading.Lock()
        self._cached: tuple[str, np.ndarray, np.ndarray, dict] | None = None

    def folder(self) -> Path | None:
        return None if self.data.results is None else self.data.results / "embedding_map"

    @staticmethod
    def _signature(ids: np.ndarray, vectors: np.ndarray, paths: list[str]) -> str:
        h = hashlib.sha1()
        h.update("\n".join(paths).encode())
        h.update(np.ascontiguousarray(vectors[:, : min(8, vectors.shape[1])], dtype=np.float32).tobytes())
        return h.hexdigest()[:16]

    def get(self) -> tuple[np.ndarray, np.ndarray, dict] | None:
        """(row ids, (N, 2) coordinates, info) or None without embeddings."""
        feats = self.data.features
        if feats is None or len(feats.ids) == 0:
            return None
        ids = np.asarray(feats.ids, dtype=np.int64)
        paths = self.data.rows(ids)["path"].astype(str).tolist()
        sig = self._signature(ids, feats.vectors, paths)
        with self.lock:  # one computation at a time; the others wait for it
            if self._cached is not None and self._cached[0] == sig:
                return self._cached[1:]
            got = self._read(sig, paths)
            if got is None:
                logger.info("embedding map: laying out %d images (%s)...", len(ids), layout_method())
                if len(ids) > 20_000 and layout_method() != "umap":
                    logger.warning("t-SNE of %d images takes long (once; then cached): `pip install "
                                   "umap-learn` lays out large collections much faster", len(ids))
                xy, used = compute_layout(feats.vectors)
                used.update(model=feats.model, layer=feats.layer, n=len(ids))
                self._write(sig, paths, xy, used)
            else:
                xy, used = got
            self._cached = (sig, ids, xy, used)
            return ids, xy, used

    def _read(self, sig: str, paths: list[str]) -> tuple[np.ndarray, dict] | None:
        folder = self.folder()
        if folder is None or not (folder / "layout.json").is_file():
            return None
        try:
            info = json.loads((folder / "layout.json").read_text())
            if info.get("signature") != sig:
                return None
            df = pd.read_parquet(folder / "layout.parquet")
        except (OSError, ValueError) as exc:
            logger.warning("embedding map cache %s not used: %s", folder, exc)
            return None
        if df["path"].astype(str).tolist() != paths:
            return None
        return df[["x", "y"]].to_numpy(dtype=np.float64), info["used"]

    def _write(self, sig: str, paths: list[str], xy: np.ndarray, used: dict) -> None:
        folder = self.folder()
        if folder is None:
            return
        try:
            folder.mkdir(parents=True, exist_ok=True)
            pd.DataFrame({"path": paths, "x": xy[:, 0], "y": xy[:, 1]}).to_parquet(folder / "layout.parquet")
            (folder / "layout.json").write_text(json.dumps({"signature": sig, "used": used}, indent=2) + "\n")
        except OSError as exc:  # a read-only results folder: the layout stays in memory
            logger.warning("embedding map not cached in %s: %s", folder, exc)
