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


@pytest.fixture(autouse=True)
def _remembered_settings_in_tmp(tmp_path_factory):
    """Docks opened by tests remember their settings in a folder of their own, never in the
    user's store, and start from the defaults."""
    pytest.importorskip("napari")
    from qtpy.QtCore import QSettings

    folder = tmp_path_factory.mktemp("settings")
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(folder))
    yield folder
