"""Training pairs chosen on layers: one row per (image layer, labels layer, kind of labels
[, the prediction that strokes correct]), and the training pairs the core trains on."""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtWidgets import QComboBox, QFrame, QGridLayout, QLabel, QPushButton, QWidget

from ...core import Preprocessing, UserInputError, prepare_pair
from ...core.data.pixel_size import layer_pixel_size
from ...core.train.corrections import correction_blocks
from ...core.train.data import TrainingPair
from ...core.train.targets import annotated_blocks
from ..common import LayerCombo, narrow
from ..layers import (
    METADATA_KEY,
    guess_channel_axis,
    layer_array,
    spatial_transform,
    was_edited,
)

LABEL_KINDS = {"dense": "dense", "scribbles": "scribbles", "strokes on a prediction": "corrections"}
LABEL_KIND_HELP = (
    "dense: every pixel is labelled (e.g. a corrected prediction); 0 = background.\n"
    "scribbles: only painted pixels count; 0 = not annotated, 1 = background, 2 = object.\n"
    "strokes on a prediction: strokes (1 = background, 2 = object) that correct the prediction\n"
    "chosen beside them, whose uncorrected rest counts as labelled: a background stroke on an\n"
    "object deletes it, an object stroke marks a missed object without drawing its outline."
)
PREDICTION_HELP = (
    "the prediction the strokes correct (a Labels layer written by Segment, edited or not);\n"
    "what no stroke corrects is accepted as it is"
)


class PairRow(QFrame):
    """One training pair: an image layer, its labels layer and the kind of labels, one under
    the other (the dock stays narrow)."""

    def __init__(self, viewer: Any, parent: QWidget | None = None):
        super().__init__(parent)
        import napari

        self.image = LayerCombo(viewer, napari.layers.Image, self)
        self.labels = LayerCombo(viewer, napari.layers.Labels, self)
        self.kind = narrow(QComboBox(self))
        self.kind.addItems(LABEL_KINDS)
        self.kind.setToolTip(LABEL_KIND_HELP)
        self.prediction = LayerCombo(viewer, napari.layers.Labels, self)
        self.prediction.setToolTip(PREDICTION_HELP)
        self.prediction.setVisible(False)
        self.kind.currentIndexChanged.connect(self._show_prediction)
        # Until the user picks labels, they follow the loop: the prediction of the chosen
        # image that the user corrected.
        self._labels_picked = False
        self.labels.activated.connect(self.mark_picked)
        self.image.currentIndexChanged.connect(self.suggest_labels)
        self.labels.refreshed.connect(self.suggest_labels)
        self.remove = QPushButton("✕", self)
        self.remove.setToolTip("remove this pair")
        self.remove.setMaximumWidth(28)
        self.prediction_label = QLabel("corrects", self)
        self.prediction_label.setVisible(False)
        self.setFrameShape(QFrame.StyledPanel)
        grid = QGridLayout(self)
        grid.setContentsMargins(4, 4, 4, 4)
        rows = (("image", self.image), ("labels", self.labels), ("kind", self.kind))
        for row, (text, widget) in enumerate(rows):
            grid.addWidget(QLabel(text, self), row, 0)
            grid.addWidget(widget, row, 1)
        grid.addWidget(self.prediction_label, 3, 0)
        grid.addWidget(self.prediction, 3, 1)
        grid.addWidget(self.remove, 0, 2)
        grid.setColumnStretch(1, 1)

    def mark_picked(self, *_: Any) -> None:
        """The labels were chosen (by the user, or for them): stop suggesting others."""
        self._labels_picked = True

    def suggest_labels(self, *_: Any) -> None:
        """Choose the labels Segment wrote for the chosen image, the latest corrected one
        first, unless the user picked labels themselves."""
        image = self.image.layer()
        if self._labels_picked or image is None:
            return
        written = [
            layer
            for layer in self.labels.layers()
            if (layer.metadata.get(METADATA_KEY) or {}).get("image") == image.name
            or layer.name == f"{image.name} U-Net"
        ]
        if written:
            edited = [layer for layer in written if was_edited(layer)]
            self.labels.select((edited or written)[-1])

    @property
    def label_mode(self) -> str:
        return LABEL_KINDS[self.kind.currentText()]

    def prediction_layer(self) -> Any:
        """The prediction that strokes correct; None unless the labels are corrections."""
        return self.prediction.layer() if self.label_mode == "corrections" else None

    def _show_prediction(self, *_: Any) -> None:
        corrections = self.label_mode == "corrections"
        self.prediction.setVisible(corrections)
        self.prediction_label.setVisible(corrections)
        if corrections:
            # Offer a layer Segment wrote (other than the strokes) rather than the first one.
            written = [
                layer
                for layer in self.prediction.layers()
                if METADATA_KEY in layer.metadata and layer is not self.labels.layer()
            ]
            if written:
                self.prediction.select(written[-1])


