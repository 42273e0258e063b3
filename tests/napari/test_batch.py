"""Batch from the dock: every open image layer, or a folder, with the Segment tab's
settings, in the background, with progress and Cancel; existing results are replaced only
when the user says so."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

napari = pytest.importorskip("napari")

from tests.conftest import disks_image  # noqa: E402
from tests.napari.test_widget import _wait  # noqa: E402


def test_every_image_layer_gets_its_labels(dock, qtbot):
    viewer = dock.viewer
    for name, seed in (("a", 0), ("b", 1), ("c", 2)):
        viewer.add_image(disks_image(shape=(128, 128), n=8, seed=seed)[0], name=name)
    seg = dock.segment
    seg.model.setCurrentText("nuclei")
    worker = seg.batch.segment_layers()
    _wait(qtbot, seg, worker)
    assert seg.last_message == "3 image layer(s) segmented"
    for name in "abc":
        labels = viewer.layers[f"{name} U-Net"].data
        assert labels.shape == (128, 128) and 4 <= labels.max() <= 12


def _folder(tmp_path, n=3):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(n):
        tifffile.imwrite(folder / f"img{i}.tif", disks_image(shape=(160, 160), n=10, seed=i)[0])
    return folder


def test_a_folder_is_segmented_into_the_chosen_folder_and_results_are_kept(dock, qtbot, tmp_path):
    folder, out = _folder(tmp_path), tmp_path / "results"
    seg = dock.segment
    seg.model.setCurrentText("nuclei")
    _wait(qtbot, seg, seg.batch.segment_folder(str(folder), str(out)))
    assert seg.last_message == f"3 file(s) segmented into {out}"
    assert sorted(p.name for p in out.iterdir()) == [f"img{i}_labels.tif" for i in range(3)]
    assert all("object(s) -> img" in line for line in seg.batch.lines)
    first = tifffile.imread(out / "img0_labels.tif")
    assert first.shape == (160, 160) and first.max() >= 4
    # Again: the results are there; without the user's yes nothing is replaced.
    tifffile.imwrite(out / "img0_labels.tif", np.zeros((160, 160), np.uint16))  # "edited"
    assert seg.batch.segment_folder(str(folder), str(out), overwrite=False) is None
    assert "3 result(s) already in" in seg.last_message
    assert tifffile.imread(out / "img0_labels.tif").max() == 0
    _wait(qtbot, seg, seg.batch.segment_folder(str(folder), str(out), overwrite=True))
    np.testing.assert_array_equal(tifffile.imread(out / "img0_labels.tif"), first)


def test_cancel_stops_a_folder_run_between_tiles(dock, qtbot, tmp_path):
    folder, out = _folder(tmp_path, n=6), tmp_path / "results"
    seg = dock.segment
    seg.model.setCurrentText("nuclei")
    seg.tile_size.setValue(64)  # many tiles per file: Cancel lands inside the first files
    worker = seg.batch.segment_folder(str(folder), str(out))
    qtbot.waitUntil(lambda: seg.progress.value() > 0, timeout=60_000)
    seg.cancel()
    _wait(qtbot, seg, worker)
    assert seg.last_message.startswith("cancelled; the files finished before were written")
    assert len(list(out.iterdir())) < 6
    assert seg.cancel_button.isEnabled() is False and not seg.busy
