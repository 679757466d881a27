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
    return ["*"] if host not in LOOPBACK else [*LOOPBACK, "testserver"]


def cross_origin(request, allow_null: bool = True) -> bool:
    """True when the browser says the request comes from another site: an Origin header whose
    host differs from the Host header (forms and scripts of other pages). Origin "null" (sandboxed
    frames, file:// pages) counts as cross-origin unless `allow_null`."""
    origin = request.headers.get("origin")
    if not origin:
        return False
    if origin == "null":
        return not allow_null
    return urlsplit(origin).netloc != request.headers.get("host")


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

