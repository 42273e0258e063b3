"""bioimage.io packages in napari: Load... opens them, ours can be fine-tuned, others segment,
and a package that needs its own Python code runs only when the user says yes."""

from __future__ import annotations

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("bioimageio.core")
pytest.importorskip("onnxruntime")

from tests.conftest import disks_image  # noqa: E402
from tests.core.test_bioimageio import _foreign_package, _reference_output  # noqa: E402
from tests.napari.test_widget import _wait  # noqa: E402

from napari_unet.core import ModelFile, load_model  # noqa: E402
from napari_unet.core.interop.bioimageio_export import export_package  # noqa: E402
from napari_unet.core.interop.bioimageio_import import PackageModel  # noqa: E402

pytestmark = pytest.mark.slow  # over 10 s on 2 cores: not in the inner loop


@pytest.mark.numerics
def test_load_packages_segment_and_fine_tune(dock, qtbot, tmp_path, monkeypatch):
    viewer = dock.viewer
    viewer.add_image(disks_image(shape=(96, 96))[0], name="cells")
    seg = dock.segment
    seg.image.select(viewer.layers["cells"])

    # Our own package: the same model, offered as a start for fine-tuning.
    ours = str(export_package(load_model("nuclei"), tmp_path / "nuclei.zip", name="nuclei"))
    seg.add_model_file(ours)
    assert seg.model.currentText() == ours and isinstance(seg.selected_model(), ModelFile)
    assert dock.train.start_from.findText(ours) >= 0
    dock.train.start_from.setCurrentText(ours)
    assert dock.train._base_model().config == load_model("nuclei").config
    _wait(qtbot, seg, seg.segment())
    assert viewer.layers["cells U-Net"].data.max() >= 4  # instances, like the bundled model

    # Someone else's package: segments through the tiler, is not offered for fine-tuning.
    rdf = _foreign_package(tmp_path / "smoother", "torchscript")
    np.save(
        rdf.parent / "test_output.npy",
        _reference_output(rdf, np.load(rdf.parent / "test_input.npy")),
    )
    seg.add_model_file(str(rdf))
    assert isinstance(seg.selected_model(), PackageModel)
    assert dock.train.start_from.findText(str(rdf)) < 0
    _wait(qtbot, seg, seg.segment())
    assert seg.last_message and "cpu" in seg.last_message

    # A package that runs its own code: refused when the user says no, loaded on yes.
    code = _foreign_package(tmp_path / "coded", "state_dict")
    np.save(
        code.parent / "test_output.npy",
        _reference_output(code, np.load(code.parent / "test_input.npy")),
    )
    answers = []
    monkeypatch.setattr(
        seg.models, "ask_trust", lambda path, err: answers.append(str(err)) or False
    )
    before = seg.model.count()
    seg.add_model_file(str(code))
    assert answers and "--trust-code" in answers[0]
    assert "--trust-code" in seg.last_message and seg.model.count() == before
    monkeypatch.setattr(seg.models, "ask_trust", lambda path, err: True)
    seg.add_model_file(str(code))
    assert seg.selected_model().weights_format == "pytorch_state_dict"
