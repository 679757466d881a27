"""MemCat `memcat_image_data.csv`: quoted, a leading R index column, images at `<category>/<subcategory>/<file>`.

`score` is the FA-corrected memorability `(H - FA) / n_resp` by default (`score="fa"`), or the raw
hit rate (`score="no-fa"`); when a column is absent it is computed from `H`, `FA` and `n_resp`.
Both published columns are kept (`memorability_w_fa_correction`, `memorability_wo_fa_correction`).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pandas as pd

from artmem.data.readers.common import ReadResult, decode_text, finish, keep_existing
from artmem.errors import ArtmemError, CollectionError

logger = logging.getLogger(__name__)

W_FA = "memorability_w_fa_correction"
WO_FA = "memorability_wo_fa_correction"
SCORE_CHOICES = ("fa", "no-fa")


def read_memcat(source: str | Path, root: str | Path | None = None, score: str = "fa", **_ignored) -> ReadResult:
    """Read MemCat.

    Args:
        source: memcat_image_data.csv, or a folder holding it (directly or in data/).
        root: folder holding the `<category>/` image folders (default: the CSV's folder, or its
            `images/` / `MemCat/` sub-folder when present).
        score: "fa" (FA-corrected, default) or "no-fa" (hit rate).
    """
    if score not in SCORE_CHOICES:
        raise ArtmemError(f"--score must be one of {', '.join(SCORE_CHOICES)} (got {score!r})")
    source = Path(source)
    csv_file = source
    if source.is_dir():
        cands = [source / "memcat_image_data.csv", source / "data" / "memcat_image_data.csv"]
        csv_file = next((c for c in cands if c.is_file()), cands[0])
    if not csv_file.is_file():
        raise CollectionError(csv_file, "no such file (expected memcat_image_data.csv)")
    df = pd.read_csv(io.StringIO(decode_text(csv_file.read_bytes())), dtype={"image_file": str})
    df = df.loc[:, [c for c in df.columns if c and not str(c).startswith("Unnamed")]]
    need = {"image_file", "category", "subcategory"}
    if not need <= set(df.columns):
        raise CollectionError(csv_file, f"missing columns {sorted(need - set(df.columns))} (is this memcat_image_data.csv?)")
    have_counts = {"H", "FA", "n_resp"} <= set(df.columns)
    if W_FA not in df.columns and have_counts:
        df[W_FA] = (df["H"] - df["FA"]) / df["n_resp"]
    if WO_FA not in df.columns and have_counts:
        df[WO_FA] = df["H"] / df["n_resp"]
    col = W_FA if score == "fa" else WO_FA
    if col not in df.columns:
        raise CollectionError(csv_file, f"no {col} column and no H/FA/n_resp to compute it; try --score "
                                        f"{'no-fa' if score == 'fa' else 'fa'}")
    df.insert(0, "path", df["category"].astype(str) + "/" + df["subcategory"].astype(str) + "/" + df["image_file"].astype(str))
    df.insert(1, "score", df[col].astype(float))
    if root is None:
        base = csv_file.parent
        cands = [base, base / "images", base / "MemCat", base.parent, base.parent / "images", base.parent / "MemCat"]
        first = df["path"].iloc[0] if len(df) else ""
        root = next((c for c in cands if (c / first).is_file()), base)
    root = Path(root)
    for c in ("category", "subcategory", "source", "searched_label"):
        if c in df.columns:
            df[c] = df[c].astype("str")
    good, errors = keep_existing(df, root)
    meta = {"format": "memcat", "source": str(csv_file), "score": col}
    return finish(good, root, "memcat", meta, errors)
