"""The Segment tab with a vessel model: auto reads the scale from a fundus photograph's round
field of view, says so, and *estimate* draws the vessel width it expects."""

from __future__ import annotations

import pytest
from tests.core.test_field_of_view import fundus
from tests.napari.test_widget import _wait


def test_the_retina_model_rescales_a_large_fundus_photograph(dock, qtbot):
    viewer = dock.viewer
    image, _ = fundus(1500, (1560, 1560), width=9)  # ~2.8 times DRIVE's field of view
    layer = viewer.add_image(image, name="fundus", rgb=True)
    seg = dock.segment
    seg.image.select(layer)
    seg.model.setCurrentText("retina")
    row = seg.object_size
    _wait(qtbot, seg, seg.segment())
    assert "from the field of view" in row.found.text() and "rescaled x0.3" in row.found.text()
    assert viewer.layers["fundus U-Net"].data.shape == image.shape[:2]
    assert row.size.value() == pytest.approx(1.828 * 1500 / 538, rel=0.05)  # width expected

    worker = seg.estimate_size()
    qtbot.waitUntil(lambda: row.estimate_button.isEnabled(), timeout=30_000)
    assert worker is not None and "structure width" in row.found.text()
    assert "U-Net object size" in viewer.layers
