"""The plugin inside a real napari viewer (run under Xvfb)."""

import pytest

napari = pytest.importorskip("napari")


def test_samples_open_from_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-unet-torch", "nuclei")
    assert [layer.name for layer in viewer.layers] == ["nuclei", "nuclei ground truth"]
    assert viewer.layers["nuclei ground truth"].data.max() == 168
    viewer.open_sample("napari-unet-torch", "retina")
    assert viewer.layers["retina"].rgb
