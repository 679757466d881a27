"""What the pages and the JSON API show, built once per request from the data and the models:
grid pages, one artwork, similar artworks, categories. Both kinds of routes call this."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from pathlib import Path
from urllib.parse import quote, urlencode

import numpy as np
from fastapi import HTTPException

from artmem.errors import ArtmemError, ImageReadError
from artmem.web.data import ExplorerData
from artmem.web.engine import Analysis, Engine, Indexer
from artmem.web.labels import classifier_title, measure_label, path_key, percentile_text
from artmem.web.paths import is_safe_relative, safe_join
from artmem.web.plots import boxplot_svg
from artmem.web.thumbs import ThumbCache
from artmem.web.thumbs import load_image_checked as load_image

GRID_PARAMS = {"sort", "order", "page", "per_page", "q"}  # query parameters that are not filters


class LRU:
    """A small thread-safe least-recently-used cache (route handlers run in a thread pool)."""

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


def rank_of(score: float, ref: np.ndarray) -> int:
    """1 + the number of collection scores above `score` (1 = most memorable)."""
    return int(len(ref) - np.searchsorted(ref, score, side="right")) + 1  # ref is sorted


class Explorer:
    """The data, the models and the caches shared by the routes."""

    def __init__(self, data: ExplorerData, engine: Engine, indexer: Indexer, similar_k: int,
                 max_upload_bytes: int):
        self.data, self.engine, self.indexer = data, engine, indexer
        self.similar_k = similar_k
        self.max_upload_bytes = max_upload_bytes
        # on disk in RESULTS/.explorer/thumbs (or the cache folder for a large collection without
        # results); in memory only when there is neither
        disk = data.results is not None or data.lazy
        self.thumbs = ThumbCache(folder=data.cache_folder() / "thumbs" if disk else None)
        self.analyses = LRU(256)
        self.live_maps = LRU(64)  # artwork id or ("upload", sha256) -> PNG bytes
        self.svg_cache = LRU(64)
        # classifier run name -> what its panel is titled ("style · efficientnet_lite0")
        self.classifier_titles = {c.name: classifier_title(c.name, c.model) for c in engine.classifiers}

    def item_id(self, item_id: int) -> int:
        if not self.data.valid_id(item_id):
            raise HTTPException(404, f"no artwork with id {item_id}")
        return item_id

    def file_of(self, item_id: int) -> Path | str:
        """The local file of a row (checked to lie inside its root), or its URL for remote roots."""
        data = self.data
        root = data.root_of(item_id)
        rel = data.path_of(item_id)
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

    @staticmethod
    def summaries(records: list[dict], ref: np.ndarray, labels: list[str]) -> list[dict]:
        """Grid/similar entries for rows (`ExplorerData.records`: with `id` and `score`)."""
        scores = np.array([r["score"] for r in records], dtype=np.float64)
        finite = np.isfinite(scores)
        pct, ranks = np.full(len(scores), np.nan), np.zeros(len(scores), dtype=np.int64)
        if len(ref):
            at_or_below = np.searchsorted(ref, scores[finite], side="right")
            pct[finite] = 100.0 * at_or_below / len(ref)
            ranks[finite] = len(ref) - at_or_below + 1
        cols = [c for c in labels if records and c in records[0]]
        out = []
        for r, s, f, p, rk in zip(records, scores, finite, pct, ranks.tolist(), strict=True):
            key = path_key(int(r["_root"]), str(r["path"]))
            rank = rk if f and len(ref) else None
            out.append({
                "id": int(r["id"]), "key": key, "path": str(r["path"]),
                "score": float(s) if f else None, "percentile": float(p) if f and np.isfinite(p) else None,
                "percentile_text": percentile_text(float(p), rank) if f and np.isfinite(p) else "",
                "labels": {c: r[c] for c in cols if isinstance(r[c], str)},
                "url": f"/a/{key}", "thumb": f"/api/artwork/{int(r['id'])}/thumb?size=256",
            })
        return out

    def similar(self, query, exclude=None) -> list[dict]:
        """Similar artworks of a query vector, or of the collection artwork `exclude` through the
        retrieval index when `query` is None (its vector is read from the index)."""
        data = self.data
        if query is None:
            hits = data.similar_to_item(exclude, self.similar_k) if exclude is not None else None
        else:
            hits = data.similar(query, self.similar_k, exclude=exclude)
        return self.similar_entries(hits)

    def similar_entries(self, hits: list[tuple[int, float]] | None) -> list[dict]:
        data = self.data
        if not hits:
            return []
        ids = np.array([i for i, _ in hits])
        out = self.summaries(data.records(ids), data.collection_scores(), data.label_columns[:2])
        for item, (_, sim) in zip(out, hits, strict=True):
            item["similarity"] = sim
        return out

    def analysis_for(self, item_id: int) -> Analysis | None:
        """Live analysis of a collection image (classifier labels, missing embedding), cached.

        The stored score is used as is; the map is computed only when its PNG is requested.
        """
        engine = self.engine
        need_emb = (self.data.embedding_of(item_id) is None and not self.data.indexed(item_id)
                    and engine.feature_model is not None)
        if not (engine.classifiers or need_emb):
            return None
        cached = self.analyses.get(item_id)
        if cached is not None:
            return cached
        path = self.file_of(item_id)
        img = load_image(path)
        a = Analysis(labels=self.titled(engine.classify(img, source=path)),
                     embedding=engine.embed(img, path) if need_emb else None)
        self.analyses.put(item_id, a)
        return a

    def titled(self, labels: list[dict]) -> list[dict]:
        """Classifier results with the title of their panel added (what they predict, and from
        which model)."""
        return [{**p, "title": self.classifier_titles.get(p["run"], p["run"])} for p in labels]

    def live_map(self, item_id: int) -> bytes | None:
        png = self.live_maps.get(item_id)
        if png is None:
            path = self.file_of(item_id)
            try:
                png = self.engine.memorability_map(load_image(path))
            except ImageReadError as exc:  # unreadable, or too elongated to map: 422 naming the file
                raise ImageReadError(path, exc.reason) from None
            if png is not None:
                self.live_maps.put(item_id, png)
        return png

    def collection_page(self, query_params, sort: str, order: str, page: int, per_page: int) -> dict:
        """One page of the grid; every query parameter other than GRID_PARAMS filters a label column."""
        data = self.data
        filters = {k: v for k, v in query_params.items() if k not in GRID_PARAMS and v != ""}
        text = query_params.get("q", "")
        total, _ = data.page(filters, sort=sort, order=order, text=text, offset=0, limit=0)
        pages = max(1, math.ceil(total / per_page))
        page = min(max(1, page), pages)
        _, ids = data.page(filters, sort=sort, order=order, text=text, offset=(page - 1) * per_page,
                           limit=per_page)
        records = data.records(ids)
        items = self.summaries(records, data.collection_scores(), data.label_columns)
        if sort not in ("score", "path"):  # the value the grid is sorted by, shown on each card
            column, values = data.sort_source(sort)
            for item, r in zip(items, records, strict=True):
                v = r.get(column) if column is not None else values[r["id"]]
                item["sort_value"] = None if v is None or v != v else f"{v:g}" if isinstance(v, float) else str(v)
        return {"total": total, "page": page, "pages": pages, "per_page": per_page, "sort": sort,
                "order": order, "filters": filters, "q": text, "items": items,
                "scored": data.n_scored(), "indexing": self.indexer.status()}

    def artwork(self, item_id: int) -> dict:
        data, engine = self.data, self.engine
        item_id = self.item_id(item_id)
        path = data.path_of(item_id)
        score = float(data.scores[item_id])
        ref = data.collection_scores()
        finite = np.isfinite(score)
        error = data.errors.get(item_id)
        try:
            analysis = self.analysis_for(item_id)
        except ImageReadError as exc:  # the page still opens, and says what is wrong with the file
            analysis, error = None, f"this image cannot be read: {exc.reason}"
        emb = data.embedding_of(item_id)
        if emb is None and analysis is not None and not data.indexed(item_id):
            emb = analysis.embedding  # else: similar() takes the artwork's own vector from the index
        has_map = (item_id in data.maps or engine.map_fn is not None) and error is None
        rank = rank_of(score, ref) if finite else None
        pct = data.percentile(score, ref) if finite else None
        return {
            "id": item_id,
            "key": data.key_of(item_id),
            "url": f"/a/{data.key_of(item_id)}",
            "path": path,
            "source": "upload" if item_id >= data.n_collection else "collection",
            "labels": data.labels_of(item_id),
            "score": score if finite else None,
            "percentile": pct,
            "percentile_text": percentile_text(pct, rank),
            "rank": rank,
            "n_scored": int(len(ref)),
            "score_source": data.score_source,
            "model": engine.model_name,
            "measures": data.measures_of(item_id),
            "measure_names": {k: measure_label(k) for k in data.measures_of(item_id)},
            "map_url": f"/api/artwork/{item_id}/map.png" if has_map else None,
            "map_live": item_id not in data.maps and has_map,
            "predictions": analysis.labels if analysis is not None else [],
            "stored_predictions": data.stored_predictions_of(item_id),
            "similar": self.similar(emb, exclude=item_id),
            "image_url": f"/api/artwork/{item_id}/image?size=1024",
            "original_url": (f"/files/{quote(path)}" if item_id < data.n_collection else None),
            "error": error,
            "prev_id": item_id - 1 if item_id > 0 else None,
            "next_id": item_id + 1 if item_id + 1 < data.n_rows else None,
            "prev_url": f"/a/{data.key_of(item_id - 1)}" if item_id > 0 else None,
            "next_url": f"/a/{data.key_of(item_id + 1)}" if item_id + 1 < data.n_rows else None,
        }

    def id_of_key(self, key: str) -> int:
        item_id = self.data.id_of_key(key)
        if item_id is None:
            raise HTTPException(404, f"no artwork with key {key}")
        return item_id

    def categories(self, column: str | None) -> dict:
        cols = self.data.label_columns
        if not cols:
            return {"column": None, "columns": [], "categories": []}
        column = column or cols[0]
        summary = self.data.category_summary(column)
        cats = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
                for r in summary.to_dict("records")]
        return {"column": column, "columns": cols, "categories": cats,
                "boxplot_url": "/api/categories/boxplot.svg?" + urlencode({"column": column})}

    def boxplot(self, column: str) -> str:
        data = self.data
        key = (column, data.version)
        svg = self.svg_cache.get(key)
        if svg is None:
            if column not in data.label_columns:
                raise ArtmemError(f"unknown label column {column!r}")
            svg = boxplot_svg(data.scores_for(column), column,
                              f"memorability score ({self.engine.model_name or 'scores table'})")
            self.svg_cache.put(key, svg)
        return svg

    def nav(self, active: str) -> dict:
        """Template context of the navigation bar."""
        return {"nav": active, "collection_name": self.data.collection.name, "indexing": self.indexer.status(),
                "model": self.engine.model_name}
