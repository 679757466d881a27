"""artmem: image memorability and art-classification studies on your own collections."""

from importlib import import_module

__version__ = "0.1.0"

# The public Python API mirrors the CLI. Imports are lazy so `import artmem` stays cheap and
# never pulls torch, FastAPI or Ray until a function that needs them is used.
_LAZY = {
    "Collection": "artmem.data.collection",
    "open_collection": "artmem.data.collection",
    "load_image": "artmem.data.images",
    "ImageReadError": "artmem.errors",
    "ArtmemError": "artmem.errors",
    "create_model": "artmem.models.factory",
    "list_models": "artmem.models.registry",
    "score": "artmem.batch.api",
    "extract": "artmem.batch.api",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'artmem' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
