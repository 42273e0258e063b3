"""Fixtures for the tests that run a real napari viewer (under Xvfb)."""

from __future__ import annotations

import pytest


@pytest.fixture
def dock(make_napari_viewer):
    """The U-Net dock widget in a fresh viewer, opened as a user would from the Plugins menu."""
    pytest.importorskip("napari")
    from napari_unet._napari.dock import UNetWidget

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet-torch", "U-Net")
    assert isinstance(widget, UNetWidget)
    return widget
