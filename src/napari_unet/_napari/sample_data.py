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


# The bundled retina model learnt vessels at DRIVE's resolution: a field of view about 540
# pixels across. skimage's photograph has one of about 1390 pixels.
DRIVE_FIELD_OF_VIEW = 540


def retina_sample() -> list[LayerDataTuple]:
    """skimage's retina fundus photograph (RGB, shipped inside scikit-image), scaled to the
    resolution the bundled ``retina`` model was trained at."""
    from skimage import data
    from skimage.transform import rescale

    photo = data.retina()
    field = (photo.max(axis=-1) > 20).any(axis=0).sum()  # width of the lit field of view
    small = rescale(photo, DRIVE_FIELD_OF_VIEW / field, channel_axis=-1, anti_aliasing=True)
    image = (small * 255).round().astype("uint8")
    return [(image, {"name": "retina", "rgb": True}, "image")]
