"""The new-model form: what a model trained from scratch is (output kind, dimensions, network
size, padding, and what it reads of each image)."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QComboBox, QFormLayout, QSpinBox, QWidget

from ...core import Preprocessing
from ...core.train.defaults import TrainingDefaults
from ..common import Disclosure, narrow

PADDINGS = {"same": "same", "valid (the paper's)": "valid"}
MODEL_KINDS = {"instances (objects)": "instances", "semantic (classes)": "semantic"}
#: What a new model reads of each image (Preprocessing.channel_mode), as the CLI's
#: --gray / --input-channel.
INPUT_MODES = {"all channels": "as_is", "grayscale": "gray", "one channel": "single"}
#: Whether a new model turns intensities upside down (Preprocessing.invert), as --invert.
INVERT_MODES = {
    "as they are": "no",
    "inverted": "yes",
    "inverted where the background is bright": "auto",
}


class NewModelForm(Disclosure):
    """The settings of a new model; the Train panel opens it when starting from scratch and
    closes it when starting from a model."""

    def __init__(self, defaults: TrainingDefaults, parent: QWidget | None = None):
        super().__init__("New model", parent)
        self.kind = narrow(QComboBox(self))
        self.kind.addItems(list(MODEL_KINDS))
        self.kind.setToolTip(
            "instances: one label per object, touching objects split (labels must be one "
            "value per object);\nsemantic: a class per pixel"
        )
        self.dims = QComboBox(self)
        self.dims.addItems(["2D", "3D"])
        self.depth = QSpinBox(self, minimum=1, maximum=6, value=defaults.depth)
        self.base = QSpinBox(self, minimum=4, maximum=128, value=defaults.base_features)
        self.classes = QSpinBox(self, minimum=2, maximum=32, value=2)
        self.classes.setEnabled(False)  # instances by default
        self.kind.currentTextChanged.connect(
            lambda text: self.classes.setEnabled(MODEL_KINDS[text] == "semantic")
        )
        self.padding = narrow(QComboBox(self))
        self.padding.addItems(list(PADDINGS))
        self.padding.setToolTip(
            "same: padded convolutions (default); valid: the U-Net paper's unpadded "
            "convolutions, trained on tile centres and predicted overlap-tile with mirrored "
            "borders (slower; cannot be exported to ONNX/bioimage.io)"
        )
        form = QFormLayout(self.body)
        form.setContentsMargins(12, 0, 0, 0)
        form.addRow("output", self.kind)
        form.addRow("dimensions", self.dims)
        form.addRow("depth", self.depth)
        form.addRow("base features", self.base)
        form.addRow("classes", self.classes)
        form.addRow("padding", self.padding)
        self._input_widgets()
        form.addRow("input", self.input_mode)
        form.addRow("input channel", self.input_channel)
        form.addRow("intensities", self.invert)

    def _input_widgets(self) -> None:
        """What the model reads of each image: the channels and which way round."""
        self.input_mode = narrow(QComboBox(self), 6)
        self.input_mode.addItems(list(INPUT_MODES))
        self.input_mode.setToolTip(
            "which channels of the image the model reads: all of them, their grey value, or one "
            "channel only (e.g. channel 1, the green channel of RGB fundus photographs)"
        )
        self.input_channel = QSpinBox(self, minimum=0, maximum=63, value=1)
        self.input_channel.setEnabled(False)
        self.input_mode.currentTextChanged.connect(
            lambda text: self.input_channel.setEnabled(INPUT_MODES[text] == "single")
        )
        self.invert = narrow(QComboBox(self))
        self.invert.addItems(list(INVERT_MODES))
        self.invert.setToolTip(
            "intensities as they are, or upside down: 'inverted where the background is "
            "bright' lets one model read fluorescence (bright nuclei on dark) and H&E or "
            "brightfield images (dark nuclei on bright) the same way round"
        )

    @property
    def spatial_dims(self) -> int:
        return 3 if self.dims.currentText() == "3D" else 2

    def task(self) -> dict[str, Any]:
        """The model's task, as :class:`~napari_unet.core.train.trainer.Trainer` takes it."""
        return {"kind": MODEL_KINDS[self.kind.currentText()], "boundary_width": 2}

    def out_channels(self) -> int:
        # An instance model predicts background, interior and boundary.
        return 3 if self.task()["kind"] == "instances" else self.classes.value()

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(
            channel_mode=INPUT_MODES[self.input_mode.currentText()],
            channel=self.input_channel.value(),
            invert=INVERT_MODES[self.invert.currentText()],
        )

    def network_settings(self) -> dict[str, Any]:
        """The :class:`~napari_unet.core.UNetConfig` fields chosen here: all but
        ``in_channels``, which the training images decide (read in the GUI thread; the
        network is built in the worker)."""
        return {
            "spatial_dims": self.spatial_dims,
            "out_channels": self.out_channels(),
            "depth": self.depth.value(),
            "base_features": self.base.value(),
            "padding": PADDINGS[self.padding.currentText()],
        }

    def apply_defaults(self, defaults: TrainingDefaults) -> None:
        self.depth.setValue(defaults.depth)
        self.base.setValue(defaults.base_features)