SCRIBBLE_HELP = (
    "add an empty Labels layer over the first pair's image, chosen as its scribbles: paint\n"
    "label 1 on background and label 2 on objects (the brush starts on 2); unpainted pixels\n"
    "are ignored by training"
)


def add_scribble_layer(viewer: Any, image_layer: Any) -> Any:
    """An empty Labels layer the shape of ``image_layer``'s pixels (without its channels), on
    the same grid, ready to paint objects (label 2)."""
    channel_axis = guess_channel_axis(image_layer)
    shape = list(np.shape(layer_array(image_layer)))
    if channel_axis is not None:
        del shape[channel_axis % len(shape)]
    layer = viewer.add_labels(
        np.zeros(shape, np.uint8),
        name=f"{image_layer.name} scribbles",
        **spatial_transform(image_layer, channel_axis),
    )
    layer.selected_label = 2
    layer.brush_size = max(3, min(shape[-2:]) // 60)
    layer.mode = "paint"
    return layer


def build_pairs(
    rows: list[tuple[Any, ...]],
    spatial_dims: int,
    preprocessing: Preprocessing,
    in_channels: int | None,
    num_classes: int,
    task: dict[str, Any] | None = None,
) -> list[TrainingPair]:
    """Training pairs from (image layer, labels layer, label mode[, prediction layer]) rows;
    slices of stacks that carry annotations (for corrections: strokes) become separate pairs
    for a 2D model."""
    pairs = []
    for image_layer, labels_layer, mode, *rest in rows:
        if image_layer is None or labels_layer is None:
            raise UserInputError("choose an image layer and a labels layer for every training pair")
        channel_axis = guess_channel_axis(image_layer)
        where = {"spatial_dims": spatial_dims, "channel_axis": channel_axis}
        image, labels = layer_array(image_layer), np.asarray(labels_layer.data)
        if mode == "corrections":
            prediction = _prediction_layer(labels_layer, rest[0] if rest else None).data
            blocks = correction_blocks(image, labels, prediction, **where)
        else:
            blocks = [(*block, None) for block in annotated_blocks(image, labels, **where)]
        if not blocks:
            raise UserInputError(
                f"labels layer {labels_layer.name!r} is empty: paint some labels first "
                "(scribbles: 1 = background, 2 = object)"
                if mode != "corrections"
                else f"no slice of {labels_layer.name!r} has a stroke: the slices with strokes "
                "are the ones trained on (1 = background, 2 = object)"
            )
        for index, block, block_labels, block_prediction in blocks:
            name = image_layer.name + (f" {index}" if index else "")
            pairs.append(
                prepare_pair(
                    block,
                    block_labels,
                    spatial_dims=spatial_dims,
                    preprocessing=preprocessing,
                    in_channels=in_channels,
                    num_classes=num_classes,
                    label_mode=mode,
                    channel_axis=-1 if channel_axis is not None else None,
                    name=name,
                    task=task,
                    prediction=block_prediction,
                    pixel_size=layer_pixel_size(image_layer, spatial_dims),
                )
            )
            in_channels = pairs[0].image.shape[0]
    return pairs


def _prediction_layer(strokes_layer: Any, prediction_layer: Any) -> Any:
    """The layer ``strokes_layer`` corrects: chosen, and not the strokes themselves."""
    if prediction_layer is None:
        raise UserInputError(
            f"labels layer {strokes_layer.name!r} holds strokes on a prediction: choose the "
            "prediction layer they correct beside it"
        )
    if prediction_layer is strokes_layer:
        raise UserInputError(
            f"{strokes_layer.name!r} is chosen as both the strokes and the prediction they "
            "correct: paint the strokes on a new Labels layer"
        )
    return prediction_layer
