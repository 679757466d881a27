"""The CPU fast path shared by scores, features, maps and symmetry: a one-off ONNX export of a torch
module, cached on disk, and an ONNX Runtime session over it (fp32, or int8 via `models.quantize`).

Cache layout (`cache_dir()`; `$ARTMEM_CACHE`, else ~/.cache/artmem):

    onnx/<model>-<outputs>-<key>.onnx                     fp32 export; key = sha1(model, outputs,
                                                          weights id, torch version)[:12]
    onnx/<model>-<outputs>-<key>.int8-<calib>.onnx        int8 (static QDQ, per-channel) of that export;
                                                          calib = sha1 of the calibration images
    onnx/<model>-<outputs>-<key>.int8-<calib>.json        how it was calibrated + measured fidelity

Every file is written atomically (temporary name, then `os.replace`), so concurrent processes
(Ray actors, several jobs) never read a half-written model; an existing file is reused as is.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import warnings
from pathlib import Path

from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8", "auto")


def cache_dir() -> Path:
    """artmem's cache folder: $ARTMEM_CACHE, else ~/.cache/artmem (see `artmem.usercache`)."""
    from artmem.usercache import cache_dir as user_cache_dir

    return user_cache_dir(create=True)


def onnx_cache_dir() -> Path:
    """Where the fp32 exports and their int8 versions live (see the module docstring)."""
    return cache_dir() / "onnx"


def check_precision_name(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ArtmemError(f"--precision must be fp32, int8 or auto, not {precision!r}")
    return precision


def outputs_module(model, layers: list[str | None]):
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
    """The cached fp32 export of `layers` of `model_name` with weights `weights_id`."""
    import torch

    tag = "+".join(n or "out" for n in layers)
    key = hashlib.sha1(f"{model_name}|{tag}|{weights_id}|torch{torch.__version__}".encode()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(model_name).stem)
    return onnx_cache_dir() / f"{safe}-{tag}-{key}.onnx"


def export_module(module, path: Path, example, output_names: list[str], dynamic_spatial: bool = False,
                  label: str | None = None) -> Path:
    """Export a torch module taking one image batch `example` to `path` (atomic; reused if present).

    Args:
        module: eval-mode nn.Module, (B, 3, H, W) -> one tensor or a tuple.
        example: an input tensor of the right channel count and (for fixed-size models) size.
        output_names: one name per output.
        dynamic_spatial: also leave H and W free (fully convolutional maps at any scale).
        label: what the progress messages call it (default: the module's class name).
    """
    import torch

    path = Path(path)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_spatial else {0: "batch"}
    dyn = {"image": axes, **{n: {0: "batch"} for n in output_names}}
    if dynamic_spatial:
        dyn.update({n: {0: "batch", 1: "grid_h", 2: "grid_w"} for n in output_names})
    name = label or type(module).__name__
    logger.info("exporting %s to ONNX for faster CPU runs: once, about a minute for large models; "
                "later runs reuse %s (see `artmem cache info`)", name, path)
    started = time.perf_counter()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, (example,), str(tmp), input_names=["image"], output_names=output_names,
                              dynamic_axes=dyn, opset_version=17, dynamo=False)
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            raise ArtmemError(f"ONNX export failed ({type(exc).__name__}: {exc}); use --backend torch") from exc
    os.replace(tmp, path)
    logger.info("exported %s in %.0f s (%.0f MB)", name.split(" (")[0], time.perf_counter() - started, path.stat().st_size / 1e6)
    return path


def export_onnx(model, layers: list[str | None], path: Path, input_size) -> Path:
    """Export the outputs `layers` of a zoo model once to `path` (atomic; reused afterwards)."""
    import torch

    name = getattr(model.pretrained_cfg, "name", "model")
    return export_module(outputs_module(model, layers), path, torch.zeros(2, *input_size),
                         [f"out{i}" for i in range(len(layers))],
                         label=f"{name} ({'+'.join(n or 'score' for n in layers)})")


def make_session(path: Path, threads: int | None = None):
    """A CPU ONNX Runtime session over `path` with all graph optimisations."""
    import onnxruntime as ort
    import torch

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads or max(1, torch.get_num_threads())
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # no busy-waiting between ops: the ops are large, and spinning threads steal the cores the
    # decode workers (and, on a shared machine, other jobs) need
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def weights_id(model_name: str, source: str) -> str:
    """What identifies a model's weights: size + mtime of a checkpoint, else the registry source."""
    p = Path(model_name)
    if p.exists():
        files = [p] if p.is_file() else list(p.glob("*.pt"))
        return ";".join(f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}" for f in sorted(files))
    return source
