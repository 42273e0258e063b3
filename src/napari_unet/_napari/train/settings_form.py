"""The training settings form: how long and how to train (epochs, time budget, planning,
steps, rate, patches, validation, augmentation, device, live preview); :meth:`config` turns
it into the core's :class:`~napari_unet.core.TrainConfig`."""

from __future__ import annotations

from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QSpinBox,
    QWidget,
)

from ...core import TrainConfig
from ...core.train.defaults import TrainingDefaults
from ..common import Disclosure, device_combo


class TrainingSettings(QWidget):
    """Training settings; the CLI's ``train`` options of the same names."""

    def __init__(self, defaults: TrainingDefaults, parent: QWidget | None = None):
        super().__init__(parent)
        self.epochs = QSpinBox(self, minimum=1, maximum=100000, value=20)
        self.minutes = QDoubleSpinBox(self, minimum=0, maximum=10000, value=0, decimals=1)
        self.minutes.setSpecialValueText("no limit")
        self.plan = QCheckBox("plan the network for the budget", self)
        self.plan.setChecked(True)
        self.plan.setToolTip(
            "for a new model with a time budget: time a few settings on your data and this "
            "machine first, and train the one that learns most in the budget (depth, base "
            "features, patch and batch size below are then chosen for you)"
        )
        self.steps = QSpinBox(self, minimum=1, maximum=10000, value=20)
        # Decimals first: a value set before them is rounded to the default 2 decimals (0.00).
        self.lr = QDoubleSpinBox(self, decimals=5)
        self.lr.setRange(1e-5, 1.0)
        self.lr.setSingleStep(1e-4)
        self.lr.setValue(1e-3)
        self.patch = QSpinBox(
            self, minimum=16, maximum=1024, singleStep=16, value=defaults.patch_size
        )
        self.batch = QSpinBox(self, minimum=1, maximum=256, value=defaults.batch_size)
        self.val_fraction = QDoubleSpinBox(self, minimum=0, maximum=0.9, value=0.2, singleStep=0.05)
        self.device = device_combo(self)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("epochs", self.epochs)
        form.addRow("time budget (min)", self.minutes)
        form.addRow(self.plan)
        form.addRow("device", self.device)
        form.addRow(self._preview_row())
        # What a newcomer need not touch: one click away, closed.
        self.advanced = Disclosure("Advanced training settings", self)
        more = QFormLayout(self.advanced.body)
        more.setContentsMargins(12, 0, 0, 0)
        more.addRow("steps per epoch", self.steps)
        more.addRow("learning rate", self.lr)
        more.addRow("patch size", self.patch)
        more.addRow("batch size", self.batch)
        more.addRow("validation fraction", self.val_fraction)
        self._augment_widgets()
        more.addRow(self.augment)
        more.addRow("zoom up to", self.zoom)
        more.addRow("low resolution up to", self.low_resolution)
        form.addRow(self.advanced)

    def _augment_widgets(self) -> None:
        self.augment = QCheckBox("augmentation", self)
        self.augment.setChecked(True)
        # Zoom rescales each patch (core TrainConfig.zoom); 1 leaves sizes as labelled.
        self.zoom = QDoubleSpinBox(self, decimals=2, minimum=1.0, maximum=4.0, singleStep=0.1)
        self.zoom.setValue(1.0)
        self.zoom.setPrefix("x")
        self.zoom.setToolTip(
            "rescale each training patch by a random factor between 1/zoom and zoom (1: never);"
            " try 1.5 when the objects to segment vary in size more than the labelled ones"
        )
        self.augment.toggled.connect(self.zoom.setEnabled)
        # Blur as from larger pixels (core TrainConfig.low_resolution); 1 leaves patches sharp.
        self.low_resolution = QDoubleSpinBox(
            self, decimals=1, minimum=1.0, maximum=8.0, singleStep=0.5
        )
        self.low_resolution.setValue(1.0)
        self.low_resolution.setPrefix("x")
        self.low_resolution.setToolTip(
            "show half the training patches as pixels up to this many times larger would "
            "(shrunk, enlarged back; 1: never); try 4 when the model will meet images of "
            "lower magnification than the labelled ones"
        )
        self.augment.toggled.connect(self.low_resolution.setEnabled)

    def _preview_row(self) -> QHBoxLayout:
        self.preview = QCheckBox("live preview every", self)
        self.preview_every = QSpinBox(self, minimum=1, maximum=10000, value=20, suffix=" steps")
        row = QHBoxLayout()
        row.addWidget(self.preview)
        row.addWidget(self.preview_every)
        return row

    def config(self) -> TrainConfig:
        """The settings as the core's TrainConfig (checked against core/limits.py there)."""
        return TrainConfig(
            epochs=self.epochs.value(),
            max_minutes=self.minutes.value() or None,
            steps_per_epoch=self.steps.value(),
            batch_size=self.batch.value(),
            patch_size=self.patch.value(),
            learning_rate=self.lr.value(),
            val_fraction=self.val_fraction.value(),
            augment=self.augment.isChecked(),
            zoom=self.zoom.value(),
            low_resolution=self.low_resolution.value(),
            device=self.device.currentText(),
        )

    def apply_defaults(self, defaults: TrainingDefaults) -> None:
        self.patch.setValue(defaults.patch_size)
        self.batch.setValue(defaults.batch_size)
