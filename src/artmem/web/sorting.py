"""What the grid can be sorted and searched by.

Sort keys: `score`, `path`, a numeric collection column, `measure:<column>` (the results'
measures), and `pred:<table>:<column>` (a numeric column of a predictions table: a probability,
`prob`, or `correct` = predicted label equals the true one, derived from `pred` and `label` when
the table lacks it). The path and numeric collection columns are sorted by DuckDB on the table
itself, and so are the score and the measures of a large collection (added to its row table:
`measures.py`); the other keys are arrays aligned with the row ids (`rowstore.RowStore.page_ids`).
Text search (`rowstore.RowStore.where`) matches a case-insensitive substring of the path or of any
label value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from artmem.web.labels import measure_label
from artmem.web.measures import by_id

PRED_SKIP = {"_id", "_table", "path"}
SCORE_COLUMN = "_score"  # the scores of a large collection, as a column of its row table


def sort_options(data) -> list[tuple[str, str]]:
    """(key, human label) of every sort key, in the order the grid's menu lists them."""
    out = [("score", "memorability"), ("path", "file path")]
    out += [(c, c.replace("_", " ")) for c in data.numeric_columns()]
    if data.measures is not None:
        out += [(f"measure:{c}", measure_label(c)) for c in data.measures.sortable]
    preds = data.predictions
    if preds is not None:
        for table, rows in preds.groupby("_table", sort=True):
            cols = list(rows.columns)
            if "correct" not in cols and {"pred", "label"} <= set(cols):
                cols.append("correct")  # predicted vs true, derived
            for c in cols:
                if c in PRED_SKIP or (c in rows.columns and rows[c].isna().all()):
                    continue
                if c == "correct" or pd.api.types.is_numeric_dtype(rows[c]):
                    what = "predicted = true label" if c == "correct" else measure_label(c)
                    out.append((f"pred:{table}:{c}", f"{table}: {what}"))
    return out


def sort_source(data, key: str) -> tuple[str | None, np.ndarray | None]:
    """(a column of the row table, None) or (None, one value per row id) to sort by `key`
    (NaN where a row has none)."""
    if key == "score":
        return (SCORE_COLUMN, None) if SCORE_COLUMN in data.store.columns else (None, data.scores)
    n = data.n_rows
    if key.startswith("measure:"):
        col = key.split(":", 1)[1]
        return data.measures.sort_source(col, n)
    if key.startswith("pred:"):
        _, name, col = key.split(":", 2)
        rows = data.predictions[data.predictions["_table"] == name].drop_duplicates("_id", keep="last")
        if col == "correct" and "correct" not in rows.columns:
            values = (rows["pred"].astype(str) == rows["label"].astype(str)).astype(float)
        else:
            values = rows[col].astype(float)
        return None, by_id(pd.Series(values.to_numpy(), index=rows["_id"].to_numpy()), n)
    return key, None

