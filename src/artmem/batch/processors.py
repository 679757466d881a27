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

import logging
import os
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
        from artmem.batch import storage
        from artmem.batch.results import atomic_write_parquet

        paths = [atomic_write_parquet(table, storage.join(out, f"{self.kind}.parquet"))]
        if csv:
            paths.append(storage.write_csv(table, storage.join(out, f"{self.kind}.csv")))
        return paths


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
        precision: "fp32" (default; scores equal the reference package), "int8" (ONNX Runtime static
            quantization on CPU, calibrated on `calibration`) or "auto" (int8 on a machine without
            a GPU when its measured fidelity passes, see `artmem.models.quantize`; else fp32).
        calibration: absolute paths of the job's images; int8 is calibrated on a seeded sample of
            them and checked on another (None or fewer than 8: the bundled real images).
    """

    def __init__(self, model: str | os.PathLike = "resmem", kind: str = "scores", layer: str | None = None,
                 backend: str = "auto", threads: int | None = None, with_score: bool = False,
                 precision: str = "fp32", calibration: list[str] | None = None, calibration_name: str = "collection"):
        from artmem.models.onnx_export import check_precision_name

        if kind not in ("scores", "features"):
            raise ValueError(f"kind must be 'scores' or 'features', not {kind!r}")
        if backend not in ("torch", "onnx", "auto"):
            raise ArtmemError(f"--backend must be torch, onnx or auto, not {backend!r}")
        self.precision = check_precision_name(precision)
        if precision == "int8" and backend == "torch":
            raise ArtmemError("--precision int8 runs on ONNX Runtime; use --backend onnx or auto")
        self.calibration = list(calibration) if calibration is not None else None
        self.calibration_name = calibration_name
        self._resolved = None  # (ONNX file or None for torch, precision used), fixed once decided
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
                "layer": self.resolved_layer(), "with_score": self.with_score,
                "precision": self.resolved_precision()}

    def _uses_onnx(self, dev) -> bool:
        if self.precision == "int8" or (self.precision == "auto" and dev.type == "cpu" and self.backend != "torch"):
            return True  # int8 exists only as an ONNX Runtime graph
        return self.backend == "onnx" or (
            self.backend == "auto" and dev.type == "cpu" and bool(self.cfg.extra.get("onnx_export")))

    def resolved_precision(self, device: str | None = None) -> str:
        """The precision this job computes in ("fp32" or "int8"), decided once (int8: after the
        one-off calibration; auto: after the one-off fidelity measurement)."""
        if self._resolved is None:
            self._resolve(device)
        return self._resolved[1]

    def _resolve(self, device: str | None) -> None:
        from artmem.runtime import resolve_device

        dev = resolve_device(device or (str(self.device) if self.device is not None else "auto"))
        if self.precision == "int8" and dev.type != "cpu":
            raise ArtmemError("--precision int8 runs on CPU (ONNX Runtime); use --device cpu, or fp32 on a GPU")
        if not self._uses_onnx(dev):
            self._resolved = (None, "fp32")
            return
        self._resolved = self._onnx_file([layer for _, layer in self.outputs()])

    # -------------------------------------------------------------- protocol
    def setup(self, device: str = "cpu") -> None:
        import torch

        from artmem.runtime import resolve_device, set_torch_threads

        dev = resolve_device(device)
        if self._ready == str(dev):
            return
        set_torch_threads(self.threads)
        self.device = dev
        _ = self.preprocess  # resolved before workers fork / the processor is shipped
        if self.backend == "onnx" and dev.type != "cpu":
            raise ArtmemError("--backend onnx runs on CPU only; use --backend torch (or auto) with a GPU")
        if self._resolved is None:
            self._resolve(str(dev))
        onnx_file = self._resolved[0]
        if onnx_file is not None:
            from artmem.models.onnx_export import make_session

            self._session = make_session(onnx_file, self.threads)
            self._model = None  # the torch weights are not needed once the ONNX graph exists
            self.active_backend = "onnx"
        else:
            self._model = self._load_model().to(dev).to(memory_format=torch.channels_last)
            self.active_backend = "torch"
        self._ready = str(dev)
        logger.info("%s: %s backend, %s, on %s", self.model_name, self.active_backend, self._resolved[1], dev)

    def _onnx_file(self, layers) -> tuple:
        """(ONNX file, precision) of this job: the cached fp32 export (exported from the torch
        model once) or its int8 version (calibrated once)."""
        from artmem.models.onnx_export import export_onnx, onnx_path_for, weights_id
        from artmem.models.quantize import calibration_sets, image_batches, precision_file

        path = onnx_path_for(self.model_name, layers, weights_id(self.model_name, self.cfg.source))
        if not path.exists():
            export_onnx(self._load_model(), layers, path, self.cfg.input_size)
        if self.precision == "fp32":
            return path, "fp32"
        calib, check, source = calibration_sets(self.calibration, self.calibration_name)
        kinds = ["score" if column == "score" else "features" for column, _ in self.outputs()]
        names = [layer or "score" for _, layer in self.outputs()]
        file, used, _ = precision_file(path, self.precision, calib=calib, check=check, source=source, kinds=kinds,
                                       names=names,
                                       batches_fn=lambda ps: image_batches(ps, lambda p: self.load(p).numpy()),
                                       threads=self.threads)
        return file, used

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
        meta = {"model": self.model_name, "layer": self.resolved_layer(), "backend": self.active_backend,
                "precision": self.resolved_precision()}
        written = write_features(out, table["path"].tolist(), vectors, meta, csv=csv)
        if self.with_score and "score" in table.columns:
            written += write_scores(out, table[["path", "score"]], csv=csv)
        return written

    def write_dataset_meta(self, out, rows: int, dim: int) -> list:
        """A features job left as a shard dataset still gets OUT/features.json (model, layer, dim)."""
        from artmem.batch.results import write_features_meta

        if self.kind != "features":
            return []
        meta = {"model": self.model_name, "layer": self.resolved_layer(), "backend": self.active_backend,
                "precision": self.resolved_precision()}
        return [write_features_meta(out, meta, dim, rows)]
