"""The report's figures for notebooks: each function takes a table (or arrays) and returns a
matplotlib Figure, drawn by the same code as `artmem report` (`artmem.report.figures`).

    >>> import artmem.plots as ap
    >>> df = pd.read_csv("out/report/tables/images.csv")     # or any DataFrame[path, score, ...]
    >>> ap.box(df, "style")
    >>> ap.tsne("out/features", scores=df)
    >>> ap.hue_wheel(df)
    >>> ap.scatter(df, "vertical_edge_ratio")

`value` names the memorability column (default "score"). Figures are not closed: Jupyter shows
them inline; `fig.savefig("box.pdf")` writes one to a file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from artmem.errors import ArtmemError

__all__ = ["box", "histogram", "hue_wheel", "quartiles", "scatter", "significance", "tsne"]

DEFAULT_LABEL = "memorability score"


def _figures():
    from artmem.report import figures

    return figures


def _shown_once(fig):
    """Closed for pyplot, so a notebook shows the returned figure once (not again as a pyplot
    figure at the end of the cell); it still displays and saves."""
    import matplotlib.pyplot as plt

    plt.close(fig)
    return fig


def __getattr__(name: str):
    if name == "BOX_CAPTION":  # what the box, the line and the dots of `box` mean
        return _figures().BOX_CAPTION
    raise AttributeError(f"module 'artmem.plots' has no attribute {name!r}")


def _need(df: pd.DataFrame, *columns: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ArtmemError(f"the table has no column(s) {missing}; columns: {list(df.columns)}")


def histogram(scores, value: str = "score", value_label: str = DEFAULT_LABEL):
    """Distribution of the scores (a DataFrame's `value` column or an array), mean and median marked."""
    s = scores[value] if isinstance(scores, pd.DataFrame) else scores
    return _shown_once(_figures().score_histogram(np.asarray(s, dtype=float), value_label))


def box(df: pd.DataFrame, column: str, value: str = "score", value_label: str = DEFAULT_LABEL):
    """Box plots of memorability per category of `column`, ordered by mean (Cetinic Fig. 1, 3);
    what the box, line and dots mean is `artmem.plots.BOX_CAPTION`."""
    from artmem.analysis.stats import category_stats

    _need(df, column, value)
    return _shown_once(_figures().box_by_category(df, column, category_stats(df, column, value), value,
                                                   value_label))


def significance(df: pd.DataFrame, column: str, value: str = "score", alpha: float = 0.05, min_n: int = 2):
    """The one-sided Welch t-test matrix between the categories of `column` (Khosla Fig. 3b)."""
    from artmem.analysis.stats import category_stats, ttest_matrix

    _need(df, column, value)
    cs = category_stats(df, column, value)
    order = cs[cs["n"] >= min_n]["category"].tolist()
    if len(order) < 2:
        raise ArtmemError(f"fewer than two categories of {column!r} with at least {min_n} images")
    tests = ttest_matrix(df[df[column].astype(str).isin(order)], column, value, order=order, alpha=alpha)
    return _shown_once(_figures().significance_matrix(tests, order, alpha, column))


def scatter(df: pd.DataFrame, measure: str, value: str = "score", value_label: str = DEFAULT_LABEL):
    """Memorability against one measure, one dot per image, with the least-squares line and
    Spearman's rho in the title (Cetinic Fig. 5)."""
    import matplotlib.pyplot as plt

    from artmem.analysis.stats import linear_fit, spearman_table

    _need(df, measure, value)
    row = spearman_table(df, [measure], value).iloc[0]
    fig, ax = plt.subplots(figsize=(4.4, 3.8))
    _figures().scatter_measure(ax, df[measure], df[value], measure, row["rho"], row["p"], int(row["n"]),
                               *linear_fit(df[measure], df[value]), value_label=value_label)
    fig.tight_layout()
    return _shown_once(fig)


def hue_wheel(df: pd.DataFrame, value: str = "score", alpha: float = 0.05):
    """Spearman rho between memorability and each of the 12 hue shares (Cetinic Fig. 6); needs the
    hue_* columns of `artmem measures`."""
    from artmem.analysis.color import HUE_COLUMNS
    from artmem.analysis.stats import spearman_table

    _need(df, value, *HUE_COLUMNS)
    t = spearman_table(df, list(HUE_COLUMNS), value, alpha)
    return _shown_once(_figures().hue_wheel(t["rho"].tolist(), t["p"].tolist(), alpha))


def quartiles(df: pd.DataFrame, attribute: str, value: str = "score"):
    """An attribute's values by memorability quartile, and the quartile means (Khosla Fig. 4)."""
    from artmem.analysis.stats import quartile_curves, quartile_table

    _need(df, attribute, value)
    return _shown_once(_figures().quartile_plot(quartile_curves(df, attribute, value),
                                                quartile_table(df, attribute, value), attribute))


def tsne(features, scores: pd.DataFrame | np.ndarray | None = None, images: list | None = None,
         perplexity: float = 30.0, seed: int = 0, value: str = "score", thumb_size: int = 48):
    """t-SNE of feature vectors with thumbnails framed by memorability (Cetinic Fig. 4).

    Args:
        features: a feature job folder / features.parquet (`artmem extract`), or an (N, D) array.
        scores: memorability per image: a DataFrame[path, value] (joined on path; needs
            `features` from a folder) or an array aligned with the vectors.
        images: thumbnails to draw, aligned with the vectors: PIL images or file paths (None:
            dots only, or the folder's images when `features` is a folder of a collection).
        perplexity: asked perplexity; lowered to (n - 1) / 3 for small sets, as the title says.
    """
    from artmem.analysis.embedding import tsne_embed, tsne_perplexity

    paths = None
    if isinstance(features, (str, Path)):
        from artmem.batch.results import read_features

        fs = read_features(features)
        vectors, paths = np.asarray(fs.vectors, dtype=float), [str(p) for p in fs.paths]
    else:
        vectors = np.asarray(features, dtype=float)
    s = None
    if isinstance(scores, pd.DataFrame):
        _need(scores, "path", value)
        if paths is None:
            raise ArtmemError("scores as a table need features from a folder (to join on path)")
        s = pd.Series(scores[value].to_numpy(dtype=float), index=scores["path"].astype(str)).reindex(paths).to_numpy()
    elif scores is not None:
        s = np.asarray(scores, dtype=float)
        if len(s) != len(vectors):
            raise ArtmemError(f"{len(s)} scores for {len(vectors)} feature vectors")
    thumbs = [None] * len(vectors)
    if images is not None:
        if len(images) != len(vectors):
            raise ArtmemError(f"{len(images)} images for {len(vectors)} feature vectors")
        thumbs = [_thumb(im, thumb_size) for im in images]
    coords = tsne_embed(vectors, perplexity=perplexity, seed=seed)
    used = tsne_perplexity(len(vectors), perplexity)
    title = f"t-SNE of {len(vectors)} images (perplexity {used:g})"
    return _shown_once(_figures().tsne_thumbnails(coords, thumbs, s, title=title))


def _thumb(image, size: int):
    from PIL import Image

    from artmem.data.images import try_load_image

    if image is None:
        return None
    img = image.copy() if isinstance(image, Image.Image) else try_load_image(image)[0]
    if img is not None:
        img.thumbnail((size, size))
    return img
