"""The Segment tab's *object size* row: auto (the estimate is shown after each run), native,
a diameter in pixels, or the layer's scale; and an *estimate* button that draws a circle of
the estimated size on the canvas, so the user can see whether it is right."""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtWidgets import QComboBox, QDoubleSpinBox, QGridLayout, QLabel, QPushButton, QWidget

from ...core import ModelFile
from ...core.data.pixel_size import layer_pixel_size
from ...core.predict.scale import ScaleChoice, estimate_image_scale
from ..common import narrow, start_worker
from ..layers import layer_array

MODES = {
    "auto": "auto",
    "native (no rescaling)": "native",
    "diameter (px)": "size",
    "from layer scale": "layer",
}
MODE_HELP = (
    "auto: estimate the size of the objects in the image and rescale it to the size the model "
    "was trained at (only when they lie outside the sizes it learnt);\n"
    "native: predict on the image's own pixels;\n"
    "diameter (px): the objects' diameter (or the width of thin structures), as you measure it;\n"
    "from layer scale: the layer's pixel size against the model's (auto when the model has none)"
)
CIRCLE_LAYER = "U-Net object size"


class ObjectSizeRow(QWidget):
    """Mode, size and *estimate*; :meth:`options` gives the core's ``object_size`` and
    ``pixel_size`` for a layer."""

    def __init__(self, viewer: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self.mode = narrow(QComboBox(self), 8)
        self.mode.addItems(list(MODES))
        self.mode.setToolTip(MODE_HELP)
        self.size = QDoubleSpinBox(self, decimals=1, minimum=0.5, maximum=10000.0, value=20.0)
        self.size.setSuffix(" px")
        self.size.setEnabled(False)
        self.mode.currentTextChanged.connect(
            lambda text: self.size.setEnabled(MODES[text] == "size")
        )
        self.estimate_button = QPushButton("estimate", self)
        self.estimate_button.setToolTip(
            "estimate the objects' size in the chosen image now and draw a circle of that "
            "diameter on the canvas"
        )
        self.found = QLabel("", self)
        self.found.setWordWrap(True)
        # Two lines: the dock stays narrow.
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(self.mode, 0, 0, 1, 2)
        grid.addWidget(self.size, 1, 0)
        grid.addWidget(self.estimate_button, 1, 1)

    def options(self, layer: Any, spatial_dims: int) -> dict[str, Any]:
        """``object_size`` and ``pixel_size`` for :meth:`~napari_unet.core.Segmenter.predict`."""
        mode = MODES[self.mode.currentText()]
        if mode == "size":
            return {"object_size": float(self.size.value())}
        if mode == "layer" and layer is None:  # files: no layer scale to read
            return {"object_size": "auto"}
        if mode == "layer":
            return {"object_size": "auto", "pixel_size": layer_pixel_size(layer, spatial_dims)}
        return {"object_size": mode}

    def show_choice(self, choice: ScaleChoice | None) -> None:
        """Say what the last run found and did (and, for auto, put the size in the box)."""
        self.found.setText(choice.describe() if choice is not None else "")
        if (
            choice is not None
            and choice.found is not None
            and MODES[self.mode.currentText()] != "size"
        ):
            self.size.setValue(round(choice.found, 1))

    def estimate(self, layer: Any, model: ModelFile, channel_axis: int | None) -> Any:
        """Estimate in a worker thread (a centre view: well under a second), then show the
        size and draw it; returns the worker."""
        self.estimate_button.setEnabled(False)
        self.found.setText("estimating…")

        def done(result: tuple[ScaleChoice, tuple[int, ...]]) -> None:
            choice, shape = result
            self.show_choice(choice)
            if choice.found is not None:
                self.draw_circle(layer, choice.found, shape)

        return start_worker(
            estimate_image_scale,
            layer_array(layer),
            model,
            channel_axis,
            connect={
                "returned": done,
                "errored": lambda err: self.found.setText(f"no estimate: {err}"),
                "finished": lambda: self.estimate_button.setEnabled(True),
            },
        )

    def draw_circle(self, layer: Any, diameter: float, shape: tuple[int, ...]) -> Any:
        """A circle of ``diameter`` pixels at the image's lower left corner, in a Shapes
        layer of its own (replaced at each estimate)."""
        y, x = shape[-2] - diameter * 1.5, diameter * 0.5
        # Four corners of its bounding box (two points would mean centre and radii).
        corners = np.array(
            [[y, x], [y, x + diameter], [y + diameter, x + diameter], [y + diameter, x]]
        )
        scale = np.asarray(layer.scale)[-2:]
        translate = np.asarray(layer.translate)[-2:]
        if CIRCLE_LAYER in self.viewer.layers:
            self.viewer.layers.remove(CIRCLE_LAYER)
        return self.viewer.add_shapes(
            [corners],
            shape_type="ellipse",
            name=CIRCLE_LAYER,
            edge_color="yellow",
            face_color="transparent",
            edge_width=max(1.0, diameter / 20),
            scale=scale,
            translate=translate,
        )
