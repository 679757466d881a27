"""The models behind the explorer: loaded once, run one request at a time under a lock.

`Engine.analyze(img)` gives an image's memorability score, its embedding (for similar artworks),
its predicted labels from every trained classifier and its memorability map. Every model gets its
own evaluation preprocessing (`artmem.models.preprocess.preprocess_for`: a trained run's saved
one), so the explorer answers what `artmem predict` / `artmem score` answer for the same file.
`Indexer` fills in, in a background thread, the scores and embeddings that the analysis folder
does not have: a batch job (`run_job`) over the collection with the engine's loaded model.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from artmem.batch.processors import ModelProcessor
from artmem.errors import ArtmemError
from artmem.models.preprocess import Preprocess, preprocess_for

logger = logging.getLogger(__name__)


@dataclass
class Classifier:
    name: str
    model: object
    preprocess: Preprocess
    class_names: list[str]


@dataclass
class Analysis:
    score: float | None = None
    embedding: np.ndarray | None = None
    labels: list[dict] = field(default_factory=list)  # [{run, top: [{label, prob}]}]
    map_png: bytes | None = None
    timings: dict = field(default_factory=dict)


def find_map_function(model, device) -> Callable | None:
    """fn(image) -> (H, W) map from `artmem.memorability.maps` (Khosla's multi-scale windows; fully
    convolutional for ResMem); None for a model the map code cannot handle."""
    from artmem.memorability.maps import MapModel
    from artmem.memorability.maps import memorability_map as compute

    try:
        mm = MapModel(model, device=device)
    except Exception as exc:  # a model the map code cannot handle: no live maps, the rest works
        logger.warning("live memorability maps unavailable for this model: %s", exc)
        return None
    return lambda img: compute(mm, img)


def overlay_png(img: Image.Image, heat, alpha: float = 0.5) -> bytes:
    """A heat map (H, W array, any range) normalised to 0-1 and blended over the image with the
    colour map of `artmem.memorability.maps.MAP_CMAP` (inferno), as PNG."""
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
        rgba = matplotlib.colormaps["inferno"](np.nan_to_num(h))  # = maps.MAP_CMAP
        colour = Image.fromarray((rgba[..., :3] * 255).astype(np.uint8)).resize(img.size, Image.BILINEAR)
        out = Image.blend(img.convert("RGB"), colour, alpha)
    buf = io.BytesIO()
    out.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def run_name(run: str | Path) -> str:
    """A short name for a classifier run: its folder name (a checkpoint file: folder/file)."""
    p = Path(str(run))
    return f"{p.parent.name}/{p.name}" if p.suffix in (".safetensors", ".json") else p.name or str(run)


ImageSource = bytes | str | Path | None


def model_input(preprocess: Preprocess, img: Image.Image, source: ImageSource = None):
    """`img` preprocessed for one model. A preprocessing that decodes JPEGs at a reduced scale (a
    trained classifier's, as its training cache did) decodes `source` (the file's bytes or path)
    again, so the tensor equals the batch jobs' for the same file."""
    if preprocess.draft_size is None or source is None:
        return preprocess(img)
    if isinstance(source, bytes):
        return preprocess.decode(source)
    return preprocess.load(source)


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
        self.lock = threading.Lock()
        self.model_name = model
        self.model = None
        self.preprocess = None
        self.classifiers: list[Classifier] = []
        self.feature_layer = feature_layer
        self.feature_model_name = feature_model
        self.feature_model = None
        self.feature_preprocess = None
        self.map_fn = None
        if not (model or runs or feature_model):  # browse only: no torch to import (seconds at start)
            self.device = "none"
            return
        import torch

        from artmem.models.factory import create_model
        from artmem.runtime import resolve_device

        self.device = resolve_device(device)
        if model:
            self.model = create_model(model).to(self.device).eval()
            cfg = self.model.pretrained_cfg
            if cfg.output != "score":
                raise ArtmemError(
                    f"--model {model}: a memorability model is needed (its output is {cfg.output!r}, "
                    "not 'score'); pass a classifier with --run instead"
                )
            self.preprocess = preprocess_for(self.model)
        for run in runs:
            clf = create_model(str(run)).to(self.device).eval()
            cfg = clf.pretrained_cfg
            n = int(getattr(cfg, "num_classes", 0) or 0)
            names = list(cfg.class_names or [f"class_{i}" for i in range(n)])
            self.classifiers.append(Classifier(run_name(run), clf, preprocess_for(clf), names))
        # The embedding used for similar artworks.
        if feature_model and feature_model != model:
            try:
                self.feature_model = create_model(feature_model).to(self.device).eval()
                self.feature_preprocess = preprocess_for(self.feature_model)
            except Exception as exc:
                logger.warning("feature model %s not available (%s): uploads get no similar artworks",
                               feature_model, exc)
                self.feature_model_name = None
        elif self.model is not None:
            self.feature_model, self.feature_preprocess = self.model, self.preprocess
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

    def score_batch(self, images: list[Image.Image], sources: list[ImageSource] | None = None,
                    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Scores (B,) and, when the memorability model is also the feature model, embeddings."""
        if self.model is None:
            raise ArtmemError("no memorability model loaded (server started with --model none)")
        sources = sources or [None] * len(images)
        x = self._torch.stack([model_input(self.preprocess, im, src) for im, src in zip(images, sources, strict=True)])
        with self.lock:
            return self._score_tensor(x)

    def _score_tensor(self, x) -> tuple[np.ndarray, np.ndarray | None]:
        """The memorability model on a preprocessed batch (the caller holds the lock)."""
        from artmem.runtime import autocast

        with self._torch.inference_mode(), autocast(self.device):
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

    def embed(self, img: Image.Image, source: ImageSource = None) -> np.ndarray | None:
        if self.feature_model is None or not self.feature_layer:
            return None
        x = model_input(self.feature_preprocess, img, source).unsqueeze(0).to(self.device)
        with self.lock, self._torch.inference_mode():
            out = self.feature_model.extract(x, [self.feature_layer])[self.feature_layer]
        return out.float().cpu().numpy()[0]

    def classify(self, img: Image.Image, top: int = 5, source: ImageSource = None) -> list[dict]:
        """Top labels of every classifier run; `source` (the file's bytes or path) lets a run whose
        preprocessing decodes JPEGs at a reduced scale decode it as its training did."""
        results = []
        for clf in self.classifiers:
            x = model_input(clf.preprocess, img, source).unsqueeze(0)
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

    def analyze(self, img: Image.Image, with_map: bool = True, source: ImageSource = None) -> Analysis:
        """Everything the artwork and upload pages show about one image (`source`: its bytes or
        path, see `classify`)."""
        a = Analysis()
        t0 = time.perf_counter()
        if self.model is not None:
            s, emb = self.score_batch([img], [source])
            a.score, a.embedding = float(s[0]), None if emb is None else emb[0]
        a.timings["score_s"] = time.perf_counter() - t0
        if a.embedding is None:
            a.embedding = self.embed(img, source)
        t1 = time.perf_counter()
        a.labels = self.classify(img, source=source)
        a.timings["classify_s"] = time.perf_counter() - t1
        if with_map:
            t2 = time.perf_counter()
            try:
                a.map_png = self.memorability_map(img)
            except Exception as exc:  # the map is an extra; the rest of the analysis stands
                logger.warning("memorability map failed: %s", exc)
            a.timings["map_s"] = time.perf_counter() - t2
        return a


class _EngineModel(ModelProcessor):
    """The engine's loaded memorability model as a batch-job processor (no second copy in memory;
    each forward pass takes the engine's lock, so requests interleave with the indexing)."""

    def __init__(self, engine: Engine, with_embedding: bool):
        kind = "features" if with_embedding else "scores"
        super().__init__(engine.model_name, kind, layer=engine.feature_layer if with_embedding else None,
                         backend="torch", with_score=with_embedding)
        self.engine = engine
        self._cfg = engine.model.pretrained_cfg
        self._preprocess = engine.preprocess

    def _load_model(self):
        return self.engine.model

    def setup(self, device: str = "cpu") -> None:
        self.device = self.engine.device
        self.active_backend = "torch"
        self._ready = str(self.device)

    def forward(self, batch) -> list[np.ndarray]:
        with self.engine.lock:
            score, emb = self.engine._score_tensor(batch)
        return [emb, score] if self.kind == "features" else [score]


class _Stopped(Exception):
    """Raised between shards to end the background job when the server shuts down."""


class Indexer:
    """Background job: score and embed the images the analysis folder has no values for.

    A batch job (`run_job`, local engine, decoding in this thread) with the engine's model: its
    unreadable images are recorded; progress is readable at any time (`status()`), and the
    explorer's scores/embeddings are filled in after each finished shard.
    """

    def __init__(self, data, engine: Engine, batch_size: int = 16, shard_size: int = 64,
                 precision: str = "fp32"):
        self.data = data
        self.engine = engine
        self.precision = precision  # of the bulk pass (uploads and maps stay in the engine's fp32)
        self.batch_size = batch_size
        self.shard_size = shard_size
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
        if d.lazy:  # a large collection is scored by a batch job (`artmem score`), not by the server
            if d.score_source is None:
                logger.warning("the collection has %d rows and the results no scores: run `artmem score` "
                               "into the results folder (the server does not score large collections)", d.n_collection)
            return np.array([], dtype=np.int64), False, False
        need_scores = d.score_source is None
        need_emb = d.features is None and e.feature_model is e.model and bool(e.feature_layer)
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
        import pandas as pd

        from artmem.batch.api import run_job
        from artmem.batch.job import shard_errors_file

        d, e = self.data, self.engine
        if len(ids) == 0:
            self.state = "complete"
            return
        emb_ids: list[np.ndarray] = []
        emb_vecs: list[np.ndarray] = []
        proc, precision = self._processor(need_emb)
        label = e.model_name + (f", {precision}" if precision != "fp32" else "")
        if need_scores:
            d.score_source = f"being computed with {label}"

        def shard_done(res) -> None:
            rows = pd.read_parquet(res.path)
            got = np.array([d.id_of_path(p) for p in rows["path"]], dtype=np.int64)
            if need_scores and len(rows):
                with d.lock:
                    d.scores[got] = rows["score"].to_numpy(np.float64)
                    d.version += 1
            if need_emb and len(rows):
                emb_ids.append(got)
                emb_vecs.append(np.stack(rows["embedding"].to_numpy()).astype(np.float32))
                d.set_embeddings(np.concatenate(emb_ids), np.concatenate(emb_vecs), e.model_name, e.feature_layer)
            errs = pd.read_parquet(shard_errors_file(job_dir, proc.kind, res.shard_id))
            for path, reason in zip(errs["path"], errs["reason"], strict=True):
                d.errors[d.id_of_path(path)] = reason
            self.failed += res.n_errors
            self.done = min(self.total, self.done + res.n_ok + res.n_errors)
            if self._stop.is_set():
                raise _Stopped

        import tempfile

        try:
            with tempfile.TemporaryDirectory(prefix="artmem-indexer-") as tmp:
                job_dir = Path(tmp)
                coll = d.collection.subset(np.asarray(ids))
                run_job(coll, proc, job_dir, device=str(e.device), batch_size=self.batch_size, num_workers=0,
                        resume=False, shard_size=self.shard_size, progress=False, on_shard_done=shard_done)
            if need_scores:
                d.score_source = f"computed at start with {label}"
            self.state = "complete"
        except _Stopped:
            self.state = "stopped"
        except Exception:  # keep the server alive; the status page shows the failure
            logger.exception("background scoring failed")
            self.state = "failed"
        finally:
            self.finished_at = time.time()

    def _processor(self, need_emb: bool):
        """(processor, precision) of the bulk pass: the engine's loaded model in fp32; for
        `--precision int8|auto` on CPU the same ONNX Runtime path as `artmem score`, calibrated on a
        sample of the collection."""
        e = self.engine
        if self.precision == "fp32" or e.device.type != "cpu":
            return _EngineModel(e, with_embedding=need_emb), "fp32"
        layer = e.feature_layer if need_emb else None
        proc = ModelProcessor(e.model_name, "features" if layer else "scores", layer=layer, with_score=bool(layer),
                              precision=self.precision, calibration=self.data.collection.abs_paths(),
                              calibration_name=f"collection {self.data.collection.name}")
        return proc, proc.resolved_precision("cpu")

    def status(self) -> dict:
        return {"state": self.state, "total": self.total, "done": self.done, "unreadable": self.failed}
