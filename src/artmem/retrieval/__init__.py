"""Similarity retrieval: feature store, persistent FAISS/LanceDB indexes, queries, comparisons.

Main entry points:
    load_store(features, collection)           -> FeatureStore (L2-normalised vectors + metadata)
    build_index(store, out, backend, kind, pca_dim) -> Index
    open_index(path)                            -> Index
    add_to_index(index, store)                  -> counts
    search(index, query, k, filter)             -> DataFrame
    compare_spaces([...]) / label_precision(index)
"""

from importlib import import_module

# Lazy, so that `artmem --help` (which imports this package's commands) does not load pandas and FAISS.
_LAZY = {
    "Index": "artmem.retrieval.backend_base", "add_to_index": "artmem.retrieval.index",
    "build_index": "artmem.retrieval.index", "open_index": "artmem.retrieval.index",
    "search": "artmem.retrieval.query", "FeatureStore": "artmem.retrieval.store",
    "l2_normalize": "artmem.retrieval.store", "load_store": "artmem.retrieval.store",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'artmem.retrieval' has no attribute {name!r}")


__all__ = sorted(_LAZY)
