"""HTML pages (Jinja2): the grid, one artwork, upload, categories and the API index."""

from __future__ import annotations

import math
from pathlib import Path
from urllib.parse import urlencode

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from artmem.report.conventions import BOX_CAPTION
from artmem.web.explorer import Explorer
from artmem.web.labels import measure_label, percentile_text

TEMPLATES_DIR = Path(__file__).parent / "templates"


def _fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=TEMPLATES_DIR)
    templates.env.filters["fmt"] = _fmt
    templates.env.filters["measure_label"] = measure_label
    templates.env.filters["percentile_text"] = percentile_text
    return templates


def add_page_routes(app: FastAPI, ex: Explorer, templates: Jinja2Templates, per_page: int) -> None:
    data = ex.data

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page_grid(request: Request, sort: str = "score", order: str = Query("desc", pattern="^(asc|desc)$"),
                  page: int = Query(1, ge=1), per_page: int = Query(per_page, ge=1, le=500)):
        result = ex.collection_page(request.query_params, sort, order, page, per_page)
        base = {k: v for k, v in request.query_params.items() if k != "page"}

        def page_url(n: int) -> str:
            return "/?" + urlencode({**base, "page": n})

        ctx = {**ex.nav("grid"), **result, "options": data.filter_options(),
               "sort_keys": data.sort_keys(), "sort_labels": data.sort_labels(), "page_url": page_url,
               "n_total": data.n_rows}
        return templates.TemplateResponse(request, "grid.html", ctx)

    @app.get("/a/{key}", response_class=HTMLResponse, include_in_schema=False)
    def page_artwork(request: Request, key: str):
        return templates.TemplateResponse(request, "artwork.html",
                                          {**ex.nav("artwork"), "a": ex.artwork(ex.id_of_key(key))})

    @app.get("/artwork/{item_id}", include_in_schema=False)
    def page_artwork_by_row(item_id: int):
        """Row-number URLs of earlier versions: redirected to the stable one (by path hash)."""
        return RedirectResponse(f"/a/{data.key_of(ex.item_id(item_id))}", status_code=307)

    @app.get("/upload", response_class=HTMLResponse, include_in_schema=False)
    def page_upload(request: Request):
        return templates.TemplateResponse(request, "upload.html", {
            **ex.nav("upload"), "max_mb": ex.max_upload_bytes / 1e6, "can_add": data.results is not None,
            "has_model": ex.engine.has_model})

    @app.get("/categories", response_class=HTMLResponse, include_in_schema=False)
    def page_categories(request: Request, column: str | None = None):
        cats = ex.categories(column)
        svg = ex.boxplot(cats["column"]) if cats["column"] else ""
        return templates.TemplateResponse(request, "categories.html", {**ex.nav("categories"), **cats, "svg": svg,
                                                                       "box_caption": BOX_CAPTION})

    @app.get("/api", response_class=HTMLResponse, include_in_schema=False)
    def page_api(request: Request):
        schema = app.openapi()
        routes = [(method.upper(), path, op.get("summary", ""))
                  for path, ops in schema["paths"].items() for method, op in ops.items()]
        base = str(request.base_url).rstrip("/")  # the address this server was reached at
        return templates.TemplateResponse(request, "api.html", {**ex.nav("api"), "routes": routes, "base": base})
