"""Similarity retrieval: feature store, persistent FAISS/LanceDB indexes, queries, comparisons.

Main entry points:
    load_store(features, collection)           -> FeatureStore (L2-normalised vectors + metadata)
    build_index(store, out, backend, kind, pca_dim) -> Index
    open_index(path)                            -> Index
    add_to_index(index, store)                  -> counts
    search(index, query, k, filter)             -> DataFrame
    compare_spaces([...]) / label_precision(index)
"""

from artmem.retrieval.backend_base import Index
from artmem.retrieval.index import add_to_index, build_index, open_index
from artmem.retrieval.query import search
from artmem.retrieval.store import FeatureStore, l2_normalize, load_store

__all__ = ["FeatureStore", "Index", "add_to_index", "build_index", "l2_normalize", "load_store",
           "open_index", "search"]
