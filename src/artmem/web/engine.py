"""The models behind the explorer: loaded once, run one request at a time under a lock.

`Engine.analyze(img)` gives an image's memorability score, its embedding (for similar artworks),
its predicted labels from every trained classifier and, when `artmem.memorability` provides
one, its memorability map. `Indexer` fills in, in a background thread, the scores and embeddings
that the analysis folder does not have.
"""

from __future__ import annotations

import importlib
import io
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from artmem.errors import ArtmemError, ImageReadError

logger = logging.getLogger(__name__)


@dataclass
class Classifier:
    name: str
    model: object
    transform: Callable
    class_names: list[str]


@dataclass
class Analysis:
    score: float | None = None
    embedding: np.ndarray | None = None
    labels: list[dict] = field(default_factory=list)  # [{run, top: [{label, prob}]}]
    map_png: bytes | None = None
    timings: dict = field(default_factory=dict)


def find_map_function(model, device) -> Callable | None:
    """fn(image) -> (H, W) map from `artmem.memorability.maps`, if that capability is installed.

    Uses its `MapModel` + `memorability_map` (Khosla's multi-scale windows; fully convolutional
    for ResMem); None when the module or those names are missing.
    """
    try:
        maps = importlib.import_module("artmem.memorability.maps")
    except ImportError:
        return None
    MapModel = getattr(maps, "MapModel", None)
    compute = getattr(maps, "memorability_map", None)
    if MapModel is None or compute is None:
        return None
    try:
        mm = MapModel(model, device=device)
    except Exception as exc:  # a model the map code cannot handle: no live maps, the rest works
        logger.warning("live memorability maps unavailable for this model: %s", exc)
        return None
    return lambda img: compute(mm, img)


def overlay_png(img: Image.Image, heat, alpha: float = 0.5) -> bytes:
    """A heat map (H, W array, any range) blended over the image with the 'jet' colour map, as PNG."""
    import matplotlib

    if isinstance(heat, Image.Image):
        out = heat.convert("RGB")
    else:
        h = np.asarray(heat, dtype=np.float32)
        h = np.squeeze(h)
        if h.ndim != 2:
            raise ValueError(f"a map must be 2-D, got shape {h.shape}")
        lo, hi = float(np.nanmin(h)), float(np.nanmax(h))
        h = (h - lo) / (hi - lo) if hi > lo else np.zeros_like(h)
        rgba = matplotlib.colormaps["jet"](np.nan_to_num(h))
        colour = Image.fromarray((rgba[..., :3] * 255).astype(np.uint8)).resize(img.size, Image.BILINEAR)
        out = Image.blend(img.convert("RGB"), colour, alpha)
    buf = io.BytesIO()
    out.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def run_name(run: str | Path) -> str:
    """A short name for a classifier run: its folder name (a checkpoint file: folder/file)."""
    p = Path(str(run))
    return f"{p.parent.name}/{p.name}" if p.suffix in (".pt", ".pth", ".ckpt") else p.name or str(run)


