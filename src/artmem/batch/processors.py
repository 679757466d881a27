"""Processors: what a batch job does to each image, independent of the engine that runs it.

A processor is a small picklable object (sent to DataLoader workers or Ray actors) with:

    kind: str                          # result name: "scores", "features", "measures", ...
    setup(device="cpu") -> None        # load the model once per process/actor; idempotent
    load(abs_path) -> item             # decode + preprocess one image (runs in DataLoader
                                       # workers / Ray map tasks); raises ImageReadError
    collate(items) -> batch            # stack loaded items into one batch
    process(batch) -> DataFrame        # one row per item, result columns only (no `path`)
    spec() -> dict                     # JSON-able identity (model, layer, ...) for resume checks
    write_final(out, table, csv) -> [paths]  # write the merged OUT/<kind>.parquet (+ sidecars)

`BaseProcessor` implements collate (torch.stack for tensors, else a list), spec and write_final
(OUT/<kind>.parquet); subclasses override what they need. `ModelProcessor` scores or extracts
features with a zoo model, via PyTorch or an ONNX Runtime export (`backend="torch"|"onnx"|"auto"`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)


@runtime_checkable
class Processor(Protocol):
    kind: str

    def setup(self, device: str = "cpu") -> None: ...

    def load(self, abs_path: str) -> Any: ...

    def collate(self, items: list) -> Any: ...

    def process(self, batch: Any) -> pd.DataFrame: ...

    def spec(self) -> dict: ...

    def write_final(self, out: Path, table: pd.DataFrame, csv: bool = False) -> list[Path]: ...


class BaseProcessor:
    """Defaults for the protocol; subclasses set `kind` and implement `load` and `process`."""

    kind = "results"

    def setup(self, device: str = "cpu") -> None:
        return None

    def load(self, abs_path: str) -> Any:
        raise NotImplementedError

    def collate(self, items: list) -> Any:
        import torch

        if items and all(isinstance(i, torch.Tensor) for i in items):
            return torch.stack(items)
        return list(items)

    def process(self, batch: Any) -> pd.DataFrame:
        raise NotImplementedError

    def spec(self) -> dict:
        return {"processor": f"{type(self).__module__}.{type(self).__qualname__}", "kind": self.kind}

    def write_final(self, out: Path, table: pd.DataFrame, csv: bool = False) -> list[Path]:
        from artmem.batch.results import atomic_write_parquet

        out = Path(out)
        paths = [atomic_write_parquet(table, out / f"{self.kind}.parquet")]
        if csv:
            table.to_csv(out / f"{self.kind}.csv", index=False)
            paths.append(out / f"{self.kind}.csv")
        return paths


def cache_dir() -> Path:
    """artmem's cache folder: $ARTMEM_CACHE, else ~/.cache/artmem (see `artmem.usercache`)."""
    from artmem.usercache import cache_dir as user_cache_dir

    return user_cache_dir(create=True)


def _outputs_module(model, layers: list[str | None]):
    """nn.Module returning the requested outputs in order: None = `forward` (score), else a layer."""
    import torch

    class Outputs(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            named = [n for n in layers if n is not None]
            feats = self.m.extract(x, named) if named else {}
            outs = []
            for name in layers:
                if name is None:
                    outs.append(feats["score"] if "score" in named else self.m(x))
                else:
                    outs.append(feats[name])
            return tuple(outs) if len(outs) > 1 else outs[0]

    return Outputs(model).eval()


def onnx_path_for(model_name: str, layers: list[str | None], weights_id: str) -> Path:
    import torch

    tag = "+".join(n or "out" for n in layers)
    key = hashlib.sha1(f"{model_name}|{tag}|{weights_id}|torch{torch.__version__}".encode()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(model_name).stem)
    return cache_dir() / "onnx" / f"{safe}-{tag}-{key}.onnx"


def export_onnx(model, layers: list[str | None], path: Path, input_size) -> Path:
    """Export the outputs `layers` of `model` once to `path` (atomic; reused afterwards)."""
    import warnings

    import torch

    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    wrapped = _outputs_module(model, layers)
    x = torch.zeros(2, *input_size)
    names = [f"out{i}" for i in range(len(layers))]
    name = getattr(model.pretrained_cfg, "name", "model")
    logger.info("exporting %s (%s) to ONNX for faster CPU runs: once, about a minute for large "
                "models; later runs reuse %s (see `artmem cache info`)",
                name, "+".join(n or "score" for n in layers), path)
    started = time.perf_counter()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                wrapped, (x,), str(tmp), input_names=["image"], output_names=names,
                dynamic_axes={"image": {0: "batch"}, **{n: {0: "batch"} for n in names}},
                opset_version=17, dynamo=False,
            )
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            raise ArtmemError(f"ONNX export failed ({type(exc).__name__}: {exc}); use --backend torch") from exc
    os.replace(tmp, path)
    logger.info("exported %s in %.0f s (%.0f MB)", name, time.perf_counter() - started, path.stat().st_size / 1e6)
    return path


