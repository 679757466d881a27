"""Local web explorer over a scored collection: `artmem serve COLLECTION` (FastAPI + Jinja2).

Use `artmem.web.app.create_app(...)` to build the ASGI app from Python.
"""

from __future__ import annotations

__all__ = ["create_app"]


def create_app(*args, **kwargs):
    """Build the explorer's FastAPI app (see `artmem.web.app.create_app`)."""
    from artmem.web.app import create_app as _create_app

    return _create_app(*args, **kwargs)
