"""The functions `import artmem` offers besides `score`/`extract` (in `artmem.batch.api`) and
`analyze` (in `artmem.report.analyze`): thin doors onto the library with the CLI's defaults.

    >>> import artmem
    >>> artmem.report("images/", "out/report", scores="out/scores")     # written paths, report.html first
    >>> artmem.similar("out/index", "query.jpg", k=5)                    # DataFrame of the 5 nearest
    >>> m = artmem.memorability_map("photo.jpg")                          # float32 (h, w) map
"""

from __future__ import annotations

from pathlib import Path

from artmem.errors import ArtmemError


def report(collection, out: str | Path, scores=None, features=None, measures=None, maps=None,
           predictions=(), score_column: str | None = None, **options) -> list[Path]:
    """Write the HTML report (statistics, figures, tables) of a scored collection into `out`.

    Args:
        collection: image files or folders, a collection file, or a Collection.
        scores: score job folder / table (`artmem.score(..., out=...)`) or a DataFrame[path, score].
        features, measures, maps: job folders, as `artmem report` takes them (optional).
        predictions: predictions tables whose p_<class> columns become attributes.
        score_column: use this numeric collection column as memorability instead of `scores`.
        options: fields of `artmem.report.build.ReportOptions` (categories, title, top_k, ...).

    Returns:
        the written paths, report.html first.
    """
    from artmem.report.build import build_report
    from artmem.report.data import ReportOptions, load_report_data

    try:
        opts = ReportOptions(**options)
    except TypeError as exc:
        raise ArtmemError(f"report: {exc}") from None
    data = load_report_data(collection, scores=scores, features=features, measures=measures, maps=maps,
                            predictions=list(predictions), score_column=score_column)
    return build_report(data, out, opts)


def similar(index, query, k: int = 10, filter: str | None = None, out: str | Path | None = None,
            exclude_self: bool = True, device: str = "auto"):
    """The `k` images of an index most similar to `query`, as a DataFrame (rank, path, similarity,
    metadata). `query`: a path in the indexed collection, an image file, a PIL image, an image
    array (HxWx3) or a feature vector (1-D array). With `out`, also writes OUT/results.parquet and
    OUT/contact_sheet.png."""
    import numpy as np

    from artmem.retrieval import query as q

    if isinstance(query, np.ndarray) and query.ndim in (2, 3) and not (query.ndim == 2 and query.shape[0] == 1):
        from artmem.data.collection import as_pil_image

        query = as_pil_image(query)
    if out is None:
        return q.search(index, query, k=k, filter=filter, exclude_self=exclude_self, device=device)
    df, _ = q.similar(index, query, out, k=k, filter=filter, exclude_self=exclude_self, device=device)
    return df


def memorability_map(image, model: str | Path = "resmem", device: str = "auto",
                     grids: tuple[int, ...] = (3, 5, 8), method: str = "auto", map_size: int = 256):
    """The multi-scale memorability map (Khosla et al. 2015, sec. 5) of one image: float32 (h, w)
    in the model's score units, longer side `map_size`. `image`: a path, a PIL image or an array;
    a list gives a list of maps (the model is loaded once). For many images with files written,
    use `artmem memorability map`."""
    from artmem.data.collection import as_pil_image, in_memory_image
    from artmem.data.images import load_image
    from artmem.memorability import maps as mp
    from artmem.models.factory import create_model
    from artmem.runtime import resolve_device

    many = isinstance(image, (list, tuple))
    images = list(image) if many else [image]
    pil = [as_pil_image(x, i).convert("RGB") if in_memory_image(x) else load_image(x)
           for i, x in enumerate(images)]
    dev = resolve_device(device)
    mm = mp.MapModel(create_model(model).to(dev), dev, method)
    config = mp.MapConfig(grids=tuple(grids), method=method, map_size=map_size)
    result = [mp.memorability_map(mm, im, config) for im in pil]
    return result if many else result[0]
