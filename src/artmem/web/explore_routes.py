"""The embedding map (page and data), similar images by artwork, and artworks by stable key."""

from __future__ import annotations

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from artmem.web.embedding_map import EmbeddingLayout
from artmem.web.explorer import Explorer
from artmem.web.labels import path_key


def add_explore_routes(app: FastAPI, ex: Explorer, templates: Jinja2Templates) -> None:
    data = ex.data
    layout = EmbeddingLayout(data)

    @app.get("/api/map", tags=["api"], summary="2-D layout of the embeddings (UMAP or t-SNE), one point per image")
    def api_map() -> dict:
        got = layout.get()
        if got is None:
            return {"available": False, "n": 0,
                    "reason": "no embeddings: run `artmem extract` (or `artmem analyze`) into the results folder"}
        ids, xy, used = got
        rows = data.rows(ids)
        labels = {c: [None if v is None or v != v else str(v) for v in rows[c].tolist()]
                  for c in data.label_columns}
        score = rows["score"].to_numpy(dtype=np.float64)
        return {
            "available": True, "n": int(len(ids)), "layout": used,
            "ids": ids.tolist(),
            "keys": [path_key(int(r), str(p)) for r, p in zip(rows["_root"], rows["path"], strict=True)],
            "paths": rows["path"].astype(str).tolist(),
            "x": np.round(xy[:, 0], 5).tolist(), "y": np.round(xy[:, 1], 5).tolist(),
            "score": [None if not np.isfinite(s) else round(float(s), 5) for s in score],
            "labels": labels,
        }

    @app.get("/api/artwork/{item_id}/similar", tags=["api"],
             summary="The artworks most similar to one artwork (cosine similarity of the embeddings)")
    def api_similar(item_id: int, k: int = Query(8, ge=1, le=100)) -> dict:
        ex.item_id(item_id)
        emb = data.embedding_of(item_id)
        hits = data.similar(emb, k, exclude=item_id) if emb is not None else data.similar_to_item(item_id, k)
        if hits is None:
            return {"id": item_id, "similar": [], "reason": "this artwork has no embedding yet"}
        return {"id": item_id, "key": data.key_of(item_id), "similar": ex.similar_entries(hits)}

    @app.get("/api/a/{key}", tags=["api"], summary="Everything about one artwork, by its stable key")
    def api_artwork_by_key(key: str) -> dict:
        return ex.artwork(ex.id_of_key(key))

    @app.get("/map", response_class=HTMLResponse, include_in_schema=False)
    def page_map(request: Request):
        return templates.TemplateResponse(request, "map.html", {
            **ex.nav("map"), "label_columns": data.label_columns,
            "has_features": data.features is not None and len(data.features.ids) > 0})
