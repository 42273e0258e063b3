"""The scale a model learns: the size of the labelled structures, measured on the training
data and stored in the model file, so that prediction can bring a user's image to it."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..data.field_of_view import field_of_view_calibration
from ..data.object_size import (
    ObjectScale,
    estimator_calibration,
    measure_labels,
    thin_structures,
)
from ..data.pixel_size import UNIT, common_pixel_size
from .data import TrainingPair
from .losses import IGNORE

#: Images the estimator is calibrated on (evenly spread over the data): its cost stays a few
#: seconds however many images there are.
CALIBRATION_IMAGES = 32


def measure_training_scale(
    pairs: list[TrainingPair],
    task: dict[str, Any],
    *,
    pixel_size: tuple[float, ...] | None = None,
    unit: str | None = None,
    calibrate: bool = True,
) -> ObjectScale | None:
    """The size of the structures labelled in ``pairs``: objects (instance labels, or the
    connected pieces of a compact semantic foreground) or widths (thin semantic structures),
    with the size estimator's calibration on up to :data:`CALIBRATION_IMAGES` of them unless
    ``calibrate`` is False (objects: :func:`estimator_calibration`; widths: against the
    field of view, :func:`field_of_view_calibration`). Only fully labelled pairs count (scribbles say nothing of sizes).
    None when none is."""
    if task.get("kind") == "instances":
        dense = [p for p in pairs if p.instances is not None]
        labels = [np.asarray(p.instances) for p in dense]
        kind = "objects"
    else:
        dense = [p for p in pairs if not (p.targets == IGNORE).any()]
        masks = [p.targets > 0 for p in dense]
        if not any(m.any() for m in masks):
            return None
        kind = "widths" if thin_structures(next(m for m in masks if m.any())) else "objects"
        labels = [ndi.label(m)[0] if kind == "objects" else m for m in masks]
    scale = measure_labels(labels, kind)
    if scale is None:
        return None
    values = scale.to_dict()
    if calibrate:
        step = max(1, len(dense) // CALIBRATION_IMAGES)
        chosen = list(range(0, len(dense), step))[:CALIBRATION_IMAGES]
        images = [dense[i].image for i in chosen]
        values["calibration"] = (
            estimator_calibration([labels[i] for i in chosen], images)
            if kind == "objects"
            else field_of_view_calibration(scale.size, images)
        )
    if pixel_size is None:  # the images' own, when they all share one (micrometres)
        pixel_size, unit = common_pixel_size([p.pixel_size for p in dense]), UNIT
    if pixel_size:
        values.update(pixel_size=pixel_size, unit=unit)
    return ObjectScale.from_dict(values)


def to_model_scale(
    pairs: list[TrainingPair], task: dict[str, Any], model_scale: ObjectScale | None
) -> tuple[list[TrainingPair], float]:
    """Fine-tuning data brought to the scale the model was trained at, as prediction brings
    images to it (:func:`~napari_unet.core.predict.scale.target_factor`): images linearly,
    labels by nearest neighbour (object targets redrawn from the rescaled objects). Returns
    the pairs and the factor (1: left as they are: sizes among the model's, unknown, or not
    measurable, as with scribbles)."""
    from ..data.rescale import rescale_image, rescaled_shape, to_original_grid
    from ..predict.instances import instance_targets
    from ..predict.scale import NATIVE_BAND, target_factor

    if model_scale is None or not pairs:
        return pairs, 1.0
    measured = measure_training_scale(pairs, task, calibrate=False)  # the size is enough
    if measured is None or measured.kind != model_scale.kind:
        return pairs, 1.0
    if model_scale.low <= measured.size <= model_scale.high:
        # Among the sizes the model learnt: for widths this band is also what keeps a few
        # images' median (skeleton widths come in steps) from passing for another scale.
        return pairs, 1.0
    factor = target_factor(measured.size, model_scale)
    if 1 / NATIVE_BAND <= factor <= NATIVE_BAND:
        return pairs, 1.0
    rescaled = []
    for pair in pairs:
        shape = rescaled_shape(pair.spatial_shape, (factor,) * len(pair.spatial_shape))
        targets = to_original_grid(pair.targets, shape, labels=True)
        instances = None
        if pair.instances is not None:
            instances = to_original_grid(pair.instances, shape, labels=True)
            redrawn = instance_targets(instances, int(task.get("boundary_width", 2)))
            targets = np.where(targets == IGNORE, IGNORE, redrawn).astype(targets.dtype)
        image = rescale_image(pair.image, factor)
        pixels = tuple(s / factor for s in pair.pixel_size) if pair.pixel_size else None
        rescaled.append(
            TrainingPair(
                image,
                targets,
                pair.name,
                instances,
                corrections=pair.corrections,
                kind=pair.kind,
                pixel_size=pixels,
            )
        )
    return rescaled, factor


def rescale_note(factor: float, model_scale: ObjectScale | None) -> str:
    """What :func:`to_model_scale` did, in words ("" when nothing), ending with "; "."""
    if factor == 1 or model_scale is None:
        return ""
    return (
        f"training images rescaled x{factor:.3g} to the size the model was trained at "
        f"({model_scale.noun} {model_scale.size:.1f} px); "
    )
