"""Demo step: index the demo collection's features (out/index) and query it with a Raphael painting.

Uses out/features when the batch demo step wrote it (ResMem fc7), else extracts ResMem fc7 itself.
Writes out/index/ (the FAISS index), out/similar/ (results.parquet + contact_sheet.png of one
query) and out/similar/precision.parquet (same-label precision@k of the collection's labels).
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

DEMO_MODEL, DEMO_LAYER = "resmem", "fc7"


def _features(collection, out: Path, device: str) -> Path:
    from artmem.batch.api import extract
    from artmem.batch.results import has_results

    existing = out / "features"
    if has_results(existing, "features"):  # merged features.parquet or a finished shard dataset
        return existing

    target = out / "index" / "features"
    logger.info("demo: no out/features yet; extracting %s/%s features", DEMO_MODEL, DEMO_LAYER)
    extract(collection, DEMO_MODEL, DEMO_LAYER, out=target, device=device, progress=False)
    return target


def pick_query(items) -> str:
    """A Raphael painting if the collection has one (subject madonna / kind painting), else the first."""
    for col, value in (("subject", "madonna"), ("kind", "painting")):
        if col in items.columns:
            hits = items.loc[items[col] == value, "path"]
            if len(hits):
                return str(sorted(hits)[0])
    return str(items["path"].iloc[0])


def demo_step(collection, out: Path, device: str = "auto") -> list[Path]:
    """Build the index and write one query's contact sheet; returns the written paths."""
    from artmem.io import write_table
    from artmem.retrieval.evaluate import default_label_columns, label_precision
    from artmem.retrieval.index import build_index
    from artmem.retrieval.query import similar
    from artmem.retrieval.store import load_store

    out = Path(out)
    features = _features(collection, out, device)
    store = load_store(features, collection)
    index = build_index(store, out / "index")
    written = sorted(p for p in (out / "index").iterdir() if p.is_file())
    query = pick_query(index.items)
    k = min(10, len(index) - 1)
    df, paths = similar(index, query, out / "similar", k=k, device=device)
    written += paths
    labels = ([c for c in ("kind", "subject") if c in index.items.columns]
              or default_label_columns(index.items))
    if labels and len(index) > 2:
        summary, _ = label_precision(index, labels, ks=(1, 5))
        written += write_table(summary, out / "similar", "precision")
    same = (df["subject"] == "madonna").sum() if "subject" in df.columns else None
    logger.info("demo: query %s -> %s of its top %d are other Raphael copies", query,
                same if same is not None else "?", len(df))
    return written
