"""The MobileNetV2 encoder: torchvision's layout, ImageNet weights from a file, a U-Net that
trains and predicts with it."""

import numpy as np
import pytest
import torch

from napari_unet.core import UNet, UNetConfig, UserInputError, receptive_radius
from napari_unet.core.network.mobilenet import (
    ENCODER_PARAMETERS,
    MobileNetV2Encoder,
    load_imagenet_weights,
)

MOBILE = UNetConfig(encoder="mobilenet_v2", depth=5, base_features=4)

# Names and shapes in torchvision's mobilenet_v2().state_dict() (torchvision 0.15-0.29).
TORCHVISION = {
    "features.0.0.weight": (32, 3, 3, 3),
    "features.0.1.running_var": (32,),
    "features.1.conv.0.0.weight": (32, 1, 3, 3),
    "features.1.conv.1.weight": (16, 32, 1, 1),
    "features.1.conv.2.bias": (16,),
    "features.2.conv.0.0.weight": (96, 16, 1, 1),
    "features.2.conv.1.0.weight": (96, 1, 3, 3),
    "features.2.conv.2.weight": (24, 96, 1, 1),
    "features.2.conv.3.weight": (24,),
    "features.13.conv.2.weight": (96, 576, 1, 1),
    "features.17.conv.2.weight": (320, 960, 1, 1),
}


def test_the_encoder_has_torchvisions_names_shapes_and_size():
    encoder = MobileNetV2Encoder(3)
    state = encoder.state_dict()
    for name, shape in TORCHVISION.items():
        assert tuple(state[name].shape) == shape, name
    # torchvision's 3,504,872 weights less the 1280-channel head and the classifier.
    assert sum(p.numel() for p in encoder.parameters()) == ENCODER_PARAMETERS == 1_811_712
    skips = encoder(torch.randn(1, 3, 64, 96))
    assert [tuple(s.shape[1:]) for s in skips] == [
        (16, 32, 48), (24, 16, 24), (32, 8, 12), (96, 4, 6), (320, 2, 3)
    ]  # fmt: skip


def test_same_keys_as_torchvision_when_it_is_installed():
    models = pytest.importorskip("torchvision.models")
    theirs = {k: tuple(v.shape) for k, v in models.mobilenet_v2().features.state_dict().items()}
    ours = {k.removeprefix("features."): tuple(v.shape)
            for k, v in MobileNetV2Encoder(3).state_dict().items()}  # fmt: skip
    assert {k: v for k, v in theirs.items() if not k.startswith("18.")} == ours


def _imagenet_file(path):
    """A state-dict file laid out as torchvision writes mobilenet_v2's, with random weights
    (the real ImageNet file cannot be downloaded here)."""
    torch.manual_seed(3)
    source = MobileNetV2Encoder(3)
    for name, value in source.state_dict().items():
        if name.endswith("running_var"):
            value.copy_(0.5 + torch.rand_like(value))  # variances: positive
        elif value.is_floating_point():
            value.copy_(0.1 * torch.randn_like(value))
    state = dict(source.state_dict())
    state["features.18.0.weight"] = torch.randn(1280, 320, 1, 1)
    state["classifier.1.weight"] = torch.randn(1000, 1280)
    torch.save(state, path)
    return state


def test_imagenet_weights_load_from_a_file_and_adapt_to_one_channel(tmp_path):
    state = _imagenet_file(tmp_path / "mobilenet_v2.pth")
    encoder = MobileNetV2Encoder(1)
    loaded = load_imagenet_weights(encoder, tmp_path / "mobilenet_v2.pth")
    assert len(loaded) == len(encoder.state_dict())
    ours = encoder.state_dict()
    first = state["features.0.0.weight"]
    assert torch.equal(ours["features.0.0.weight"], first.sum(dim=1, keepdim=True))
    assert torch.equal(ours["features.17.conv.2.weight"], state["features.17.conv.2.weight"])
    # A grey image seen by the one-channel encoder = that grey in RGB seen by the original.
    rgb = MobileNetV2Encoder(3)
    load_imagenet_weights(rgb, tmp_path / "mobilenet_v2.pth")
    grey = torch.rand(1, 1, 32, 32)
    first_rgb = rgb.features[0][0](grey.repeat(1, 3, 1, 1))
    assert torch.allclose(encoder.features[0][0](grey), first_rgb, atol=1e-5)


