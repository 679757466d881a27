"""Upload routes: analyse an uploaded image (`POST /api/upload`), optionally keeping it, and serve
its memorability map on request."""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi import Path as FastAPIPath

from artmem.errors import ImageReadError
from artmem.web.api_routes import png_response
from artmem.web.explorer import LRU, Explorer, rank_of
from artmem.web.limits import WorkLimit
from artmem.web.middleware import too_large_text


def _decode_checked(body: bytes, name: str):
    """Decode uploaded bytes with `decode_image`; any decoder failure becomes an ImageReadError.

    Returns:
        (RGB image, the detected format name, e.g. "JPEG").
    """
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


def add_upload_routes(app: FastAPI, ex: Explorer, comparable: bool) -> None:
    """`comparable` is False when the collection was scored with another model than the uploads."""
    data, engine, max_bytes = ex.data, ex.engine, ex.max_upload_bytes
    recent_uploads = LRU(8)  # sha256 -> (bytes, name): their maps are computed on request
    work = WorkLimit()  # decoding + models for uploads: bounded in concurrency and time

    @app.post("/api/upload", tags=["api"], summary="Analyse an uploaded image (kept only with add=true)")
    async def api_upload(request: Request,
                         file: Annotated[UploadFile, File(description="an image file")],
                         add: Annotated[bool, Form(description="keep it: copy into RESULTS/uploads")] = False,
                         ) -> dict:
        # cross-site posts are refused before this point (middleware.SameOriginWrites)
        body = await file.read(max_bytes + 1)
        if len(body) > max_bytes:
            raise HTTPException(413, too_large_text(max_bytes))
        name = Path(file.filename or "upload").name
        return await work.run(_analyze_upload, body, name, add or request.query_params.get("add") in ("1", "true"))

    def _analyze_upload(body: bytes, name: str, add: bool) -> dict:
        t0 = time.perf_counter()
        img, fmt = _decode_checked(body, name)  # type-check by decoding: ImageReadError -> 422
        a = engine.analyze(img, with_map=False, source=body)  # the map comes from its own URL (it is slow)
        digest = hashlib.sha256(body).hexdigest()
        if engine.map_fn is not None:
            recent_uploads.put(digest, (body, name))
        ref = data.collection_scores()
        result = {
            "filename": name, "width": img.width, "height": img.height, "format": fmt,
            "sha256": digest, "model": engine.model_name,
            "score": a.score, "percentile": data.percentile(a.score, ref),
            "rank": rank_of(a.score, ref) if a.score is not None else None,
            "n_scored": int(len(ref)), "labels": ex.titled(a.labels),
            "comparable": comparable,  # False: the collection was scored with another model
            "map_url": f"/api/upload/{digest}/map.png" if engine.map_fn is not None else None,
            "similar": ex.similar(a.embedding), "added": None,
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
    async def api_upload_map(sha256: Annotated[str, FastAPIPath(pattern="^[0-9a-f]{64}$")]):
        key = ("upload", sha256)
        png = ex.live_maps.get(key)
        if png is None:
            hit = recent_uploads.get(sha256)
            if hit is None or engine.map_fn is None:
                raise HTTPException(404, "no recent upload with this checksum (upload the image again)")
            png = await work.run(_upload_map, *hit)
            if png is None:
                raise HTTPException(404, "no memorability map available")
            ex.live_maps.put(key, png)
        return png_response(png)

    def _upload_map(body: bytes, name: str) -> bytes | None:
        img, _ = _decode_checked(body, name)
        try:
            return engine.memorability_map(img)  # its work is bounded by maps.bounded_map_input
        except ImageReadError as exc:  # too elongated to map: 422 naming the upload
            raise ImageReadError(name, exc.reason) from None