class Engine:
    """A memorability model (optional), trained classifiers and the feature model, behind a lock.

    Args:
        model: registry name or checkpoint of a memorability model (output "score"), or None.
        runs: classifier run folders / checkpoints (`create_model(RUN)`).
        device: "auto", "cpu", "cuda"...
        feature_model: model name of precomputed features (the query embedding must come from
            the same network and layer); None means the memorability model's default layer.
        feature_layer: layer of those features.
    """

    def __init__(self, model: str | None = "resmem", runs: list[str] | tuple = (), device: str = "auto",
                 feature_model: str | None = None, feature_layer: str | None = None, maps: bool = True):
        import torch

        from artmem.models.registry import create_model
        from artmem.models.transforms import build_transform
        from artmem.runtime import resolve_device

        self.device = resolve_device(device)
        self.lock = threading.Lock()
        self.model_name = model
        self.model = None
        self.transform = None
        if model:
            self.model = create_model(model).to(self.device).eval()
            cfg = self.model.pretrained_cfg
            if cfg.output != "score":
                raise ArtmemError(
                    f"--model {model}: a memorability model is needed (its output is {cfg.output!r}, "
                    "not 'score'); pass a classifier with --run instead"
                )
            self.transform = build_transform(cfg)
        self.classifiers: list[Classifier] = []
        for run in runs:
            clf = create_model(str(run)).to(self.device).eval()
            cfg = clf.pretrained_cfg
            n = int(getattr(cfg, "num_classes", 0) or 0)
            names = list(cfg.class_names or [f"class_{i}" for i in range(n)])
            self.classifiers.append(Classifier(run_name(run), clf, build_transform(cfg), names))
        # The embedding used for similar artworks.
        self.feature_layer = feature_layer
        self.feature_model_name = feature_model
        self.feature_model = None
        self.feature_transform = None
        if feature_model and feature_model != model:
            try:
                self.feature_model = create_model(feature_model).to(self.device).eval()
                self.feature_transform = build_transform(self.feature_model.pretrained_cfg)
            except Exception as exc:
                logger.warning("feature model %s not available (%s): uploads get no similar artworks",
                               feature_model, exc)
                self.feature_model_name = None
        elif self.model is not None:
            self.feature_model, self.feature_transform = self.model, self.transform
            self.feature_model_name = model
            if not feature_model:
                self.feature_layer = self.model.pretrained_cfg.default_layer
        self.map_fn = find_map_function(self.model, self.device) if (maps and self.model is not None) else None
        self._torch = torch

    # ------------------------------------------------------------------ helpers
    @property
    def has_model(self) -> bool:
        return self.model is not None

    def _run(self, model, x):
        from artmem.runtime import autocast

        with self._torch.inference_mode(), autocast(self.device):
            return model(x.to(self.device))

    def score_batch(self, images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray | None]:
        """Scores (B,) and, when the memorability model is also the feature model, embeddings."""
        if self.model is None:
            raise ArtmemError("no memorability model loaded (server started with --model none)")
        x = self._torch.stack([self.transform(im) for im in images])
        with self.lock, self._torch.inference_mode():
            from artmem.runtime import autocast

            with autocast(self.device):
                x = x.to(self.device)
                emb = None
                if self.feature_model is self.model and self.feature_layer:
                    emb_t = self.model.extract(x, [self.feature_layer])[self.feature_layer]
                    if self.feature_layer == self.model.pretrained_cfg.default_layer:
                        s = self.model.forward_head(emb_t)
                    else:
                        s = self.model(x)
                    emb = emb_t.float().cpu().numpy()
                else:
                    s = self.model(x)
        return s.float().reshape(-1).cpu().numpy(), emb

    def embed(self, img: Image.Image) -> np.ndarray | None:
        if self.feature_model is None or not self.feature_layer:
            return None
        x = self.feature_transform(img).unsqueeze(0).to(self.device)
        with self.lock, self._torch.inference_mode():
            out = self.feature_model.extract(x, [self.feature_layer])[self.feature_layer]
        return out.float().cpu().numpy()[0]

    def classify(self, img: Image.Image, top: int = 5) -> list[dict]:
        results = []
        for clf in self.classifiers:
            x = clf.transform(img).unsqueeze(0)
            with self.lock:
                logits = self._run(clf.model, x).float().cpu()
            if logits.ndim == 1:  # a one-output model: report the value itself
                results.append({"run": clf.name, "top": [{"label": clf.class_names[0] if clf.class_names else "score",
                                                          "prob": float(logits[0])}]})
                continue
            probs = self._torch.softmax(logits[0], dim=0).numpy()
            order = np.argsort(-probs)[:top]
            results.append({"run": clf.name, "top": [
                {"label": clf.class_names[i] if i < len(clf.class_names) else str(i), "prob": float(probs[i])}
                for i in order
            ]})
        return results

    def memorability_map(self, img: Image.Image, max_side: int = 768) -> bytes | None:
        """PNG of the map blended over the image (longer side <= max_side), or None without maps."""
        if self.map_fn is None:
            return None
        with self.lock:
            heat = self.map_fn(img)
        if heat is None:
            return None
        if hasattr(heat, "detach"):
            heat = heat.detach().float().cpu().numpy()
        shown = img.copy()
        shown.thumbnail((max_side, max_side), Image.LANCZOS)
        return overlay_png(shown, heat)

    def analyze(self, img: Image.Image, with_map: bool = True) -> Analysis:
        """Everything the artwork and upload pages show about one image."""
        a = Analysis()
        t0 = time.perf_counter()
        if self.model is not None:
            s, emb = self.score_batch([img])
            a.score, a.embedding = float(s[0]), None if emb is None else emb[0]
        a.timings["score_s"] = time.perf_counter() - t0
        if a.embedding is None:
            a.embedding = self.embed(img)
        t1 = time.perf_counter()
        a.labels = self.classify(img)
        a.timings["classify_s"] = time.perf_counter() - t1
        if with_map:
            t2 = time.perf_counter()
            try:
                a.map_png = self.memorability_map(img)
            except Exception as exc:  # the map is an extra; the rest of the analysis stands
                logger.warning("memorability map failed: %s", exc)
            a.timings["map_s"] = time.perf_counter() - t2
        return a


