"""The explorer's FastAPI app: HTML pages (Jinja2) and the JSON API behind them.

Pages: `/` grid (search, filters, sort), `/a/{key}` one artwork (a stable key hashed from its path;
`/artwork/{id}` redirects there), `/map` embedding map, `/upload`, `/categories`, `/api` (API
index). JSON: `/api/...`
(OpenAPI description at `/openapi.json`). Images: `/files/{path}` (originals, collection members
only), `/api/artwork/{id}/thumb`, `/api/artwork/{id}/image`, `/api/artwork/{id}/map.png`.

This module only wires the parts together: middleware (`middleware.py`), error responses
(`error_handlers.py`), routes (`api_routes.py`, `upload_routes.py`, `page_routes.py`) over the
shared view logic (`explorer.py`).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from artmem.plotting import use_literal_text
from artmem.web.api_routes import CACHE_IMMUTABLE, add_api_routes
from artmem.web.data import ExplorerData
from artmem.web.engine import Engine, Indexer
from artmem.web.error_handlers import add_error_handlers
from artmem.web.explore_routes import add_explore_routes
from artmem.web.explorer import Explorer
from artmem.web.middleware import (
    LOOPBACK,
    SECURITY_HEADERS,
    SameOriginWrites,
    SecurityHeaders,
    UploadLimit,
    allowed_hosts,
)
from artmem.web.page_routes import add_page_routes, make_templates
from artmem.web.upload_routes import add_upload_routes

# what this module exported before it was split stays importable from here (commands.py uses LOOPBACK)
__all__ = ["CACHE_IMMUTABLE", "LOOPBACK", "SECURITY_HEADERS", "SecurityHeaders", "UploadLimit", "create_app"]

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent


def create_app(
    collection,
    results: str | Path | None = None,
    model: str | None = "resmem",
    runs: list[str] | tuple = (),
    device: str = "auto",
    max_upload_mb: float = 20.0,
    host: str = "127.0.0.1",
    background: bool = True,
    per_page: int = 48,
    similar_k: int = 8,
    maps: bool = True,
    engine: Engine | None = None,
    precision: str = "fp32",
) -> FastAPI:
    """Build the explorer app. The collection, the results and the models are loaded here, once.

    Args:
        collection: anything `open_collection` accepts.
        results: analysis folder (`artmem analyze -o DIR`): scores/, features/, maps/, measures/,
            predictions/; uploads kept with add=true go to DIR/uploads/.
        model: memorability model (registry name or checkpoint); "auto" = the scores table's model
            (from its job.json) else resmem; None/"none" to only browse.
        runs: trained classifier run folders whose predicted labels are shown.
        device: torch device for the models.
        max_upload_mb: upload size limit (413 above it).
        host: the host the server binds (adds it to the accepted Host headers).
        background: score/embed what the results lack in a background thread (False: do it now,
            before returning; tests use this).
        engine: a ready Engine (tests share one between apps).
        precision: of the background scoring of the collection on CPU ("fp32", "int8", "auto";
            see docs/batch.md); uploads are scored in fp32.
    """
    use_literal_text()  # category values are drawn as text in the box plots, never as mathtext
    data = ExplorerData(collection, results)
    feature_model = data.features.model if data.features is not None else None
    feature_layer = data.features.layer if data.features is not None else None
    if model == "auto":  # the scores table's own model, so uploads compare with the collection
        model = data.scores_model or "resmem"
    if engine is None:
        model_arg = None if (model in (None, "", "none")) else model
        engine = Engine(model_arg, runs, device, feature_model=feature_model,
                        feature_layer=feature_layer, maps=maps)
    comparable = data.scores_model is None or data.scores_model == engine.model_name
    if not comparable:
        logger.warning("the scores table was made with %s but uploads are scored with %s: their "
                       "percentiles compare two different models", data.scores_model, engine.model_name)
    for run, clf in zip(runs, engine.classifiers, strict=False):
        data.add_run_predictions(run, clf.name)
    indexer = Indexer(data, engine, precision=precision)
    if not background:
        indexer.run_sync()
    max_bytes = int(max_upload_mb * 1_000_000)
    explorer = Explorer(data, engine, indexer, similar_k, max_bytes)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if background:
            indexer.start()
        logger.info("explorer ready: %d images, scores: %s, model: %s on %s", data.n_rows,
                    data.score_source or "none yet", engine.model_name, engine.device)
        yield
        indexer.stop()

    app = FastAPI(
        title="artmem explorer",
        version="1",
        description="Browse a scored image collection, inspect one artwork, analyse an uploaded image.",
        docs_url=None,  # Swagger UI and ReDoc load their assets from a CDN: the app works offline
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.data, app.state.engine, app.state.indexer = data, engine, indexer
    app.state.thumbs = explorer.thumbs
    app.state.max_upload_bytes = max_bytes
    app.add_middleware(SameOriginWrites)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(host))
    app.add_middleware(UploadLimit, max_bytes=max_bytes)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = make_templates()
    app.add_middleware(SecurityHeaders)

    add_error_handlers(app, templates)
    # registration order is the order of /openapi.json and of the /api index page
    add_api_routes(app, explorer, per_page)
    add_upload_routes(app, explorer, comparable)
    add_explore_routes(app, explorer, templates)
    add_page_routes(app, explorer, templates, per_page)
    return app
