"""Settings remembered between sessions (a temporary settings folder, see conftest.py)."""

from __future__ import annotations

import pytest

napari = pytest.importorskip("napari")

from napari_unet._napari.remembered import settings_store  # noqa: E402


def _open(make_napari_viewer):
    viewer = make_napari_viewer()
    _, dock = viewer.window.add_plugin_dock_widget("napari-unet-torch", "U-Net")
    return dock


def test_settings_come_back_in_the_next_session_until_defaults_are_restored(
    make_napari_viewer, tmp_path
):
    from tests.bad_inputs import tiny_model

    first = _open(make_napari_viewer)
    model_path = str(tiny_model(tmp_path / "mine.pt"))
    first.segment.add_model_file(model_path)
    first.segment.tile_size.setValue(256)
    first.segment.object_size.mode.setCurrentText("native (no rescaling)")
    settings = first.train.settings
    settings.epochs.setValue(7)
    settings.minutes.setValue(2.5)
    settings.lr.setValue(0.0005)
    settings.patch.setValue(96)
    settings.augment.setChecked(False)
    settings.preview.setChecked(True)

    second = _open(make_napari_viewer)  # a new napari session
    assert second.segment.model.currentText() == model_path  # loaded again from its file
    assert second.segment.tile_size.value() == 256
    assert second.segment.object_size.mode.currentText() == "native (no rescaling)"
    again = second.train.settings
    assert (again.epochs.value(), again.minutes.value()) == (7, 2.5)
    assert again.lr.value() == pytest.approx(0.0005)
    assert again.patch.value() == 96
    assert not again.augment.isChecked() and again.preview.isChecked()

    second.remembered.restore_defaults()
    assert again.epochs.value() == 20 and again.augment.isChecked()
    assert second.segment.tile_size.value() == 0
    assert settings_store().allKeys() == []
    third = _open(make_napari_viewer)
    assert third.train.settings.epochs.value() == 20
    assert third.segment.model.currentText() == "nuclei"


def test_stored_values_a_machine_cannot_take_are_ignored(make_napari_viewer, tmp_path):
    store = settings_store()
    store.setValue("train/device", "cuda:7")  # a GPU this machine does not have
    store.setValue("train/epochs", "many")
    store.setValue("segment/model", str(tmp_path / "gone.pt"))  # deleted since
    store.sync()
    dock = _open(make_napari_viewer)
    assert dock.train.settings.device.currentText() == "auto"
    assert dock.train.settings.epochs.value() == 20
    assert dock.segment.model.currentText() == "nuclei"
