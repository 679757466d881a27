"""Error responses: an HTML page for browser routes, `{"error": message}` JSON for the API and
files; never a stack trace (details go to the server log)."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from artmem.errors import ArtmemError, ImageReadError

logger = logging.getLogger("artmem.web.app")  # the name these messages were always logged under


def _wants_html(request: Request) -> bool:
    path = request.url.path
    return not (path.startswith("/api") or path.startswith("/files") or path.startswith("/static")
                or path == "/openapi.json")


def add_error_handlers(app: FastAPI, templates: Jinja2Templates) -> None:
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
