"""napari's conventions: the activity dock shows long work, a scribble layer is one click,
and Segment / Train have keyboard shortcuts that napari does not use."""

from __future__ import annotations

import time

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from qtpy.QtCore import Qt  # noqa: E402
from qtpy.QtGui import QKeySequence  # noqa: E402
from tests.conftest import disks_image  # noqa: E402
from tests.napari.test_widget import _wait  # noqa: E402

from napari_unet._napari.common import SHORTCUTS  # noqa: E402


def test_segmenting_shows_in_napari_activity_dock(dock, qtbot):
    from napari.utils import progress

    dock.viewer.add_image(disks_image(shape=(256, 256), n=20)[0], name="cells")
    seg = dock.segment
    seg.model.setCurrentText("nuclei")
    worker = seg.segment()

    def bars():
        return [bar for bar in progress._all_instances if "segmenting cells" in str(bar.desc)]

    assert len(bars()) == 1
    bar = bars()[0]
    assert bar.total == 1000
    _wait(qtbot, seg, worker)
    assert bar.n == 1000  # it went all the way
    assert not [bar for bar in progress._all_instances if "segmenting" in str(bar.desc)]


def test_new_scribble_layer_is_ready_to_paint_and_chosen(dock):
    viewer = dock.viewer
    viewer.add_image(np.zeros((40, 50, 3), np.uint8), name="rgb", rgb=True, scale=(2, 2))
    train = dock.train
    assert train.new_scribble_layer() is not None
    layer = viewer.layers["rgb scribbles"]
    assert layer.data.shape == (40, 50) and layer.data.max() == 0
    assert tuple(layer.scale) == (2, 2)
    assert layer.selected_label == 2 and layer.mode == "paint"
    row = train.rows[0]
    assert row.labels.layer().name == "rgb scribbles" and row.label_mode == "scribbles"
    assert "label 1" in train.scribble_button.toolTip()


def test_the_shortcuts_press_the_buttons_and_napari_does_not_use_them(dock, qtbot):
    from napari.utils.shortcuts import default_shortcuts

    napari_keys = {str(key) for keys in default_shortcuts.values() for key in keys}
    for keys in SHORTCUTS.values():
        assert QKeySequence(keys).toString() not in napari_keys
    viewer = dock.viewer
    viewer.add_image(disks_image(shape=(96, 96), n=6)[0], name="cells")
    window = viewer.window._qt_window
    window.show()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key_G, Qt.ControlModifier | Qt.ShiftModifier)
    assert dock.segment.busy or "cells U-Net" in viewer.layers
    _wait(qtbot, dock.segment, dock.segment.worker)
    assert "cells U-Net" in viewer.layers


def test_overlapping_workers_leave_no_dead_warning_hook(qtbot):
    """Two workers that overlap, the first started ending first: superqt's second worker
    restores the first one's warnings hook when it ends. Ours put napari's back, so a later
    warning is shown, not turned into a RuntimeError from a deleted worker."""
    import threading
    import warnings

    from napari_unet._napari.common import start_worker

    first_may_end, second_started = threading.Event(), threading.Event()

    def first():
        first_may_end.wait(10)

    def second():
        second_started.set()
        first_may_end.set()  # the first ends while the second runs
        time.sleep(0.3)

    before = warnings.showwarning
    workers = [start_worker(first)]
    qtbot.waitUntil(lambda: workers[0].is_running, timeout=5000)
    workers.append(start_worker(second))
    for worker in workers:
        qtbot.waitUntil(lambda w=worker: not w.is_running, timeout=10_000)
    qtbot.wait(100)  # the finished signals reach the GUI thread
    assert warnings.showwarning is before
    with warnings.catch_warnings(record=True):
        warnings.warn("a harmless warning", UserWarning, stacklevel=1)
