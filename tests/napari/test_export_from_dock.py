"""Export from the dock: the selected model as TorchScript, ONNX or a bioimage.io package,
written in the background, and the package loads back and segments as the model did."""

from __future__ import annotations

import numpy as np
import pytest
import torch

napari = pytest.importorskip("napari")

from tests.conftest import disks_image  # noqa: E402
from tests.napari.test_widget import _wait  # noqa: E402


def _export(dock, qtbot, path, fmt, **kw):
    models = dock.segment.models
    worker = models.export_to(str(path), fmt, **kw)
    assert worker is not None
    qtbot.waitUntil(lambda: models.export_button.isEnabled(), timeout=180_000)
    return models.last_message


def test_export_torchscript_and_onnx_of_the_selected_model(dock, qtbot, tmp_path):
    dock.segment.model.setCurrentText("nuclei")
    message = _export(dock, qtbot, tmp_path / "nuclei", "torchscript")  # suffix added
    assert message.startswith("exported nuclei as torchscript to") and "nuclei.pt" in message
    scripted = torch.jit.load(str(tmp_path / "nuclei.pt"))
    out = scripted(torch.zeros(1, 1, 64, 64))
    assert out.shape == (1, 3, 64, 64)
    pytest.importorskip("onnxruntime")
    assert "as onnx" in _export(dock, qtbot, tmp_path / "nuclei.onnx", "onnx")
    assert (tmp_path / "nuclei.onnx").stat().st_size > 100_000
    # An existing file is not replaced unless the save dialog asked (overwrite=True).
    assert "already exists" in _export(dock, qtbot, tmp_path / "nuclei.onnx", "onnx")


def test_a_loaded_model_is_never_exported_onto_its_own_file(dock, tmp_path):
    from tests.bad_inputs import tiny_model

    path = tiny_model(tmp_path / "mine.pt")
    before = path.read_bytes()
    dock.segment.add_model_file(str(path))
    assert dock.segment.models.export_to(str(path), "torchscript", overwrite=True) is None
    assert "would write onto the input" in dock.segment.models.last_message
    assert path.read_bytes() == before


@pytest.mark.slow  # a package writes and checks three kinds of weights: ~20 s on 2 cores
def test_a_package_exported_from_the_dock_loads_back_and_segments_alike(dock, qtbot, tmp_path):
    pytest.importorskip("bioimageio.core")
    viewer = dock.viewer
    viewer.add_image(disks_image(shape=(128, 128), n=10)[0], name="cells")
    seg = dock.segment
    seg.model.setCurrentText("nuclei")
    seg.object_size.mode.setCurrentText("native (no rescaling)")
    _wait(qtbot, seg, seg.segment())
    before = viewer.layers["cells U-Net"].data.copy()
    assert "bioimage.io package" in _export(dock, qtbot, tmp_path / "n.zip", "bioimageio")
    seg.add_model_file(str(tmp_path / "n.zip"))
    assert seg.model.currentText() == str(tmp_path / "n.zip")
    viewer.layers.remove("cells U-Net")
    _wait(qtbot, seg, seg.segment())
    np.testing.assert_array_equal(viewer.layers["cells U-Net"].data > 0, before > 0)
