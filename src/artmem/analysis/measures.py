"""Per-image measures of a collection: composition, symmetry, colour, and attributes.

`ImageMeasurer(config)(img)` gives one dict of measures for a PIL image. `MeasuresProcessor` is
the same computation for the batch engines of `artmem.batch` (pixel measures where images are
decoded, the CNN symmetry batched where the model lives). `add_attributes` joins classifier probabilities (`p_<class>` columns of a
predictions table) and numeric metadata columns of the collection.

Column groups (also written to measures.json, so reports can label them):
- composition: edge_density, vertical_edge_ratio, horizontal_edge_ratio
- symmetry: symmetry_conv1 (17 x 17 grid), symmetry_conv5 (6 x 6 patches)
- hue: hue_red ... hue_rose (12 bins), colour: chromatic_fraction, saturation_mean,
  brightness_mean, colorfulness
- attributes: p_* columns of predictions tables; metadata: numeric collection columns
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.analysis import color as color_mod
from artmem.analysis import edges as edges_mod
from artmem.analysis.symmetry import DEFAULT_MODEL, DEFAULT_VARIANTS, SymmetryScorer, alexnet_branch
from artmem.batch.processors import BaseProcessor
from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)

COMPOSITION_COLUMNS = ("edge_density", "vertical_edge_ratio", "horizontal_edge_ratio")
SYMMETRY_COLUMNS = tuple(v.name for v in DEFAULT_VARIANTS)
HUE_COLUMNS = color_mod.HUE_COLUMNS
COLOR_COLUMNS = ("chromatic_fraction", "saturation_mean", "brightness_mean", "colorfulness")


@dataclass
class MeasureConfig:
    """Which measures to compute and their parameters (recorded in measures.json)."""

    edges: bool = True
    edge_threshold: float = edges_mod.DEFAULT_THRESHOLD
    edge_tolerance_deg: float = edges_mod.DEFAULT_TOLERANCE_DEG
    edge_max_side: int = edges_mod.DEFAULT_MAX_SIDE
    color: bool = True
    hue_mode: str = "chromatic"  # chromatic (greys left out) | paper (plain histogram, color.py)
    min_chroma: float = color_mod.DEFAULT_MIN_CHROMA
    color_max_side: int = color_mod.DEFAULT_MAX_SIDE
    symmetry: bool = True
    symmetry_model: str = DEFAULT_MODEL
    extra: dict = field(default_factory=dict)

    def columns(self) -> list[str]:
        cols: list[str] = []
        if self.edges:
            cols += COMPOSITION_COLUMNS
        if self.symmetry:
            cols += SYMMETRY_COLUMNS
        if self.color:
            cols += [*HUE_COLUMNS, *COLOR_COLUMNS]
        return cols

    def to_dict(self) -> dict:
        return asdict(self)


class ImageMeasurer:
    """Callable computing every configured measure of one PIL image (no batching).

    Args:
        config: what to compute.
        symmetry_branch: (state, mean, std) from `alexnet_branch`, to avoid loading the filters
            again; loaded from `config.symmetry_model` when None.
    """

    def __init__(self, config: MeasureConfig | None = None, symmetry_branch: tuple | None = None):
        self.config = config or MeasureConfig()
        self._sym = None
        if self.config.symmetry:
            state, mean, std = symmetry_branch or alexnet_branch(self.config.symmetry_model)
            self._sym = SymmetryScorer(state, mean=mean, std=std)

    def __call__(self, img) -> dict[str, float]:
        out = pixel_measures(img, self.config)
        if self._sym is not None:
            out.update(self._sym(img))
        return {c: out[c] for c in self.config.columns()}


def pixel_measures(img, config: MeasureConfig) -> dict[str, float]:
    """The measures that need no network: edge ratios, hue histogram and colour statistics."""
    c = config
    out: dict[str, float] = {}
    if c.edges:
        out.update(edges_mod.edge_ratios(img, c.edge_threshold, c.edge_tolerance_deg, c.edge_max_side))
    if c.color:
        out.update(color_mod.color_measures(img, c.min_chroma, c.color_max_side, c.hue_mode))
    return out


def empty_measures(config: MeasureConfig) -> pd.DataFrame:
    return pd.DataFrame({"path": pd.Series([], dtype="str"),
                         **{c: pd.Series([], dtype="float64") for c in config.columns()}})


class MeasuresProcessor(BaseProcessor):
    """The measures job for the batch engines of `artmem.batch` (local DataLoader or Ray).

    Follows `artmem.batch.processors.Processor`: `load` (run in decoding workers / Ray map tasks)
    decodes the image and computes the pixel measures (edges, colour), and resizes it for the
    symmetry network; `process` (run where the model lives) computes the CNN symmetry of the
    whole batch in one forward pass of the images and their mirror images. Picklable: the
    symmetry filters travel as a ~5 MB state dict.
    """

    kind = "measures"

    def __init__(self, config: MeasureConfig | None = None, symmetry_branch: tuple | None = None):
        self.config = config or MeasureConfig()
        if self.config.symmetry and symmetry_branch is None:
            symmetry_branch = alexnet_branch(self.config.symmetry_model)
        self.symmetry_branch = symmetry_branch
        self._scorer: SymmetryScorer | None = None
        self.device = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_scorer"] = None
        return state

    def setup(self, device: str = "cpu") -> None:
        if not self.config.symmetry:
            return
        from artmem.runtime import resolve_device

        dev = resolve_device(device)
        if self._scorer is None or str(self.device) != str(dev):
            state, mean, std = self.symmetry_branch
            self._scorer = SymmetryScorer(state, mean=mean, std=std, device=dev)
            self.device = dev

    def spec(self) -> dict:
        """What makes two runs compatible for resuming."""
        return {"processor": "measures", "kind": self.kind, "config": self.config.to_dict()}

    def load(self, abs_path: str):
        """(pixel measures dict, (3, S, S) uint8 tensor for symmetry or None)."""
        from artmem.data.images import load_image

        img = load_image(abs_path)
        values = pixel_measures(img, self.config)
        tensor = SymmetryScorer.to_tensor(img) if self.config.symmetry else None
        return values, tensor

    def collate(self, items: list):
        import torch

        values = [v for v, _ in items]
        tensors = [t for _, t in items]
        return values, (torch.stack(tensors) if tensors and tensors[0] is not None else None)

    def process(self, batch) -> pd.DataFrame:
        values, tensors = batch
        rows = [dict(v) for v in values]
        if self.config.symmetry:
            if self._scorer is None:
                self.setup("cpu")
            for row, sym in zip(rows, self._scorer.batch(tensors), strict=True):
                row.update(sym)
        cols = self.config.columns()
        return pd.DataFrame([{c: r.get(c, np.nan) for c in cols} for r in rows], columns=cols)


# ------------------------------------------------------------------------------- attributes


def read_predictions(source: str | Path) -> pd.DataFrame:
    """`path` + the numeric `p_<class>` probability columns of a predictions table or run folder."""
    from artmem.io import find_table, read_table

    p = find_table(source, "predictions", "no predictions.parquet in this folder (run `artmem predict` first)")
    df = read_table(p)
    if "path" not in df.columns:
        raise ArtmemError(f"{p}: a predictions table needs a 'path' column")
    probs = [c for c in df.columns if str(c).startswith("p_") and pd.api.types.is_numeric_dtype(df[c])]
    if not probs:
        raise ArtmemError(f"{p}: no numeric p_<class> probability columns (got {list(df.columns)})")
    out = df[["path", *probs]].copy()
    out["path"] = out["path"].astype(str)
    return out.drop_duplicates("path", keep="last")


def numeric_metadata_columns(table: pd.DataFrame, exclude: tuple[str, ...] = ()) -> list[str]:
    """Numeric columns of a collection table (not bool, not all-NaN), except `exclude`."""
    cols = []
    for c in table.columns:
        if c == "path" or c in exclude:
            continue
        s = table[c]
        if pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s):
            continue
        if s.notna().any():
            cols.append(c)
    return cols


def add_attributes(
    measures: pd.DataFrame,
    collection_table: pd.DataFrame | None = None,
    predictions: list[str | Path] | tuple = (),
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Join classifier probabilities and numeric metadata onto a measures table (by `path`).

    A `p_*` column name that already exists gets the predictions folder name as a suffix.

    Returns:
        (table, {"attributes": [...], "metadata": [...]}) with the added column names.
    """
    df = measures.copy()
    added: dict[str, list[str]] = {"attributes": [], "metadata": []}
    for src in predictions:
        pred = read_predictions(src)
        tag = Path(src).stem if Path(src).is_file() else Path(src).name
        ren = {c: (f"{c}_{tag}" if c in df.columns else c) for c in pred.columns if c != "path"}
        pred = pred.rename(columns=ren)
        df = df.merge(pred, on="path", how="left")
        added["attributes"] += list(ren.values())
        missing = int(df[list(ren.values())[0]].isna().sum())
        if missing:
            logger.warning("%s: no prediction for %d of %d image(s)", src, missing, len(df))
    if collection_table is not None:
        meta_cols = [c for c in numeric_metadata_columns(collection_table) if c not in df.columns]
        if meta_cols:
            meta = collection_table[["path", *meta_cols]].drop_duplicates("path")
            meta = meta.assign(path=meta["path"].astype(str))
            df = df.merge(meta, on="path", how="left")
            added["metadata"] += meta_cols
    return df, added


def measure_groups(columns: list[str], added: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """Measure columns grouped as composition / symmetry / hue / colour / attributes / metadata."""
    cols = set(columns)
    groups = {
        "composition": [c for c in COMPOSITION_COLUMNS if c in cols],
        "symmetry": [c for c in columns if c.startswith("symmetry_")],
        "hue": [c for c in HUE_COLUMNS if c in cols],
        "colour": [c for c in COLOR_COLUMNS if c in cols],
        "attributes": [c for c in columns if c.startswith("p_")],
    }
    known = {c for g in groups.values() for c in g} | {"path"}
    extra = list((added or {}).get("metadata", []))
    groups["metadata"] = [c for c in columns if c not in known and (c in extra or not added)]
    return {k: v for k, v in groups.items() if v}


def sort_like(df: pd.DataFrame, paths: list[str]) -> pd.DataFrame:
    """Rows of `df` in the order of `paths` (rows for other paths after them)."""
    order = {p: i for i, p in enumerate(paths)}
    key = df["path"].map(order).fillna(len(order)).to_numpy()
    return df.iloc[np.argsort(key, kind="stable")].reset_index(drop=True)
