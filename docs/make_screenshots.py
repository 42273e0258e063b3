"""Take the user guide's screenshots from a real napari window, so they stay true.

    xvfb-run -a python docs/make_screenshots.py      # writes docs/images/*.png

Opens the nuclei sample, segments it with the bundled model, then trains a small model on the
sample's ground truth for a few epochs with live preview, capturing the window at each stage.
"""

from __future__ import annotations

import time
from pathlib import Path

from qtpy.QtWidgets import QApplication

import napari

OUT = Path(__file__).resolve().parent / "images"


def wait_for(panel) -> None:
    """Process events until the panel's background job has finished."""
    while panel.busy:
        QApplication.processEvents()
        time.sleep(0.01)
    for _ in range(20):  # let the canvas draw the new layers
        QApplication.processEvents()
        time.sleep(0.02)


def shoot(viewer: napari.Viewer, name: str) -> None:
    OUT.mkdir(exist_ok=True)
    viewer.screenshot(str(OUT / name), canvas_only=False, flash=False)
    print(f"wrote {OUT / name}")


def main() -> None:
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    viewer.open_sample("napari-unet-torch", "nuclei")
    _, dock = viewer.window.add_plugin_dock_widget("napari-unet-torch", "U-Net")

    seg = dock.segment
    seg.image.select(viewer.layers["nuclei"])
    seg.model.setCurrentText("nuclei")
    seg.segment()
    wait_for(seg)
    shoot(viewer, "segment.png")

    train = dock.train
    row = train.rows[0]
    row.image.select(viewer.layers["nuclei"])
    row.labels.select(viewer.layers["nuclei ground truth"])
    train.start_from.setCurrentText("new model")
    train.new_model.depth.setValue(3)
    train.new_model.base.setValue(8)
    train.settings.epochs.setValue(6)
    train.settings.steps.setValue(10)
    train.settings.batch.setValue(4)
    train.settings.lr.setValue(0.003)
    train.settings.preview.setChecked(True)
    train.settings.preview_every.setValue(10)
    viewer.layers["nuclei U-Net"].visible = False
    dock.tabs.setCurrentIndex(1)
    train.start()
    wait_for(train)
    shoot(viewer, "train.png")
    viewer.close()


if __name__ == "__main__":
    main()
