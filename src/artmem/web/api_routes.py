"""JSON API routes (`/api/...`) and the image routes (thumbnails, maps, box plots, originals)."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response

from artmem.errors import ImageReadError
from artmem.web.explorer import Explorer
from artmem.web.paths import safe_join
from artmem.web.thumbs import ALLOWED_SIZES, unreadable_svg

CACHE_IMMUTABLE = "public, max-age=86400"


def png_response(png: bytes) -> Response:
    return Response(png, media_type="image/png", headers={"Cache-Control": CACHE_IMMUTABLE})


def add_api_routes(app: FastAPI, ex: Explorer, per_page: int) -> None:
    data, engine = ex.data, ex.engine

    @app.get("/api/status", tags=["api"], summary="Collection, model and background-scoring status")
    def api_status() -> dict:
        return {
            "collection": {"name": data.collection.name, "root": str(data.root), "images": data.n_collection,
                           "uploads": data.n_rows - data.n_collection, "label_columns": data.label_columns},
            "scores": {"scored": data.n_scored(), "source": data.score_source,
                       "model": data.scores_model or (engine.model_name if data.score_source else None)},
            "model": engine.model_name, "device": str(engine.device),
            "classifiers": [c.name for c in engine.classifiers],
            "maps": {"stored": len(data.maps), "live": engine.map_fn is not None},
            "similar": None if data.features is None else {
                "model": data.features.model, "layer": data.features.layer, "count": int(len(data.features.ids))},
            "artefacts": data.artefacts, "indexing": ex.indexer.status(),
            "max_upload_mb": ex.max_upload_bytes / 1e6,
        }

    @app.get("/api/collection", tags=["api"], summary="One page of the grid (filters: any label column=value)")
    def api_collection(request: Request, sort: str = "score", order: str = Query("desc", pattern="^(asc|desc)$"),
                       page: int = Query(1, ge=1), per_page: int = Query(per_page, ge=1, le=500)) -> dict:
        return ex.collection_page(request.query_params, sort, order, page, per_page)

    @app.get("/api/filters", tags=["api"], summary="Label columns and their values (for filtering)")
    def api_filters() -> dict:
        return {"label_columns": data.filter_options(), "sort_keys": data.sort_keys()}

    @app.get("/api/artwork/{item_id}", tags=["api"], summary="Everything about one artwork")
    def api_artwork(item_id: int) -> dict:
        return ex.artwork(item_id)

    @app.get("/api/artwork/{item_id}/thumb", tags=["images"], summary="Thumbnail JPEG (cached)")
    def api_thumb(request: Request, item_id: int, size: int = 256):
        return _jpeg(request, item_id, size)

    @app.get("/api/artwork/{item_id}/image", tags=["images"], summary="Display-size JPEG of the image")
    def api_image(request: Request, item_id: int, size: int = 1024):
        return _jpeg(request, item_id, size)

    def _jpeg(request: Request, item_id: int, size: int) -> Response:
        ex.item_id(item_id)
        if size not in ALLOWED_SIZES:
            raise HTTPException(422, f"size must be one of {', '.join(map(str, ALLOWED_SIZES))}")
        try:
            body, tag = ex.thumbs.get(ex.file_of(item_id), size)
        except ImageReadError as exc:  # a picture that says so, where an <img> shows it (status 422)
            return Response(unreadable_svg(size), status_code=422, media_type="image/svg+xml",
                            headers={"Cache-Control": "no-cache", "X-Artmem-Error": exc.reason[:200]})
        headers = {"ETag": tag, "Cache-Control": CACHE_IMMUTABLE}
        if request.headers.get("if-none-match") == tag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="image/jpeg", headers=headers)

    @app.get("/api/artwork/{item_id}/map.png", tags=["images"], summary="Memorability map overlay (PNG)")
    def api_map(item_id: int):
        ex.item_id(item_id)
        rel = data.maps.get(item_id)
        if rel is not None and data.results is not None:
            p = safe_join(data.results / "maps", rel)
            if p is not None:
                return FileResponse(p, media_type="image/png", headers={"Cache-Control": CACHE_IMMUTABLE})
        png = ex.live_map(item_id) if engine.map_fn is not None else None
        if png is None:
            raise HTTPException(404, "no memorability map for this image (run `artmem maps` into the results folder)")
        return png_response(png)

    @app.get("/files/{rel_path:path}", tags=["images"], summary="An original file of the collection")
    def original_file(rel_path: str):
        item_id = data.id_of_path(rel_path)
        p = safe_join(data.root, rel_path) if "://" not in str(data.root) else None
        if item_id is None or p is None:
            raise HTTPException(404, "not found")
        return FileResponse(p, headers={"Cache-Control": CACHE_IMMUTABLE})

    @app.get("/api/categories", tags=["api"], summary="Score summary per value of a label column")
    def api_categories(column: str | None = None) -> dict:
        return ex.categories(column)

    @app.get("/api/categories/boxplot.svg", tags=["images"], summary="Box plot of scores per category (SVG)")
    def api_boxplot(column: str):
        return Response(ex.boxplot(column), media_type="image/svg+xml", headers={"Cache-Control": "no-cache"})