class ModelProcessor(BaseProcessor):
    """Score (`kind="scores"`) or extract one feature layer (`kind="features"`) with a zoo model.

    Args:
        model: registry name or trained checkpoint path (anything `create_model` accepts).
        kind: "scores" or "features".
        layer: feature layer for "features" (default: the model's `default_layer`).
        with_score: for "features" with a memorability model, also add a `score` column computed in
            the same forward pass (features.parquet then has path, embedding, score).
        backend: "torch", "onnx" (ONNX Runtime, CPU only) or "auto" (ONNX on CPU for models
            flagged `extra["onnx_export"]`, where it measured faster; else torch).
        threads: intra-op threads for the compute (default: all cores).
    """

    def __init__(self, model: str | os.PathLike = "resmem", kind: str = "scores", layer: str | None = None,
                 backend: str = "auto", threads: int | None = None, with_score: bool = False):
        if kind not in ("scores", "features"):
            raise ValueError(f"kind must be 'scores' or 'features', not {kind!r}")
        if backend not in ("torch", "onnx", "auto"):
            raise ArtmemError(f"--backend must be torch, onnx or auto, not {backend!r}")
        self.model_name = str(model)
        self.kind = kind
        self.layer = layer
        self.with_score = with_score and kind == "features"
        self.backend = backend
        self.threads = threads
        self._cfg = None
        self._preprocess = None
        self._model = None
        self._session = None
        self.device = None
        self.active_backend = None
        self._ready = None  # the device string setup() prepared for

    # -------------------------------------------------------------- picklable, lazily loaded
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_model"] = None
        state["_session"] = None
        state["_ready"] = None
        state["active_backend"] = None
        return state

    @property
    def cfg(self):
        if self._cfg is None:
            from artmem.models.checkpoint import is_run_path
            from artmem.models.registry import get_pretrained_cfg, is_registered

            if is_registered(self.model_name) or not is_run_path(self.model_name):
                self._cfg = get_pretrained_cfg(self.model_name)
            else:
                self._cfg = self._load_model().pretrained_cfg
        return self._cfg

    @property
    def preprocess(self):
        """The model's evaluation preprocessing (`artmem.models.preprocess.preprocess_for`)."""
        if self._preprocess is None:
            from artmem.models.preprocess import Preprocess

            self._preprocess = Preprocess.from_pretrained_cfg(self.cfg)  # a zoo name; a run sets it on load
        return self._preprocess

    def _load_model(self):
        if self._model is None:
            from artmem.models.factory import create_model
            from artmem.models.preprocess import preprocess_for

            self._model = create_model(self.model_name).eval()
            self._cfg = self._model.pretrained_cfg
            self._preprocess = preprocess_for(self._model)
        return self._model

    def _require_score(self) -> None:
        if self.cfg.output != "score":
            raise ArtmemError(
                f"model {self.model_name!r} outputs {self.cfg.output}, not a memorability score; "
                "use `artmem extract` for its features"
            )

    def resolved_layer(self) -> str | None:
        """The feature layer written (None for a score job)."""
        if self.kind == "scores":
            self._require_score()
            return None
        layer = self.layer or self.cfg.default_layer
        if layer not in self.cfg.feature_layers:
            raise ArtmemError(
                f"model {self.model_name!r} has no layer {layer!r}; layers: {', '.join(self.cfg.feature_layers)}"
            )
        return layer

    def outputs(self) -> list[tuple[str, str | None]]:
        """[(column, layer or None for the score)] computed per batch."""
        if self.kind == "scores":
            return [("score", self.resolved_layer())]
        outs = [("embedding", self.resolved_layer())]
        if self.with_score:  # one pass: the score as a named output where the model has one
            self._require_score()
            outs.append(("score", "score" if "score" in self.cfg.feature_layers else None))
        return outs

    def spec(self) -> dict:
        return {"processor": "model", "kind": self.kind, "model": self.model_name,
                "layer": self.resolved_layer(), "with_score": self.with_score}

    # -------------------------------------------------------------- protocol
    def setup(self, device: str = "cpu") -> None:
        import torch

        from artmem.runtime import resolve_device, set_torch_threads

        dev = resolve_device(device)
        if self._ready == str(dev):
            return
        set_torch_threads(self.threads)
        self.device = dev
        layers = [layer for _, layer in self.outputs()]
        _ = self.preprocess  # resolved before workers fork / the processor is shipped
        use_onnx = self.backend == "onnx" or (
            self.backend == "auto" and dev.type == "cpu" and bool(self.cfg.extra.get("onnx_export"))
        )
        if use_onnx and dev.type != "cpu":
            raise ArtmemError("--backend onnx runs on CPU only; use --backend torch (or auto) with a GPU")
        if use_onnx:
            self._session = self._onnx_session(layers)
            self._model = None  # the torch weights are not needed once the ONNX graph exists
            self.active_backend = "onnx"
        else:
            self._model = self._load_model().to(dev).to(memory_format=torch.channels_last)
            self.active_backend = "torch"
        self._ready = str(dev)
        logger.info("%s: %s backend on %s", self.model_name, self.active_backend, dev)

    def _onnx_session(self, layers):
        """ONNX Runtime session over the cached export (exported from the torch model once)."""
        import onnxruntime as ort
        import torch

        path = onnx_path_for(self.model_name, layers, self._weights_id())
        if not path.exists():
            export_onnx(self._load_model(), layers, path, self.cfg.input_size)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = self.threads or max(1, torch.get_num_threads())
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # no busy-waiting between ops: the ops are large, and spinning threads steal the cores the
        # decode workers (and, on a shared machine, other jobs) need
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def _weights_id(self) -> str:
        p = Path(self.model_name)
        if p.exists():  # a checkpoint: its size and mtime identify the weights
            files = [p] if p.is_file() else list(p.glob("*.pt"))
            return ";".join(f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}" for f in sorted(files))
        return self.cfg.source

    def load(self, abs_path: str):
        return self.preprocess.load(abs_path)

    def process(self, batch) -> pd.DataFrame:
        cols = {}
        for (column, _), arr in zip(self.outputs(), self.forward(batch), strict=True):
            if column == "score":
                cols[column] = arr.reshape(-1).astype("float64")
            else:
                cols[column] = list(arr.reshape(len(arr), -1).astype(np.float32, copy=False))
        return pd.DataFrame(cols)

    def forward(self, batch) -> list[np.ndarray]:
        """(B, 3, H, W) float tensor -> one numpy array per `outputs()` entry."""
        import torch

        from artmem.runtime import autocast

        if self._ready is None:
            self.setup(str(self.device) if self.device is not None else "cpu")
        if self.active_backend == "onnx":
            x = batch.numpy() if isinstance(batch, torch.Tensor) else np.asarray(batch, np.float32)
            return list(self._session.run(None, {"image": np.ascontiguousarray(x, dtype=np.float32)}))
        layers = [layer for _, layer in self.outputs()]
        named = [n for n in layers if n is not None]
        x = batch.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast(self.device):
            feats = self._model.extract(x, named) if named else {}
            ys = [feats[n] if n is not None else self._model(x) for n in layers] if not (
                None in layers and named) else self._joint(x, feats, layers)
        return [y.float().cpu().numpy() for y in ys]

    def _joint(self, x, feats, layers):
        """Score computed from the already-extracted features when the model allows it."""
        default = self.cfg.default_layer
        score = self._model.forward_head(feats[default]) if default in feats else self._model(x)
        return [feats[n] if n is not None else score for n in layers]

    def write_final(self, out: Path, table: pd.DataFrame, csv: bool = False) -> list[Path]:
        from artmem.batch.results import stack_vectors, write_features, write_scores

        if self.kind == "scores":
            return write_scores(out, table[["path", "score"]], csv=csv)
        vectors = stack_vectors(table["embedding"]) if len(table) else np.zeros((0, 0), np.float32)
        meta = {"model": self.model_name, "layer": self.resolved_layer(), "backend": self.active_backend}
        written = write_features(out, table["path"].tolist(), vectors, meta, csv=csv)
        if self.with_score and "score" in table.columns:
            written += write_scores(out, table[["path", "score"]], csv=csv)
        return written
