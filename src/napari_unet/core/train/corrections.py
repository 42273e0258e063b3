"""Training targets from a prediction and a few correcting strokes.

A hurried user does not redraw what the model got right: they paint a stroke across each
nucleus it missed and over each object it invented, and expect the rest of the prediction to
count as accepted. This module turns (prediction, strokes) into targets:

- the prediction is accepted as dense labels (instance labels for instance models, a class
  map for semantic ones);
- a predicted object touched by a background stroke is deleted: all its pixels become
  background ("this is not a nucleus");
- an object stroke outside the accepted objects marks a missed object whose outline nobody
  drew: its stroke pixels train the object class, and the predicted background around it,
  within half the stroke's length, is left unannotated rather than taught as background;
- every other stroke pixel trains its own class.

Merged or badly outlined objects are corrected in the prediction layer itself (napari's
brush, eraser and fill), which this accepts as it is.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserInputError
from .losses import IGNORE


def correction_targets(
    prediction: np.ndarray,
    strokes: np.ndarray,
    *,
    task: dict | None = None,
    num_classes: int = 2,
    name: str = "labels",
) -> np.ndarray:
    """int16 targets (``IGNORE`` = unannotated) from a prediction and correcting strokes.

    ``strokes`` follow the scribble convention: 0 = no stroke, 1 = background, 2.. = classes
    (2 = object for an instance model). ``prediction`` is what the model wrote: instance
    labels (0 = background) for an instance ``task``, else a class map (0 = background).
    """
    from scipy import ndimage as ndi

    from ..predict.instances import INTERIOR, instance_targets
    from .targets import check_labels, labels_to_targets

    prediction = check_labels(prediction, f"prediction for {name}").astype(np.int64)
    strokes = check_labels(strokes, name).astype(np.int64)
    if prediction.shape != strokes.shape:
        raise UserInputError(
            f"{name} have shape {strokes.shape} but the prediction they correct has shape "
            f"{prediction.shape}; paint the strokes on a layer of the prediction's size"
        )
    instances = bool(task and task.get("kind") == "instances")
    top = int(strokes.max(initial=0))
    allowed = 2 if instances else max(num_classes, 2)
    if top > allowed:
        raise UserInputError(
            f"{name} contain stroke value {top}; strokes are 1 = background, "
            + ("2 = object" if instances else f"2..{allowed} = classes 1..{allowed - 1}")
        )

    background_strokes = strokes == 1
    object_strokes = strokes >= 2
    # Objects: instance labels for an instance model, connected foreground for a semantic one.
    objects = prediction if instances else ndi.label(prediction > 0)[0]
    deleted = np.unique(objects[background_strokes & (objects > 0)])
    accepted = np.where(np.isin(objects, deleted), 0, prediction)

    if instances:
        targets = instance_targets(accepted, int((task or {}).get("boundary_width", 2)))
        stroke_classes = np.full(strokes.shape, INTERIOR, np.int16)
    else:
        targets = labels_to_targets(accepted, num_classes, "dense", name=f"prediction for {name}")
        stroke_classes = (
            (strokes - 1).astype(np.int16) if num_classes > 2 else np.ones_like(strokes, np.int16)
        )

    missed = object_strokes & (accepted == 0)
    if missed.any():
        targets[_unknown_outline(missed) & (accepted == 0)] = IGNORE
    targets[background_strokes] = 0
    targets[object_strokes] = stroke_classes[object_strokes]
    return targets


def correction_blocks(
    image: np.ndarray,
    strokes: np.ndarray,
    prediction: np.ndarray,
    *,
    spatial_dims: int,
    channel_axis: int | None = None,
) -> list[tuple[tuple[int, ...], np.ndarray, np.ndarray, np.ndarray]]:
    """(index, image, strokes, prediction) blocks a model of ``spatial_dims`` trains on.

    A single image is always a block, strokes or not (no stroke: the prediction is accepted
    whole); of a stack, only the slices with a stroke are, as in
    :func:`~napari_unet.core.train.data.annotated_blocks`.
    """
    from .targets import annotated_blocks

    strokes, prediction = np.asarray(strokes), np.asarray(prediction)
    if prediction.shape != strokes.shape:
        raise UserInputError(
            f"the strokes have shape {strokes.shape} but the prediction they correct has shape "
            f"{prediction.shape}; they must match pixel for pixel"
        )
    marker = np.ones(strokes.shape, bool) if strokes.ndim == spatial_dims else strokes
    blocks = annotated_blocks(image, marker, spatial_dims=spatial_dims, channel_axis=channel_axis)
    return [(index, block, strokes[index], prediction[index]) for index, block, _ in blocks]


def _unknown_outline(missed: np.ndarray) -> np.ndarray:
    """Pixels within half its length of each stroke of a missed object (length: the longest
    side of the stroke's bounding box), where the object's unseen outline may lie."""
    from scipy import ndimage as ndi

    components, count = ndi.label(missed, structure=np.ones((3,) * missed.ndim, bool))
    radius = np.zeros(count + 1)
    for index, box in enumerate(ndi.find_objects(components), start=1):
        radius[index] = max(s.stop - s.start for s in box) / 2 + 1
    distance, nearest = ndi.distance_transform_edt(components == 0, return_indices=True)
    owner = components[tuple(nearest)]
    return distance <= radius[owner]
