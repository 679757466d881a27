"""Metadata filters: one expression text that works on both backends.

Users write simple comparisons joined by and/or/not, e.g. ``genre == 'portrait'``,
``year >= 1500 AND style IN ('Baroque', 'Rococo')``. LanceDB evaluates them as SQL (DataFusion);
the FAISS backend evaluates them with `pandas.DataFrame.query` after a small translation.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from artmem.errors import ArtmemError

_STRING = r"('(?:[^']|'')*'|\"[^\"]*\")"


def _outside_strings(expr: str, fn) -> str:
    parts = re.split(_STRING, expr)
    return "".join(p if i % 2 else fn(p) for i, p in enumerate(parts))


def to_pandas_query(expr: str) -> str:
    """Translate SQL-style spellings (=, <>, AND, OR, NOT, IN, IS NULL) to pandas query syntax."""

    def fix(s: str) -> str:
        s = re.sub(r"(?<![<>!=])=(?!=)", "==", s)
        s = s.replace("<>", "!=")
        s = re.sub(r"\bAND\b", "and", s, flags=re.I)
        s = re.sub(r"\bOR\b", "or", s, flags=re.I)
        s = re.sub(r"\bNOT\s+IN\b", "not in", s, flags=re.I)
        s = re.sub(r"\bIN\b", "in", s, flags=re.I)
        s = re.sub(r"\bNOT\b", "not", s, flags=re.I)
        s = re.sub(r"(\w+)\s+IS\s+NOT\s+NULL\b", r"\1.notna()", s, flags=re.I)
        s = re.sub(r"(\w+)\s+IS\s+NULL\b", r"\1.isna()", s, flags=re.I)
        return s

    return _outside_strings(expr, fix)


def to_sql_where(expr: str) -> str:
    """Translate pandas spellings (==, and/or/not, in [..]) to SQL for LanceDB."""

    def fix(s: str) -> str:
        s = s.replace("==", "=")
        s = re.sub(r"\band\b", "AND", s)
        s = re.sub(r"\bor\b", "OR", s)
        s = re.sub(r"\bnot\b", "NOT", s)
        s = re.sub(r"\bin\b", "IN", s)
        s = s.replace("[", "(").replace("]", ")")
        return s

    return _outside_strings(expr, fix)


def filter_mask(items: pd.DataFrame, expr: str | None) -> np.ndarray:
    """Boolean mask of the rows of `items` matching `expr` (all rows when None/empty)."""
    if not expr:
        return np.ones(len(items), dtype=bool)
    try:
        mask = items.eval(to_pandas_query(expr), engine="python")
    except Exception as exc:
        cols = ", ".join(c for c in items.columns if c != "id")
        raise ArtmemError(f"bad filter {expr!r}: {exc} (columns: {cols})") from exc
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != (len(items),):
        raise ArtmemError(f"filter {expr!r} is not a true/false condition on each image")
    return mask
