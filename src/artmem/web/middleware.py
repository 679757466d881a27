"""ASGI middleware of the explorer: security headers on every response, the upload size limit,
and the Host headers accepted."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import HTTPException
from fastapi.responses import JSONResponse

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "style-src 'self' 'unsafe-inline'; script-src 'self'; object-src 'none'; frame-ancestors 'none'",
}


def allowed_hosts(host: str) -> list[str]:
    """Host headers to accept: any when bound beyond loopback, else only loopback names (this
    refuses DNS-rebinding pages that reach a local server under a foreign name)."""
    return ["*"] if host not in LOOPBACK else list(LOOPBACK)


class SameOriginWrites:
    """Pure ASGI middleware refusing cross-site state-changing requests (POST, PUT, PATCH, DELETE)
    with 403: a page on another origin (or a sandboxed iframe, a `data:` or `file:` page, whose
    Origin is `null`) must not add uploads to the collection.

    A browser names the page's origin in `Origin` (and `Sec-Fetch-Site`); it must be this server
    itself (its Host header, which TrustedHostMiddleware has checked). A request with none of
    Origin, Sec-Fetch-Site and Referer is not from a browser page (curl, scripts) and passes.
    """

    SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") in self.SAFE_METHODS or same_origin(scope):
            return await self.app(scope, receive, send)
        response = JSONResponse({"error": "cross-site request refused: state-changing requests must come "
                                 "from the explorer's own pages"}, status_code=403)
        return await response(scope, receive, send)


def same_origin(scope) -> bool:
    """True when the request names no other site than the server's own Host."""
    headers = {k.lower(): v.decode("latin-1").strip() for k, v in scope.get("headers") or []}
    host = headers.get(b"host", "").lower()
    origin = headers.get(b"origin")
    if origin is not None:
        o = urlsplit(origin.lower())
        return origin.lower() != "null" and o.scheme in ("http", "https") and o.netloc == host != ""
    site = headers.get(b"sec-fetch-site")
    if site is not None:
        return site.lower() in ("same-origin", "none")
    referer = headers.get(b"referer")
    return referer is None or urlsplit(referer.lower()).netloc == host


def cross_origin(request, allow_null: bool = True) -> bool:
    """True when the browser says the request comes from another site (`same_origin` is False).
    Origin "null" (sandboxed frames, file:// pages, form posts under no-referrer) counts as
    cross-origin unless `allow_null`."""
    if allow_null and request.headers.get("origin") == "null":
        return False
    return not same_origin(request.scope)


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

    def __init__(self, app, max_bytes: int, paths: tuple[str, ...] = ("/api/upload",),
                 envelope_bytes: int = 64 * 1024, message: str | None = None):
        """`envelope_bytes`: allowance above `max_bytes` (the multipart envelope of an upload; 0
        for plain JSON bodies); `message`: the 413 text (default: the explorer's upload text)."""
        self.app = app
        self.max_bytes = max_bytes
        self.paths = paths
        self.envelope_bytes = envelope_bytes
        self.message = message or too_large_text(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        limit = self.max_bytes + self.envelope_bytes
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await JSONResponse({"error": self.message}, status_code=413)(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, self.message)
            return message

        return await self.app(scope, counted, send)


def too_large_text(max_bytes: int) -> str:
    return (f"upload too large: the limit is {max_bytes / 1e6:g} MB "
            "(start the server with --max-upload-mb to change it)")

