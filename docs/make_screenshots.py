"""Take the user guide's screenshots from a real napari window, with the dock 400 px wide as
on a laptop, so they stay true.

    xvfb-run -a python docs/make_screenshots.py      # writes docs/images/*.png

The loop, as a user walks it: open the nuclei sample and segment it with the bundled model
(segment.png); correct the prediction (here: two mistakes fixed from the sample's ground
truth) and come to Train, whose labels and start-from already point at the corrected layer
and the model just used (correct.png); fine-tune for a few epochs with the loss plot in view
(train.png).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from qtpy.QtCore import QSettings, Qt
from qtpy.QtWidgets import QApplication

import napari

OUT = Path(__file__).resolve().parent / "images"
DOCK_WIDTH = 400


def wait_for(panel) -> None:
    """Process events until the panel's background job has finished."""
    while panel.busy:
        QApplication.processEvents()
        time.sleep(0.01)
    settle()


def settle(rounds: int = 20) -> None:
    for _ in range(rounds):  # let the canvas draw the new layers
        QApplication.processEvents()
        time.sleep(0.02)


def shoot(viewer: napari.Viewer, name: str) -> None:
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    # Notices of the moment (our machines' PyQt5 deprecation) would cover the canvas.
    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()
    settle()
    OUT.mkdir(exist_ok=True)
    viewer.screenshot(str(OUT / name), canvas_only=False, flash=False)
    print(f"wrote {OUT / name}")


def narrow_dock(viewer: napari.Viewer, dock) -> None:
    window = viewer.window._qt_window
    window.resize(1400, 900)
    dock_widget = dock.parent()
    while dock_widget is not None and not hasattr(dock_widget, "setFloating"):
        dock_widget = dock_widget.parent()
    window.resizeDocks([dock_widget], [DOCK_WIDTH], Qt.Horizontal)
    settle()


def correct(prediction, truth) -> None:
    """Two corrections a user makes: a merged or missed nucleus painted in from the ground
    truth, and a false object erased."""
    data = np.array(prediction.data)
    missed = [i for i in np.unique(truth[truth > 0]) if (data[truth == i] == 0).mean() > 0.5]
    for i in missed[:2]:
        data[truth == i] = data.max() + 1
    false = [i for i in np.unique(data[data > 0]) if (truth[data == i] == 0).mean() > 0.8]
    for i in false[:2]:
        data[data == i] = 0
    prediction.data = data


def main() -> None:
    # The dock remembers settings: the pictures show the defaults, not this machine's.
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, tempfile.mkdtemp())
    viewer = napari.Viewer(show=True)
    viewer.open_sample("napari-unet-torch", "nuclei")
    _, dock = viewer.window.add_plugin_dock_widget("napari-unet-torch", "U-Net")
    narrow_dock(viewer, dock)

    seg = dock.segment
    seg.image.select(viewer.layers["nuclei"])
    seg.model.setCurrentText("nuclei")
    seg.segment()
    wait_for(seg)
    shoot(viewer, "segment.png")

    prediction = viewer.layers["nuclei U-Net"]
    correct(prediction, np.asarray(viewer.layers["nuclei ground truth"].data))
    dock.tabs.setCurrentIndex(1)  # the labels follow: the corrected layer is offered
    train = dock.train
    train.settings.epochs.setValue(4)
    train.settings.steps.setValue(10)
    settle()
    shoot(viewer, "correct.png")

    train.settings.preview.setChecked(True)
    train.settings.preview_every.setValue(10)
    train.start()
    wait_for(train)
    prediction.visible = False
    settle()
    shoot(viewer, "train.png")
    viewer.close()


if __name__ == "__main__":
    main()
