"""The dock fits a narrow column: every control usable at 400 px, the loss plot in view while
training (a real napari window under Xvfb)."""

from __future__ import annotations

import pytest

napari = pytest.importorskip("napari")

from qtpy.QtCore import QPoint, QRect, Qt  # noqa: E402
from qtpy.QtWidgets import (  # noqa: E402
    QAbstractButton,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QScrollArea,
    QWidget,
)

from napari_unet._napari.common import Disclosure  # noqa: E402

DOCK_WIDTH = 400
CONTROLS = (QAbstractButton, QComboBox, QAbstractSpinBox)


def _settle(qtbot, ms=50):
    for _ in range(5):
        QApplication.processEvents()
        qtbot.wait(ms // 5)


def _narrow_dock(qtbot, dock):
    """Show the viewer 1500 x 900 with the dock DOCK_WIDTH wide, as a laptop user would."""
    window = dock.viewer.window._qt_window
    window.resize(1500, 900)
    window.show()
    dock_widget = dock.parent()
    while dock_widget is not None and not hasattr(dock_widget, "setFloating"):
        dock_widget = dock_widget.parent()
    window.resizeDocks([dock_widget], [DOCK_WIDTH], Qt.Horizontal)
    _settle(qtbot, 200)
    return dock_widget


def _clipped(scroll: QScrollArea) -> list[str]:
    """Visible controls of the tab in ``scroll`` that are not wholly reachable: cut off at
    the side of the viewport (no horizontal scrolling here) or beyond the panel's bottom."""
    viewport = scroll.viewport()
    panel = scroll.widget()
    bad = []
    for control in panel.findChildren(QWidget):
        if not isinstance(control, CONTROLS) or not control.isVisibleTo(panel):
            continue
        if isinstance(control.parent(), QAbstractSpinBox | QComboBox):
            continue  # a spin box's or combo's own inner parts
        top_left = control.mapTo(panel, QPoint(0, 0))
        rect = QRect(top_left, control.size())
        left = control.mapTo(viewport, QPoint(0, 0)).x()
        inside_width = left >= 0 and left + rect.width() <= viewport.width()
        inside_panel = panel.rect().contains(rect)
        too_small = rect.width() < 16 or rect.height() < 10
        if not (inside_width and inside_panel) or too_small:
            text = control.text() if hasattr(control, "text") else ""
            bad.append(f"{type(control).__name__} {text!r} at {rect.getRect()}")
    return bad


def test_every_control_fits_a_400_px_dock(qtbot, dock):
    dock_widget = _narrow_dock(qtbot, dock)
    assert dock_widget.width() <= DOCK_WIDTH + 2
    assert dock.minimumSizeHint().width() <= DOCK_WIDTH
    for opened in (False, True):
        # Closed sections first (how the dock opens), then every section open.
        for section in dock.findChildren(Disclosure):
            section.set_expanded(opened)
        # Every kind of training pair shows its widest row: strokes on a prediction.
        dock.train.rows[0].kind.setCurrentText("strokes on a prediction")
        for index in range(dock.tabs.count()):
            dock.tabs.setCurrentIndex(index)
            _settle(qtbot)
            scroll = dock.tabs.widget(index)
            where = (dock.tabs.tabText(index), "sections open" if opened else "closed")
            assert _clipped(scroll) == [], where
            assert scroll.horizontalScrollBar().maximum() == 0, where


def test_sections_open_for_a_new_model_and_close_when_starting_from_one(dock):
    train = dock.train
    train.start_from.setCurrentText("new model")
    assert train.new_model.is_expanded() and train.new_model.isEnabled()
    train.start_from.setCurrentText("nuclei")
    assert not train.new_model.is_expanded() and not train.new_model.isEnabled()
    assert not train.settings.advanced.is_expanded()  # advanced settings start closed
    assert not train.settings.steps.isVisibleTo(train)


def test_the_loss_plot_comes_into_view_when_training_starts(qtbot, dock):
    from tests.conftest import disks_image

    _narrow_dock(qtbot, dock)
    image, labels = disks_image((96, 96), seed=3)
    viewer = dock.viewer
    viewer.add_image(image, name="img")
    viewer.add_labels(labels, name="gt")
    train = dock.train
    dock.tabs.setCurrentIndex(1)
    row = train.rows[0]
    row.image.select(viewer.layers["img"])
    row.labels.select(viewer.layers["gt"])
    train.start_from.setCurrentText("new model")
    train.settings.advanced.set_expanded(True)
    train.new_model.depth.setValue(2)
    train.new_model.base.setValue(8)
    train.settings.epochs.setValue(1)
    train.settings.steps.setValue(2)
    train.settings.patch.setValue(64)
    train.settings.batch.setValue(2)
    train.settings.val_fraction.setValue(0)
    worker = train.start()
    assert worker is not None
    _settle(qtbot, 200)
    scroll = dock.tabs.widget(1)
    viewport = scroll.viewport()
    top = train.plot.mapTo(viewport, QPoint(0, 0)).y()
    assert top >= 0 and top + train.plot.height() <= viewport.height()
    assert not train.new_model.is_expanded() and not train.settings.advanced.is_expanded()
    qtbot.waitUntil(lambda: not train.busy, timeout=120_000)