def test_wrong_encoder_weight_files_are_refused_with_one_line(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        load_imagenet_weights(MobileNetV2Encoder(3), tmp_path / "missing.pth")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(UserInputError, match="not torchvision's mobilenet_v2 state dict"):
        load_imagenet_weights(MobileNetV2Encoder(3), tmp_path / "other.pth")
    (tmp_path / "text.pth").write_text("not a model")
    with pytest.raises(UserInputError, match="not a PyTorch state-dict file"):
        load_imagenet_weights(MobileNetV2Encoder(3), tmp_path / "text.pth")


def test_mobilenet_unet_takes_any_size_and_its_radius_bounds_its_reach():
    net = UNet(MOBILE)
    # Calibrate the norms on data first: at initialisation the deep features of an eval-mode
    # MobileNetV2 vanish, and so would the gradient below.
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    with torch.no_grad():
        net.train()(torch.randn(2, 1, 256, 256))
        net.eval()
        assert net(torch.randn(2, 1, 70, 45)).shape == (2, 2, 70, 45)
    size = 768
    x = torch.randn(1, 1, size, size, requires_grad=True)
    net(x)[0, :, size // 2, size // 2].sum().backward()
    touched = (x.grad[0, 0].abs() > 0).nonzero()
    reach = (touched - size // 2).abs().max().item()
    assert 0.75 * receptive_radius(MOBILE) <= reach <= receptive_radius(MOBILE)


def test_mobilenet_is_far_cheaper_per_pixel_than_the_plain_unet():
    from torch.utils.flop_counter import FlopCounterMode

    def flops(config):
        with FlopCounterMode(display=False) as counter:
            UNet(config).eval()(torch.randn(1, 1, 256, 256))
        return counter.get_total_flops()

    plain = flops(UNetConfig(depth=4, base_features=16))
    mobile = flops(UNetConfig(encoder="mobilenet_v2", depth=5, base_features=16))
    assert mobile < 0.6 * plain


def test_mobilenet_settings_that_cannot_work_are_refused():
    with pytest.raises(UserInputError, match="depth 5 and same padding"):
        UNetConfig(encoder="mobilenet_v2", depth=4)
    with pytest.raises(UserInputError, match="2D only"):
        UNetConfig(encoder="mobilenet_v2", depth=5, spatial_dims=3)
    with pytest.raises(UserInputError, match="encoder must be one of"):
        UNetConfig(encoder="resnet")


@pytest.mark.slow
def test_train_from_the_command_line_with_imagenet_encoder_weights(tmp_path, capsys):
    import tifffile
    from tests.conftest import disks_image

    from napari_unet.cli import main
    from napari_unet.core import Segmenter, load_model

    for kind in ("images", "labels"):
        (tmp_path / kind).mkdir()
    for seed in range(2):
        image, labels = disks_image(shape=(128, 128), seed=seed)
        tifffile.imwrite(tmp_path / "images" / f"{seed}.tif", image)
        tifffile.imwrite(tmp_path / "labels" / f"{seed}.tif", labels)
    _imagenet_file(tmp_path / "imagenet.pth")
    out = tmp_path / "mobile.pt"
    code = main(["train", "--images", str(tmp_path / "images"), "--labels",
                 str(tmp_path / "labels"), "--out", str(out), "--encoder", "mobilenet_v2",
                 "--encoder-weights", str(tmp_path / "imagenet.pth"), "--base-features", "8",
                 "--epochs", "3", "--steps-per-epoch", "10", "--batch-size", "4",
                 "--patch-size", "64", "--val-fraction", "0", "--lr", "3e-3"])  # fmt: skip
    assert code == 0
    assert "encoder: 306 tensors from" in capsys.readouterr().err
    model = load_model(out)
    assert model.config.encoder == "mobilenet_v2" and model.config.depth == 5
    assert model.history["encoder_weights"] == "imagenet.pth"
    assert main(["info", str(out)]) == 0
    assert "MobileNetV2 encoder" in capsys.readouterr().out
    image, labels = disks_image(shape=(128, 128), seed=5)
    predicted = Segmenter(model, device="cpu").predict(image).labels
    truth = labels > 0
    dice = 2 * ((predicted > 0) & truth).sum() / ((predicted > 0).sum() + truth.sum())
    assert dice > 0.7
    assert np.unique(predicted).size >= 2

    code = main(["train", "--images", str(tmp_path / "images"), "--labels",
                 str(tmp_path / "labels"), "--out", str(tmp_path / "x.pt"),
                 "--encoder-weights", str(tmp_path / "imagenet.pth")])  # fmt: skip
    assert code != 0
    assert "needs --encoder mobilenet_v2" in capsys.readouterr().err
