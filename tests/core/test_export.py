"""TorchScript and ONNX export: the bare network gives our probabilities, with its metadata."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.conftest import disks_image, randomise_batchnorm

from napari_unet.core import ImageSource, ModelFile, Preprocessing, Segmenter, UNet, UNetConfig
from napari_unet.core.interop.network_export import export_network, read_export_metadata

pytestmark = [pytest.mark.numerics, pytest.mark.slow]

MODELS = {
    "2d-3class": UNetConfig(depth=2, base_features=4, out_channels=3),
    "2d-sigmoid-rgb": UNetConfig(depth=3, base_features=4, in_channels=3, out_channels=1),
    "3d": UNetConfig(spatial_dims=3, depth=2, base_features=2),
    "2d-mobilenet": UNetConfig(encoder="mobilenet_v2", depth=5, base_features=4, out_channels=3),
}
IMAGES = {
    "2d-3class": disks_image(shape=(96, 64))[0],
    "2d-sigmoid-rgb": np.stack([disks_image(shape=(64, 80), seed=s)[0] for s in range(3)], -1),
    "3d": np.random.default_rng(0).integers(0, 999, (16, 32, 24)).astype(np.uint16),
    "2d-mobilenet": disks_image(shape=(96, 64))[0],
}


def _model(name):
    torch.manual_seed(0)
    config = MODELS[name]
    names = ["background", "a", "b"] if config.out_channels == 3 else ["background", "foreground"]
    return ModelFile(config, Preprocessing(), randomise_batchnorm(UNet(config)).state_dict(), names)


def _reference(model, image):
    """Our probabilities (float32, whole image) and the normalised input the network saw."""
    prob = (
        Segmenter(model, device="cpu", precision="float32")
        .predict(image, output="probabilities")
        .probabilities
    )
    config = model.config
    source = ImageSource(image, config.spatial_dims, model.preprocessing, config.in_channels)
    return prob, source.read(tuple(slice(None) for _ in source.shape))[None]


@pytest.mark.parametrize("name", list(MODELS))
def test_onnx_runtime_reproduces_our_probabilities(tmp_path, name):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = _model(name)
    path = export_network(model, tmp_path / "net.onnx", "onnx")
    expected, x = _reference(model, IMAGES[name])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"x": x})
    assert out.shape == (1, *expected.shape)
    assert np.abs(out[0] - expected).max() < 1e-4
    batch = np.concatenate([x, x[..., ::-1].copy()])  # another batch size
    assert session.run(None, {"x": batch})[0].shape[0] == 2
    meta = read_export_metadata(path)
    assert meta["input"]["spatial_size_multiple"] == model.config.size_multiple
    assert meta["class_names"] == model.class_names
    assert meta["input"]["preprocessing"] == model.preprocessing.to_dict()


@pytest.mark.parametrize("name", list(MODELS))
def test_torchscript_reproduces_our_probabilities(tmp_path, name):
    model = _model(name)
    path = export_network(model, tmp_path / "net.pt", "torchscript")
    expected, x = _reference(model, IMAGES[name])
    scripted = torch.jit.load(str(path))
    with torch.no_grad():
        out = scripted(torch.from_numpy(x)).numpy()
    assert np.abs(out[0] - expected).max() < 1e-4
    assert read_export_metadata(path)["input"]["axes"] == (
        "bczyx" if model.config.spatial_dims == 3 else "bcyx"
    )


def test_export_from_the_command_line(tmp_path, capsys):
    from napari_unet.cli import main

    out = tmp_path / "nuclei.pt"
    assert main(["export", "nuclei", str(out), "--format", "torchscript"]) == 0
    assert "spatial sizes multiples of 16" in capsys.readouterr().out
    before = out.read_bytes()
    assert main(["export", "nuclei", str(out), "--format", "torchscript"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before
