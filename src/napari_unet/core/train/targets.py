"""Labels as training targets: checking label images, turning dense labels or scribbles into
class targets (with "unannotated" where nothing was said), and finding the annotated blocks
of a stack. Corrections (strokes on a prediction) build on these, in corrections.py."""

from __future__ import annotations

import numpy as np

from ..errors import UserInputError
from .losses import IGNORE

LABEL_MODES = ("dense", "scribbles")


def check_labels(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    """Refuse label images that are not non-negative integers, with a message saying why."""
    labels = np.asarray(labels)
    if labels.dtype == bool:
        return labels.astype(np.uint8)
    if labels.dtype.kind == "f":
        raise UserInputError(
            f"{name} are floating point ({labels.dtype}); labels must be an integer image "
            "(0 = background, 1, 2, ... = classes or objects), e.g. saved as uint8 or uint16"
        )
    if labels.dtype.kind not in "iu":
        raise UserInputError(
            f"{name} have unsupported type {labels.dtype}; expected an integer image"
        )
    if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
        raise UserInputError(
            f"{name} contain negative values (minimum {labels.min()}); labels must be >= 0"
        )
    return labels


def labels_to_targets(
    labels: np.ndarray,
    num_classes: int = 2,
    mode: str = "dense",
    ignore_value: int | None = None,
    name: str = "labels",
) -> np.ndarray:
    """Turn user labels into an int16 target map with ``IGNORE`` for unannotated pixels.

    mode "dense": 0 = background and every pixel is annotated (a corrected prediction, a
    ground-truth mask). With ``num_classes`` <= 2 any value > 0 is foreground (so instance
    masks and {0, 255} masks work); otherwise values are class indices below ``num_classes``.
    ``ignore_value`` marks pixels to skip.
    mode "scribbles": 0 = not annotated, 1 = background, 2.. = classes (napari's label 1 is
    the first colour a user paints with).
    """
    if mode not in LABEL_MODES:
        raise UserInputError(f"label mode must be one of {LABEL_MODES}, got {mode!r}")
    labels = check_labels(labels, name)
    values = labels.astype(np.int64)
    if mode == "scribbles":
        unannotated = values == 0
        values = values - 1
    else:
        unannotated = (
            values == ignore_value if ignore_value is not None else np.zeros(values.shape, bool)
        )
    if num_classes <= 2:
        targets = (values > 0).astype(np.int16)
    else:
        top = int(values[~unannotated].max()) if (~unannotated).any() else 0
        if top >= num_classes:
            offset = 1 if mode == "scribbles" else 0
            raise UserInputError(
                f"{name} contain value {top + offset}, but the model has {num_classes} classes "
                f"(values up to {num_classes - 1 + offset} are allowed in {mode} mode)"
            )
        targets = values.astype(np.int16)
    targets[unannotated] = IGNORE
    return targets


def annotated_blocks(
    image: np.ndarray,
    labels: np.ndarray,
    *,
    spatial_dims: int,
    channel_axis: int | None = None,
) -> list[tuple[tuple[int, ...], np.ndarray, np.ndarray]]:
    """Cut an image and its labels into the blocks a model of ``spatial_dims`` trains on.

    A z-stack or time series labelled for a 2D model gives one (index, image, labels) block
    per slice; only blocks with at least one non-zero label are kept, so a user can annotate a
    few slices of a long stack. Image and labels must agree on every non-channel axis.
    """
    from ..predict.inference import leading_shape

    image_shape = list(image.shape)
    if channel_axis is not None:
        del image_shape[channel_axis % image.ndim]
    if tuple(image_shape) != tuple(labels.shape):
        raise UserInputError(
            f"the labels have shape {tuple(labels.shape)} but the image has shape {tuple(image_shape)} "
            "(without its channel axis); they must match pixel for pixel"
        )
    lead = leading_shape(tuple(image.shape), spatial_dims, channel_axis)
    view = image if channel_axis is None else np.moveaxis(image, channel_axis, -1)
    blocks = []
    for index in np.ndindex(*lead) if lead else [()]:
        block_labels = np.asarray(labels[index])
        if block_labels.any():
            blocks.append((index, np.asarray(view[index]), block_labels))
    return blocks


# Below this many images, holding out whole images would cost too much of the training data:
# a slab of every image is held out instead.
