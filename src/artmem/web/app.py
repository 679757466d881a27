"""The explorer's FastAPI app: HTML pages (Jinja2) and the JSON API behind them.

Pages: `/` grid, `/artwork/{id}`, `/upload`, `/categories`, `/api` (API index). JSON: `/api/...`
(OpenAPI description at `/openapi.json`). Images: `/files/{path}` (originals, collection members
only), `/api/artwork/{id}/thumb`, `/api/artwork/{id}/image`, `/api/artwork/{id}/map.png`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode, urlsplit

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi import Path as FastAPIPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from artmem.errors import ArtmemError, ImageReadError
from artmem.web.data import ExplorerData
from artmem.web.engine import Analysis, Engine, Indexer
from artmem.web.paths import is_safe_relative, safe_join
from artmem.web.plots import boxplot_svg
from artmem.web.thumbs import ALLOWED_SIZES, ThumbCache
from artmem.web.thumbs import load_image_checked as load_image

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
CACHE_IMMUTABLE = "public, max-age=86400"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "style-src 'self' 'unsafe-inline'; script-src 'self'; object-src 'none'; frame-ancestors 'none'",
}


class SecurityHeaders:
    """Pure ASGI middleware adding SECURITY_HEADERS to every response (cheaper than
    `@app.middleware("http")`, which wraps each response in extra tasks and streams)."""

    _raw = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self._raw if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return await self.app(scope, receive, send_with_headers)


class UploadLimit:
    """ASGI middleware: refuse upload bodies above `max_bytes` with 413 before they are parsed.

    A declared Content-Length above the limit is refused without reading; a chunked body is
    counted as it streams and cut off at the limit.
    """

    def __init__(self, app, max_bytes: int, paths: tuple[str, ...] = ("/api/upload",)):
        self.app = app
        self.max_bytes = max_bytes
        self.paths = paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        limit = self.max_bytes + 64 * 1024  # room for the multipart envelope
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await _too_large(self.max_bytes)(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, _too_large_text(self.max_bytes))
            return message

        return await self.app(scope, counted, send)


def _too_large_text(max_bytes: int) -> str:
    return (f"upload too large: the limit is {max_bytes / 1e6:g} MB "
            "(start the server with --max-upload-mb to change it)")


def _too_large(max_bytes: int) -> JSONResponse:
    return JSONResponse({"error": _too_large_text(max_bytes)}, status_code=413)


class _LRU:
    def __init__(self, n: int):
        self.n, self.items, self.lock = n, OrderedDict(), threading.Lock()

    def get(self, key):
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        return None

    def put(self, key, value):
        with self.lock:
            self.items[key] = value
            while len(self.items) > self.n:
                self.items.popitem(last=False)


def _wants_html(request: Request) -> bool:
    path = request.url.path
    return not (path.startswith("/api") or path.startswith("/files") or path.startswith("/static")
                or path == "/openapi.json")


def _decode_checked(body: bytes, name: str):
    """Decode uploaded bytes with `decode_image`; any decoder failure becomes an ImageReadError.

    Returns:
        (RGB image, the detected format name, e.g. "JPEG").
    """
    import io

    from PIL import Image

    from artmem.data.images import decode_image

    try:
        img = decode_image(body, name)
        with Image.open(io.BytesIO(body)) as probe:
            fmt = probe.format or "unknown"
    except ImageReadError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageReadError(name, f"truncated or corrupt image data ({exc})") from None
    return img, fmt


def _fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


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
    """
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
    indexer = Indexer(data, engine)
    if not background:
        indexer.run_sync()
    thumbs = ThumbCache()
    analyses = _LRU(256)
    live_maps = _LRU(64)
    recent_uploads = _LRU(8)  # sha256 -> (bytes, name): their maps are computed on request
    max_bytes = int(max_upload_mb * 1_000_000)
    svg_cache = _LRU(64)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if background:
            indexer.start()
        logger.info("explorer ready: %d images, scores: %s, model: %s on %s", len(data.table),
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
    app.state.thumbs = thumbs
    app.state.max_upload_bytes = max_bytes
    allowed = ["*"] if host not in LOOPBACK else ["127.0.0.1", "localhost", "::1", "[::1]", "testserver"]
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed)
    app.add_middleware(UploadLimit, max_bytes=max_bytes)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["fmt"] = _fmt

    app.add_middleware(SecurityHeaders)

    # ------------------------------------------------------------------ errors
    def _error(request: Request, status: int, message: str):
        if _wants_html(request):
            return templates.TemplateResponse(
                request, "error.html", {"status": status, "message": message, "nav": ""},
                status_code=status)
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and message == "Not Found":
            message = "not found"
        return _error(request, exc.status_code, message)

    @app.exception_handler(ImageReadError)
    async def image_error(request: Request, exc: ImageReadError):
        return _error(request, 422, f"{Path(exc.path).name}: {exc.reason}")

    @app.exception_handler(ArtmemError)
    async def user_error(request: Request, exc: ArtmemError):
        return _error(request, 400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
            parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
        return _error(request, 422, "invalid request: " + "; ".join(parts))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        logger.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(request, 500, "internal server error (details are in the server log)")

    # ------------------------------------------------------------------ helpers
    def _item_id(item_id: int) -> int:
        if not data.valid_id(item_id):
            raise HTTPException(404, f"no artwork with id {item_id}")
        return item_id

    def _file_of(item_id: int) -> Path | str:
        """The local file of a row (checked to lie inside its root), or its URL for remote roots."""
        root = data.root_of(item_id)
        rel = str(data.table.at[item_id, "path"])
        if root is None:
            raise HTTPException(404, "image not available")
        if "://" in str(root) and not str(root).startswith("file://"):
            if not is_safe_relative(rel):
                raise HTTPException(404, f"image path outside the collection: {rel}")
            return data.collection.abs_path(rel)
        p = safe_join(root, rel)
        if p is None:
            raise HTTPException(404, f"image file missing or outside the collection: {rel}")
        return p

    def _summaries(chunk, ref: np.ndarray, labels: list[str]) -> list[dict]:
        """Grid/similar entries for rows with `id` and `score` (vectorised: grids stay fast)."""
        scores = chunk["score"].to_numpy(dtype=np.float64)
        finite = np.isfinite(scores)
        pct = np.full(len(scores), np.nan)
        if len(ref):
            pct[finite] = 100.0 * np.searchsorted(ref, scores[finite], side="right") / len(ref)
        cols = [c for c in labels if c in chunk.columns]
        records = chunk[["id", "path", *cols]].to_dict("records")
        return [{
            "id": int(r["id"]), "path": str(r["path"]),
            "score": float(s) if f else None, "percentile": float(p) if f and np.isfinite(p) else None,
            "labels": {c: r[c] for c in cols if isinstance(r[c], str)},
            "url": f"/artwork/{int(r['id'])}", "thumb": f"/api/artwork/{int(r['id'])}/thumb?size=256",
        } for r, s, f, p in zip(records, scores, finite, pct, strict=True)]

    def _similar(query, exclude=None) -> list[dict]:
        if query is None:
            return []
        hits = data.similar(query, similar_k, exclude=exclude)
        if not hits:
            return []
        ids = np.array([i for i, _ in hits])
        chunk = data.rows(ids)
        out = _summaries(chunk, data.collection_scores(), data.label_columns[:2])
        for item, (_, sim) in zip(out, hits, strict=True):
            item["similarity"] = sim
        return out

    def _analysis_for(item_id: int) -> Analysis | None:
        """Live analysis of a collection image (classifier labels, missing embedding), cached.

        The stored score is used as is; the map is computed only when its PNG is requested.
        """
        need_emb = data.embedding_of(item_id) is None and engine.feature_model is not None
        if not (engine.classifiers or need_emb):
            return None
        cached = analyses.get(item_id)
        if cached is not None:
            return cached
        img = load_image(_file_of(item_id))
        a = Analysis(labels=engine.classify(img), embedding=engine.embed(img) if need_emb else None)
        analyses.put(item_id, a)
        return a

    def _live_map(item_id: int) -> bytes | None:
        png = live_maps.get(item_id)
        if png is None:
            png = engine.memorability_map(load_image(_file_of(item_id)))
            if png is not None:
                live_maps.put(item_id, png)
        return png

    def _collection_query(request: Request, sort: str, order: str, page: int, per_page_: int) -> dict:
        reserved = {"sort", "order", "page", "per_page"}
        filters = {k: v for k, v in request.query_params.items() if k not in reserved and v != ""}
        ids = data.query(filters, sort=sort, order=order)
        total = len(ids)
        pages = max(1, math.ceil(total / per_page_))
        page = min(max(1, page), pages)
        chunk = data.rows(ids[(page - 1) * per_page_: page * per_page_])
        ref = data.collection_scores()
        items = _summaries(chunk, ref, data.label_columns)
        return {"total": total, "page": page, "pages": pages, "per_page": per_page_, "sort": sort,
                "order": order, "filters": filters, "items": items,
                "scored": int(np.isfinite(data.scores).sum()), "indexing": indexer.status()}

    def _artwork(item_id: int) -> dict:
        item_id = _item_id(item_id)
        row = data.table.iloc[item_id]
        score = float(data.scores[item_id])
        ref = data.collection_scores()
        finite = np.isfinite(score)
        rank = int((ref > score).sum()) + 1 if finite else None
        analysis = _analysis_for(item_id)
        emb = data.embedding_of(item_id)
        if emb is None and analysis is not None:
            emb = analysis.embedding
        has_map = item_id in data.maps or engine.map_fn is not None
        return {
            "id": item_id,
            "path": str(row["path"]),
            "source": "upload" if item_id >= data.n_collection else "collection",
            "labels": data.labels_of(item_id),
            "score": score if finite else None,
            "percentile": data.percentile(score, ref) if finite else None,
            "rank": rank,
            "n_scored": int(len(ref)),
            "score_source": data.score_source,
            "model": engine.model_name,
            "measures": data.measures_of(item_id),
            "map_url": f"/api/artwork/{item_id}/map.png" if has_map else None,
            "map_live": item_id not in data.maps and has_map,
            "predictions": analysis.labels if analysis is not None else [],
            "stored_predictions": data.stored_predictions_of(item_id),
            "similar": _similar(emb, exclude=item_id),
            "image_url": f"/api/artwork/{item_id}/image?size=1024",
            "original_url": (f"/files/{row['path']}" if item_id < data.n_collection else None),
            "error": data.errors.get(item_id),
            "prev_id": item_id - 1 if item_id > 0 else None,
            "next_id": item_id + 1 if item_id + 1 < len(data.table) else None,
        }

    def _categories(column: str | None) -> dict:
        cols = data.label_columns
        if not cols:
            return {"column": None, "columns": [], "categories": []}
        column = column or cols[0]
        summary = data.category_summary(column)
        cats = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
                for r in summary.to_dict("records")]
        return {"column": column, "columns": cols, "categories": cats,
                "boxplot_url": "/api/categories/boxplot.svg?" + urlencode({"column": column})}

    def _boxplot(column: str) -> str:
        key = (column, data.version)
        svg = svg_cache.get(key)
        if svg is None:
            if column not in data.label_columns:
                raise ArtmemError(f"unknown label column {column!r}")
            svg = boxplot_svg(data.scores_for(column), column,
                              f"memorability score ({engine.model_name or 'scores table'})")
            svg_cache.put(key, svg)
        return svg

    def _nav(active: str) -> dict:
        return {"nav": active, "collection_name": data.collection.name, "indexing": indexer.status(),
                "model": engine.model_name}

    # ------------------------------------------------------------------ JSON API
    @app.get("/api/status", tags=["api"], summary="Collection, model and background-scoring status")
    def api_status() -> dict:
        return {
            "collection": {"name": data.collection.name, "root": str(data.root), "images": data.n_collection,
                           "uploads": len(data.table) - data.n_collection, "label_columns": data.label_columns},
            "scores": {"scored": int(np.isfinite(data.scores).sum()), "source": data.score_source,
                       "model": data.scores_model or (engine.model_name if data.score_source else None)},
            "model": engine.model_name, "device": str(engine.device),
            "classifiers": [c.name for c in engine.classifiers],
            "maps": {"stored": len(data.maps), "live": engine.map_fn is not None},
            "similar": None if data.features is None else {
                "model": data.features.model, "layer": data.features.layer, "count": int(len(data.features.ids))},
            "artefacts": data.artefacts, "indexing": indexer.status(),
            "max_upload_mb": max_bytes / 1e6,
        }

    @app.get("/api/collection", tags=["api"], summary="One page of the grid (filters: any label column=value)")
    def api_collection(request: Request, sort: str = "score", order: str = Query("desc", pattern="^(asc|desc)$"),
                       page: int = Query(1, ge=1), per_page: int = Query(per_page, ge=1, le=500)) -> dict:
        return _collection_query(request, sort, order, page, per_page)

    @app.get("/api/filters", tags=["api"], summary="Label columns and their values (for filtering)")
    def api_filters() -> dict:
        return {"label_columns": data.filter_options(), "sort_keys": ["score", "path", *data.numeric_columns()]}

    @app.get("/api/artwork/{item_id}", tags=["api"], summary="Everything about one artwork")
    def api_artwork(item_id: int) -> dict:
        return _artwork(item_id)

    @app.get("/api/artwork/{item_id}/thumb", tags=["images"], summary="Thumbnail JPEG (cached)")
    def api_thumb(request: Request, item_id: int, size: int = 256):
        return _jpeg(request, item_id, size)

    @app.get("/api/artwork/{item_id}/image", tags=["images"], summary="Display-size JPEG of the image")
    def api_image(request: Request, item_id: int, size: int = 1024):
        return _jpeg(request, item_id, size)

    def _jpeg(request: Request, item_id: int, size: int) -> Response:
        _item_id(item_id)
        if size not in ALLOWED_SIZES:
            raise HTTPException(422, f"size must be one of {', '.join(map(str, ALLOWED_SIZES))}")
        path = _file_of(item_id)
        body, tag = thumbs.get(path, size)
        headers = {"ETag": tag, "Cache-Control": CACHE_IMMUTABLE}
        if request.headers.get("if-none-match") == tag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="image/jpeg", headers=headers)

    @app.get("/api/artwork/{item_id}/map.png", tags=["images"], summary="Memorability map overlay (PNG)")
    def api_map(item_id: int):
        _item_id(item_id)
        rel = data.maps.get(item_id)
        if rel is not None and data.results is not None:
            p = safe_join(data.results / "maps", rel)
            if p is not None:
                return FileResponse(p, media_type="image/png", headers={"Cache-Control": CACHE_IMMUTABLE})
        png = _live_map(item_id) if engine.map_fn is not None else None
        if png is None:
            raise HTTPException(404, "no memorability map for this image (run `artmem maps` into the results folder)")
        return Response(png, media_type="image/png", headers={"Cache-Control": CACHE_IMMUTABLE})

    @app.get("/files/{rel_path:path}", tags=["images"], summary="An original file of the collection")
    def original_file(rel_path: str):
        item_id = data.id_of_path(rel_path)
        p = safe_join(data.root, rel_path) if "://" not in str(data.root) else None
        if item_id is None or p is None:
            raise HTTPException(404, "not found")
        return FileResponse(p, headers={"Cache-Control": CACHE_IMMUTABLE})

    @app.get("/api/categories", tags=["api"], summary="Score summary per value of a label column")
    def api_categories(column: str | None = None) -> dict:
        return _categories(column)

    @app.get("/api/categories/boxplot.svg", tags=["images"], summary="Box plot of scores per category (SVG)")
    def api_boxplot(column: str):
        return Response(_boxplot(column), media_type="image/svg+xml", headers={"Cache-Control": "no-cache"})

    @app.post("/api/upload", tags=["api"], summary="Analyse an uploaded image (kept only with add=true)")
    async def api_upload(request: Request,
                         file: Annotated[UploadFile, File(description="an image file")],
                         add: Annotated[bool, Form(description="keep it: copy into RESULTS/uploads")] = False,
                         ) -> dict:
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
            raise HTTPException(403, "cross-origin uploads are refused")
        body = await file.read(max_bytes + 1)
        if len(body) > max_bytes:
            raise HTTPException(413, _too_large_text(max_bytes))
        name = Path(file.filename or "upload").name
        return await run_in_threadpool(_analyze_upload, body, name, add or request.query_params.get("add") in ("1", "true"))

    def _analyze_upload(body: bytes, name: str, add: bool) -> dict:
        import hashlib

        t0 = time.perf_counter()
        img, fmt = _decode_checked(body, name)  # type-check by decoding: ImageReadError -> 422
        a = engine.analyze(img, with_map=False)  # the map comes from its own URL (it is slow)
        digest = hashlib.sha256(body).hexdigest()
        if engine.map_fn is not None:
            recent_uploads.put(digest, (body, name))
        ref = data.collection_scores()
        result = {
            "filename": name, "width": img.width, "height": img.height, "format": fmt,
            "sha256": digest, "model": engine.model_name,
            "score": a.score, "percentile": data.percentile(a.score, ref),
            "rank": (int((ref > a.score).sum()) + 1) if a.score is not None else None,
            "n_scored": int(len(ref)), "labels": a.labels,
            "comparable": comparable,  # False: the collection was scored with another model
            "map_url": f"/api/upload/{digest}/map.png" if engine.map_fn is not None else None,
            "similar": _similar(a.embedding), "added": None,
        }
        if add:
            top = {p["run"]: p["top"][0]["label"] for p in a.labels if p["top"]}
            new_id, created = data.add_upload(body, fmt, name, a.score, top)
            if a.embedding is not None and data.features is not None:
                with data.lock:
                    f = data.features
                    data.set_embeddings(np.append(f.ids, new_id), np.vstack([f.vectors, a.embedding[None]]),
                                        f.model, f.layer)
            result["added"] = {"id": new_id, "url": f"/artwork/{new_id}", "created": created}
        result["timings"] = {**{k: round(v, 4) for k, v in a.timings.items()},
                             "total_s": round(time.perf_counter() - t0, 4)}
        return result

    @app.get("/api/upload/{sha256}/map.png", tags=["images"],
             summary="Memorability map of a recent upload (computed on request)")
    def api_upload_map(sha256: Annotated[str, FastAPIPath(pattern="^[0-9a-f]{64}$")]):
        key = ("upload", sha256)
        png = live_maps.get(key)
        if png is None:
            hit = recent_uploads.get(sha256)
            if hit is None or engine.map_fn is None:
                raise HTTPException(404, "no recent upload with this checksum (upload the image again)")
            body, name = hit
            img, _ = _decode_checked(body, name)
            png = engine.memorability_map(img)
            if png is None:
                raise HTTPException(404, "no memorability map available")
            live_maps.put(key, png)
        return Response(png, media_type="image/png", headers={"Cache-Control": CACHE_IMMUTABLE})

    # ------------------------------------------------------------------ HTML pages
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page_grid(request: Request, sort: str = "score", order: str = Query("desc", pattern="^(asc|desc)$"),
                  page: int = Query(1, ge=1), per_page: int = Query(per_page, ge=1, le=500)):
        result = _collection_query(request, sort, order, page, per_page)
        base = {k: v for k, v in request.query_params.items() if k != "page"}

        def page_url(n: int) -> str:
            return "/?" + urlencode({**base, "page": n})

        ctx = {**_nav("grid"), **result, "options": data.filter_options(),
               "sort_keys": ["score", "path", *data.numeric_columns()], "page_url": page_url,
               "n_total": len(data.table)}
        return templates.TemplateResponse(request, "grid.html", ctx)

    @app.get("/artwork/{item_id}", response_class=HTMLResponse, include_in_schema=False)
    def page_artwork(request: Request, item_id: int):
        return templates.TemplateResponse(request, "artwork.html", {**_nav("artwork"), "a": _artwork(item_id)})

    @app.get("/upload", response_class=HTMLResponse, include_in_schema=False)
    def page_upload(request: Request):
        return templates.TemplateResponse(request, "upload.html", {
            **_nav("upload"), "max_mb": max_bytes / 1e6, "can_add": data.results is not None,
            "has_model": engine.has_model})

    @app.get("/categories", response_class=HTMLResponse, include_in_schema=False)
    def page_categories(request: Request, column: str | None = None):
        cats = _categories(column)
        svg = _boxplot(cats["column"]) if cats["column"] else ""
        return templates.TemplateResponse(request, "categories.html", {**_nav("categories"), **cats, "svg": svg})

    @app.get("/api", response_class=HTMLResponse, include_in_schema=False)
    def page_api(request: Request):
        schema = app.openapi()
        routes = [(method.upper(), path, op.get("summary", ""))
                  for path, ops in schema["paths"].items() for method, op in ops.items()]
        return templates.TemplateResponse(request, "api.html", {**_nav("api"), "routes": routes})

    return app
