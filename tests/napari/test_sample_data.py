"""The plugin inside a real napari viewer (run under Xvfb)."""

import numpy as np
import pytest

napari = pytest.importorskip("napari")


def test_samples_open_from_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-unet-torch", "nuclei")
    assert [layer.name for layer in viewer.layers] == ["nuclei", "nuclei ground truth"]
    assert viewer.layers["nuclei ground truth"].data.max() == 168
    viewer.open_sample("napari-unet-torch", "retina")
    retina = viewer.layers["retina"]
    assert retina.rgb and retina.data.dtype == np.uint8
    # Scaled to DRIVE's resolution, which the bundled retina model expects.
    assert 520 <= retina.data.shape[0] <= 600
