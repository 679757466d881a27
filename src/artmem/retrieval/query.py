"""Queries: a collection path, an outside image file, a PIL image or a vector -> top-k DataFrame."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.errors import ArtmemError
from artmem.retrieval.backend_base import Index
from artmem.retrieval.index import open_index

logger = logging.getLogger(__name__)

_MODELS: dict = {}


def embed_query(image, model: str, layer: str | None = None, device: str = "auto") -> np.ndarray:
    """Raw feature (1, D) of one query image (a file or a PIL image) with a registry model (or
    checkpoint): its evaluation preprocessing (`preprocess_for`) and `extract(x, [layer])`, as the
    batch extractor (`artmem extract`) computes the collection's features."""
    import torch

    from artmem.models.factory import create_model
    from artmem.models.preprocess import preprocess_for
    from artmem.runtime import autocast, resolve_device

    dev = resolve_device(device)
    key = (str(model), str(dev))
    if key not in _MODELS:
        _MODELS[key] = create_model(model).to(dev).eval()
    net = _MODELS[key]
    layer = layer or net.pretrained_cfg.default_layer
    pre = preprocess_for(net)
    x = (pre.load(image) if isinstance(image, (str, Path)) else pre(image.convert("RGB")))[None].to(dev)
    with torch.inference_mode(), autocast(dev):
        feats = net.extract(x, [layer])[layer]
    return feats.float().cpu().numpy().astype(np.float32)


def resolve_query(index: Index, query, device: str = "auto") -> tuple[np.ndarray, int | None, str]:
    """(index-space vector, id of the query if it is in the index, a description)."""
    if isinstance(query, np.ndarray):
        return index.to_index_space(query.reshape(1, -1))[0], None, "vector"
    if hasattr(query, "convert") and hasattr(query, "size"):  # a PIL image
        raw = embed_query(query, index.meta["model"], index.meta.get("layer"), device)
        return index.to_index_space(raw)[0], None, "image"
    query = str(query)
    qid = index.id_of(query)
    if qid is not None:
        return index.vectors([qid])[0], qid, index.items_of([qid])["path"].iloc[0]
    path = Path(query)
    if not path.is_file():
        raise ArtmemError(f"{query}: not a path in the index and not an image file")
    if not index.meta.get("model"):
        raise ArtmemError(f"index {index.dir} records no model, so an outside image cannot be "
                          "embedded; query by a collection path instead")
    logger.info("embedding outside image %s with %s/%s", path, index.meta["model"],
                index.meta.get("layer"))
    raw = embed_query(path, index.meta["model"], index.meta.get("layer"), device)
    return index.to_index_space(raw)[0], None, str(path)


def results_frame(index: Index, sims: np.ndarray, ids: np.ndarray) -> pd.DataFrame:
    """One row per hit: rank, id, path, similarity, distance and the item's metadata."""
    keep = ids >= 0
    ids, sims = ids[keep], sims[keep]
    df = index.items_of(ids).copy()
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    df.insert(3, "similarity", sims.astype(np.float64))
    df.insert(4, "distance", 1.0 - sims.astype(np.float64))
    return df


def search(index: Index | str | Path, query, k: int = 10, filter: str | None = None,
           exclude_self: bool = True, device: str = "auto") -> pd.DataFrame:
    """Top-k most similar images to `query`, as a DataFrame.

    Args:
        index: an `Index` or an index folder.
        query: a collection path (relative, or absolute under the collection root), an image
            file outside the collection, a PIL image, or a raw feature vector.
        k: number of results.
        filter: metadata condition, e.g. ``"genre == 'portrait'"``.
        exclude_self: leave the query out of its own results when it is in the index.

    Returns:
        columns rank, id, path, similarity (cosine), distance (1 - cosine), metadata columns;
        `df.attrs['query']` describes the query.
    """
    if not isinstance(index, Index):
        index = open_index(index)
    vec, qid, desc = resolve_query(index, query, device)
    sims, ids = index.search(vec[None], k, filter=filter,
                             exclude=[qid if exclude_self else None], raw=False)
    df = results_frame(index, sims[0], ids[0])
    df.attrs["query"] = desc
    df.attrs["query_id"] = qid
    return df


def item_file(index: Index, rel: str) -> str:
    """Where the image of an index path lives (collection root + relative path)."""
    root = index.meta.get("collection_root")
    if root and not Path(rel).is_absolute():
        return rel if "://" in rel else str(Path(root) / rel)
    return rel


def similar(index: Index | str | Path, query, out: str | Path, k: int = 10,
            filter: str | None = None, exclude_self: bool = True, device: str = "auto",
            csv: bool = False, label_columns: list[str] | None = None) -> tuple[pd.DataFrame, list[Path]]:
    """Run `search` and write OUT/results.parquet (+csv) and OUT/contact_sheet.png."""
    from artmem.io import ensure_out_dir, write_table
    from artmem.retrieval.plots import contact_sheet

    if not isinstance(index, Index):
        index = open_index(index)
    df = search(index, query, k=k, filter=filter, exclude_self=exclude_self, device=device)
    out = ensure_out_dir(out)
    table = df.copy()
    table.insert(0, "query", df.attrs["query"])
    written = write_table(table, out, "results", csv=csv)
    qid = df.attrs["query_id"]
    if qid is not None:
        q_image = item_file(index, index.items_of([qid])["path"].iloc[0])
    elif isinstance(query, (str, Path)):
        q_image = str(query)
    elif hasattr(query, "convert"):
        q_image = query
    else:
        q_image = None
    files = [item_file(index, p) for p in df["path"]]
    title = (f"{index.meta.get('model')}/{index.meta.get('layer')} · cosine similarity"
             + (f" · filter: {filter}" if filter else ""))
    written.append(contact_sheet(q_image, df.attrs["query"], df, files, out / "contact_sheet.png",
                                 label_columns=label_columns, title=title))
    return df, written
