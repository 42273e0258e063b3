"""The scale a model learns: the size of the labelled structures, measured on the training
data and stored in the model file, so that prediction can bring a user's image to it."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..data.object_size import ObjectScale, measure_labels, thin_structures
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
) -> ObjectScale | None:
    """The size of the structures labelled in ``pairs``: objects (instance labels, or the
    connected pieces of a compact semantic foreground) or widths (thin semantic structures).
    Only fully labelled pairs count (scribbles say nothing of sizes). None when none is."""
    dense = [p for p in pairs if not (p.targets == IGNORE).any()]
    if task.get("kind") == "instances":
        dense = [p for p in pairs if p.instances is not None]
        labels = [np.asarray(p.instances) for p in dense]
        kind = "objects"
    else:
        masks = [p.targets > 0 for p in dense]
        if not any(m.any() for m in masks):
            return None
        kind = "widths" if thin_structures(next(m for m in masks if m.any())) else "objects"
        labels = [ndi.label(m)[0] if kind == "objects" else m for m in masks]
    if not labels:
        return None
    step = max(1, len(dense) // CALIBRATION_IMAGES)
    chosen = list(range(0, len(dense), step))[:CALIBRATION_IMAGES]
    scale = measure_labels(
        [labels[i] for i in chosen] if kind == "objects" else labels,
        kind,
        [dense[i].image for i in chosen] if kind == "objects" else None,
    )
    if scale is not None and kind == "objects" and len(chosen) < len(dense):
        # Sizes from every image; the calibration from the chosen ones.
        sizes = measure_labels(labels, kind)
        if sizes is not None:
            scale = ObjectScale.from_dict({**sizes.to_dict(), "calibration": scale.calibration})
    if scale is not None and pixel_size:
        scale = ObjectScale.from_dict({**scale.to_dict(), "pixel_size": pixel_size, "unit": unit})
    return scale
