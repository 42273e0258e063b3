"""Sample data for File > Open Sample; works offline (files ship with the package or skimage)."""

from __future__ import annotations

from typing import Any

from ..core import io
from ..samples import sample_path

LayerDataTuple = tuple[Any, dict[str, Any], str]


def nuclei_sample() -> list[LayerDataTuple]:
    """A 520 x 696 fluorescence nuclei image (DSB2018, CC0) and its ground-truth labels."""
    image = io.read_image(sample_path("nuclei"))
    labels = io.read_labels(sample_path("nuclei_labels"))
    return [
        (image, {"name": "nuclei", "colormap": "gray"}, "image"),
        (labels, {"name": "nuclei ground truth", "visible": False, "opacity": 0.5}, "labels"),
    ]


def retina_sample() -> list[LayerDataTuple]:
    """skimage's retina fundus photograph (RGB), shipped inside scikit-image."""
    from skimage import data

    return [(data.retina(), {"name": "retina", "rgb": True}, "image")]
