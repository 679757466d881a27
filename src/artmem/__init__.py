"""artmem: image memorability and art-classification studies on your own collections.

    >>> import artmem
    >>> artmem.score("photo.jpg")                      # DataFrame[path, score]
    >>> artmem.analyze("my_images/", "out/study")      # scores, features, measures, maps, report
    >>> artmem.list_models()
"""

from importlib import import_module

__version__ = "0.1.0"

# The public Python API mirrors the CLI. Imports are lazy so `import artmem` stays cheap and
# never pulls torch, FastAPI or Ray until a function that needs them is used.
_LAZY = {
    "score": "artmem.batch.api",
    "extract": "artmem.batch.api",
    "analyze": "artmem.report.analyze",
    "report": "artmem.report",  # the package, callable as the function (see its __init__)
    "similar": "artmem.api",
    "memorability_map": "artmem.api",
    "create_model": "artmem.models.factory",
    "list_models": "artmem.models.registry",
    "run_job": "artmem.batch.api",
    "Collection": "artmem.data.collection",
    "open_collection": "artmem.data.collection",
    "load_image": "artmem.data.images",
    "ArtmemError": "artmem.errors",
    "ImageReadError": "artmem.errors",
}


def __getattr__(name: str):
    if name == "report":
        return import_module("artmem.report")
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this hook
        return value
    raise AttributeError(f"module 'artmem' has no attribute {name!r}")


def __dir__() -> list[str]:
    """What tab completion offers: the public API, not the subpackages' internals."""
    return sorted(__all__)


__all__ = ["__version__", *_LAZY]
