"""Stacks segmented slice by slice in the dock: objects keep one label through time by
default, through z when asked."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

napari = pytest.importorskip("napari")

from tests.napari.test_widget import _wait  # noqa: E402


def _drifting_disks(slices=5):
    stack = np.full((slices, 128, 128), 200, np.uint16)
    for k in range(slices):
        for y, x in ((30, 30), (30, 90), (90, 40), (90, 95)):
            rr, cc = disk((y + k, x + k), 10, shape=stack.shape[1:])
            stack[k, rr, cc] = 2000
    return stack


def _segment(dock, qtbot, name):
    seg = dock.segment
    seg.image.select(dock.viewer.layers[name])
    seg.model.setCurrentText("nuclei")
    seg.object_size.mode.setCurrentText("native (no rescaling)")
    _wait(qtbot, seg, seg.segment())
    return dock.viewer.layers[f"{name} U-Net"].data


def _objects(labels):
    return len(np.unique(labels)) - 1


def test_a_time_series_keeps_its_objects_labels_and_a_z_stack_does_when_asked(dock, qtbot):
    viewer = dock.viewer
    viewer.add_image(_drifting_disks(), name="movie", axis_labels=("t", "y", "x"))
    viewer.add_image(_drifting_disks(), name="zstack", axis_labels=("z", "y", "x"))
    assert dock.segment.match_slices.currentText() == "time series"
    movie = _segment(dock, qtbot, "movie")
    assert _objects(movie) == 4  # four disks, each one label through time
    for disk_label in np.unique(movie[0])[1:]:
        assert (movie == disk_label).any(axis=(1, 2)).all()
    zstack = _segment(dock, qtbot, "zstack")
    assert _objects(zstack) == 4 * 5  # z: labels per slice unless asked
    np.testing.assert_array_equal(zstack > 0, movie > 0)
    dock.segment.match_slices.setCurrentText("always")
    viewer.layers.remove("zstack U-Net")
    assert _objects(_segment(dock, qtbot, "zstack")) == 4
