"""The mixed int8 recipe for residual networks (models.quantize): which nodes stay fp32, that the
residual sums read the stream in fp32, and that it follows the fp32 model at least as closely as
quantizing everything (the fp32 torch module is the reference)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from artmem.models import quantize  # noqa: E402
from artmem.models.onnx_export import export_module, make_session  # noqa: E402

nn = torch.nn
BLOCKS = 16  # plain int8 re-quantizes the stream after each; its noise accumulates over them


class Block(nn.Module):
    """A ResNet bottleneck: 1x1 -> 3x3 -> 1x1, plus the input (or its 1x1 downsampling)."""

    def __init__(self, cin: int, width: int, cout: int):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(cin, width, 1), nn.Conv2d(width, width, 3, padding=1)
        self.conv3 = nn.Conv2d(width, cout, 1)
        self.down = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        y = self.conv3(torch.relu(self.conv2(torch.relu(self.conv1(x)))))
        return torch.relu(y + (self.down(x) if self.down is not None else x))


class TinyResNet(nn.Module):
    """Stem and residual blocks; returns the pooled features (where the quantization noise shows)."""

    def __init__(self, blocks: int = BLOCKS):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.blocks = nn.Sequential(Block(16, 8, 32), *[Block(32, 8, 32) for _ in range(blocks - 1)])

    def forward(self, x):
        return self.blocks(torch.relu(self.stem(x))).mean((2, 3))


@pytest.fixture(scope="module")
def resnet_files(tmp_path_factory):
    torch.manual_seed(0)
    net = TinyResNet().eval()
    d = tmp_path_factory.mktemp("int8res")
    fp32 = export_module(net, d / "res.onnx", torch.zeros(2, 3, 24, 24), ["out0"])
    rng = np.random.default_rng(0)
    # smooth images (blurred noise), as real images are locally correlated
    x = rng.normal(size=(48, 3, 24, 24)).astype(np.float32)
    x = (x + np.roll(x, 1, 2) + np.roll(x, 1, 3) + np.roll(x, (1, 1), (2, 3))) / 2
    calib, check = [x[:8], x[8:16]], x[16:]
    mixed = quantize.quantize_onnx(fp32, d / "res.int8.onnx", calib)
    with torch.no_grad():
        ref = net(torch.from_numpy(check)).numpy()
    return net, fp32, mixed, calib, check, ref


def _producers(model):
    return {o: n for n in model.graph.node for o in n.output}


def test_fp32_nodes_are_the_image_convs(resnet_files):
    _, fp32, *_ = resnet_files
    model = onnx.load(str(fp32))
    adds = quantize.residual_adds(model)
    assert len(adds) == BLOCKS  # one per block
    names = quantize.fp32_nodes(model)
    by_name = {n.name: n for n in model.graph.node}
    assert len(names) == 1  # the stem
    assert by_name[names[0]].op_type == "Conv" and by_name[names[0]].input[0] == "image"


def test_mixed_int8_sums_the_stream_in_fp32_and_keeps_block_convs_int8(resnet_files):
    _, _, mixed, *_ = resnet_files
    model = onnx.load(str(mixed))
    prod = _producers(model)
    adds = quantize.residual_adds(model)
    assert len(adds) == BLOCKS

    def dequantized(t):
        return t in prod and prod[t].op_type == "DequantizeLinear"

    for add in adds[1:]:  # the skip operand is the previous sum after an fp32 Relu; the branch is int8
        kinds = sorted(prod[i].op_type for i in add.input)
        assert kinds == ["DequantizeLinear", "Relu"], add.name
        relu = next(prod[i] for i in add.input if prod[i].op_type == "Relu")
        assert prod[relu.input[0]] in adds
    assert all(dequantized(i) for i in adds[0].input)  # block 1: branch and downsampling, both int8
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    int8_convs = [c for c in convs if dequantized(c.input[0]) and dequantized(c.input[1])]
    assert len(int8_convs) == 3 * BLOCKS + 1  # every block's three and the downsampling
    assert [c.input[0] for c in convs if c not in int8_convs] == ["image"]


def test_mixed_int8_follows_fp32_at_least_as_closely_as_plain_int8(resnet_files, tmp_path):
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    _, fp32, mixed, calib, check, ref = resnet_files
    # plain int8 of the same graph with the same calibration, written here with ONNX Runtime's API
    pre = tmp_path / "pre.onnx"
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)

    class Reader:
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            b = next(self.it, None)
            return None if b is None else {"image": b}

    plain = tmp_path / "plain.onnx"
    quantize_static(str(pre), str(plain), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, extra_options={"WeightSymmetric": True})

    def run(path):
        return make_session(path, 1).run(None, {"image": check})[0]

    np.testing.assert_allclose(run(fp32), ref, atol=1e-5)  # the export itself is exact
    err_mixed = np.abs(run(mixed) - ref).mean() / np.abs(ref).mean()
    err_plain = np.abs(run(plain) - ref).mean() / np.abs(ref).mean()
    assert err_mixed <= err_plain
    assert err_mixed < 0.01
