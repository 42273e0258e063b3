"""The Segment tab's advanced options: channel axis, thresholds, smallest object, tile size,
matching objects across slices, the slice shown only, test-time augmentation (a section
that opens and closes)."""

from __future__ import annotations

from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QSpinBox, QWidget

from ..common import Disclosure, narrow

#: When objects are matched across the slices of a stack.
MATCH_MODES = {"time series": "time", "always": "always", "never": "never"}
TIME_LABELS = {"t", "time", "frame", "frames"}


class SegmentOptions(Disclosure):
    """What a newcomer need not touch, closed by default."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Advanced", parent)
        self.channel_axis = narrow(QComboBox(self), 8)
        self.threshold = QDoubleSpinBox(
            self, minimum=0.01, maximum=0.99, singleStep=0.05, value=0.5
        )
        # 0 shows as "auto": a tenth of the area of the model's median object.
        self.min_size = QSpinBox(self, minimum=0, maximum=10**6, value=0)
        self.min_size.setSpecialValueText("auto")
        self.min_size.setToolTip(
            "smaller objects are removed (auto: a tenth of the area of the model's median object)"
        )
        self.seed_threshold = QDoubleSpinBox(
            self, minimum=0.05, maximum=0.95, singleStep=0.05, value=0.5
        )
        self.seed_threshold.setToolTip(
            "instance models: interior probability that starts an object (lower finds more, may split)"
        )
        # 0 shows as "auto": the whole image in one window when it fits, else large tiles.
        self.tile_size = QSpinBox(self, minimum=0, maximum=8192, singleStep=64, value=0)
        self.tile_size.setSpecialValueText("auto")
        self.current_only = QCheckBox("only the slice shown", self)
        self.current_only.setToolTip(
            "segment only the slice (or time point) the viewer shows, not the whole stack"
        )
        self.match_slices = narrow(QComboBox(self), 8)
        self.match_slices.addItems(list(MATCH_MODES))
        self.match_slices.setToolTip(
            "a stack segmented slice by slice (time points, or z with a 2D model): give each "
            "object the label of the object it overlaps most in the slice before, so it keeps "
            "one label through the stack (instances only). 'time series' does so when the "
            "stack axis is labelled t or time in napari"
        )
        self.tta = QCheckBox("test-time augmentation", self)
        self.tta.setToolTip(
            "average over the 8 flips and rotations of the image: a little more accurate, "
            "8 times slower"
        )
        adv = QFormLayout(self.body)
        adv.setContentsMargins(12, 0, 0, 0)
        adv.addRow("channel axis", self.channel_axis)
        adv.addRow("threshold", self.threshold)
        adv.addRow("min. size (px)", self.min_size)
        adv.addRow("seed threshold", self.seed_threshold)
        adv.addRow("tile size", self.tile_size)
        adv.addRow("match slices", self.match_slices)
        adv.addRow(self.current_only)
        adv.addRow(self.tta)