class Indexer:
    """Background job: score and embed the images the analysis folder has no values for.

    Progress is readable at any time (`status()`); unreadable images are recorded, not fatal.
    """

    def __init__(self, data, engine: Engine, batch_size: int = 16, precision: str = "fp32"):
        self.data = data
        self.engine = engine
        self.precision = precision  # of the bulk pass (uploads and maps stay in the engine's fp32)
        self.batch_size = batch_size
        self.total = 0
        self.done = 0
        self.failed = 0
        self.state = "idle"
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def plan(self) -> tuple[np.ndarray, bool, bool]:
        """Ids needing work, whether to fill in scores, whether to compute embeddings.

        Scores are computed only when no scores table was loaded (a table's gaps are images that
        were unreadable at scoring time; they are not mixed with another run's values).
        """
        d, e = self.data, self.engine
        if e.model is None:
            return np.array([], dtype=np.int64), False, False
        need_scores = d.score_source is None
        need_emb = d.features is None and e.feature_model is e.model
        if not (need_scores or need_emb):
            return np.array([], dtype=np.int64), False, False
        return np.arange(d.n_collection), need_scores, need_emb

    def start(self) -> None:
        ids, need_scores, need_emb = self.plan()
        if len(ids) == 0:
            self.state = "complete"
            return
        self.total = len(ids)
        self.state = "running"
        self.started_at = time.time()
        self._thread = threading.Thread(target=self._work, args=(ids, need_scores, need_emb),
                                        name="artmem-indexer", daemon=True)
        self._thread.start()

    def run_sync(self) -> None:
        ids, need_scores, need_emb = self.plan()
        self.total = len(ids)
        self.started_at = time.time()
        self._work(ids, need_scores, need_emb)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _work(self, ids: np.ndarray, need_scores: bool, need_emb: bool) -> None:
        from artmem.web.thumbs import load_image_checked as load_image

        d, e = self.data, self.engine
        emb_ids, emb_vecs = [], []
        fast, precision = self._fast_path(need_emb)
        label = f"{e.model_name}" + (f", {precision}" if precision != "fp32" else "")
        if need_scores:
            d.score_source = f"being computed with {label}"
        try:
            for start in range(0, len(ids), self.batch_size):
                if self._stop.is_set():
                    self.state = "stopped"
                    return
                batch_ids, images = [], []
                for i in ids[start:start + self.batch_size]:
                    try:
                        images.append(load_image(d.collection.abs_path(d.table.at[int(i), "path"])))
                        batch_ids.append(int(i))
                    except ImageReadError as exc:
                        d.errors[int(i)] = exc.reason
                        self.failed += 1
                if images:
                    scores, emb = fast(images) if fast is not None else e.score_batch(images)
                    if need_scores:
                        with d.lock:
                            d.scores[np.array(batch_ids)] = scores
                            d.version += 1
                    if need_emb and emb is not None:
                        emb_ids.extend(batch_ids)
                        emb_vecs.append(emb)
                self.done = min(self.total, start + self.batch_size)
                if need_emb and emb_vecs and (self.done == self.total or len(emb_ids) % 256 < self.batch_size):
                    d.set_embeddings(np.array(emb_ids), np.concatenate(emb_vecs), e.model_name, e.feature_layer)
            if need_scores:
                d.score_source = f"computed at start with {label}"
            self.state = "complete"
        except Exception:  # keep the server alive; the status page shows the failure
            logger.exception("background scoring failed")
            self.state = "failed"
        finally:
            self.finished_at = time.time()

    def _fast_path(self, need_emb: bool):
        """(batch function, precision) for `--precision int8|auto` on CPU: the same ONNX Runtime
        path as `artmem score`, calibrated on a sample of the collection; (None, "fp32") otherwise."""
        e = self.engine
        if self.precision == "fp32" or e.device.type != "cpu":
            return None, "fp32"
        import torch

        from artmem.batch.processors import ModelProcessor

        layer = e.feature_layer if need_emb else None
        proc = ModelProcessor(e.model_name, "features" if layer else "scores", layer=layer, with_score=bool(layer),
                              precision=self.precision, calibration=self.data.collection.abs_paths(),
                              calibration_name=f"collection {self.data.collection.name}")
        proc.setup("cpu")

        def run(images):
            outs = dict(zip([c for c, _ in proc.outputs()], proc.forward(torch.stack([e.transform(im) for im in images])),
                            strict=True))
            emb = outs.get("embedding")
            return outs["score"].reshape(-1), None if emb is None else emb.reshape(len(emb), -1)

        return run, proc.resolved_precision()

    def status(self) -> dict:
        return {"state": self.state, "total": self.total, "done": self.done, "unreadable": self.failed}
