"""The round field of view of a fundus camera (or a microscope's circular field): its diameter
in pixels is the scale of the picture.

Vessel widths cannot be read reliably from the image itself (the smallest vessels are at the
resolution limit at one magnification and resolved at another; ridge filters answer for the
large ones and for the frame's edge). A fundus camera's field of view, a lit disc in a dark
frame, is measured exactly at any magnification, and retinal image analysis commonly brings
photographs to one field-of-view diameter. The ratio of vessel width to field of view depends
on the camera's angle of view (30-50 degrees for most cameras: DRIVE's is 45), so the estimate
is as good as the user's camera is like the training camera; a width given by hand overrides it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .normalize import BlockSource

#: The view measured has at most this many pixels along its longest side (read by striding):
#: a diameter to a few pixels needs no more, and a lazy image is never read whole.
VIEW_EDGE = 512
#: Of the view's intensity range: darker is frame.
FRAME_LEVEL = 0.1
#: The lit region must fill a disc (clipped by the image's edges) this well.
MIN_DISC_FIT = 0.9
#: ... and leave at least this much of the picture to the frame.
MIN_FRAME_SHARE = 0.05


def source_view(source: BlockSource) -> tuple[np.ndarray, int]:
    """A strided grey view (mean of the model's input channels) of a 2D ``source`` and its step."""
    step = max(1, -(-max(source.shape) // VIEW_EDGE))
    block = source.read(tuple(slice(None, None, step) for _ in source.shape))
    return np.asarray(block, np.float32).mean(axis=0), step


def field_of_view_diameter(grey: np.ndarray) -> float | None:
    """The diameter, in pixels of ``grey`` (2D), of a lit disc in a dark frame, or None when the
    picture is not one (no dark frame, or a lit region that is not round)."""
    grey = np.asarray(grey, np.float32)
    if grey.ndim != 2 or min(grey.shape) < 16 or not np.isfinite(grey).all():
        return None
    low, high = np.percentile(grey, [0.5, 99.5])
    if high <= low:
        return None
    lit = ndi.binary_fill_holes(grey > low + FRAME_LEVEL * (high - low))
    regions, count = ndi.label(lit)
    if count == 0:
        return None
    largest = np.argmax(np.bincount(regions.ravel())[1:]) + 1
    lit = regions == largest
    if lit.mean() > 1 - MIN_FRAME_SHARE:
        return None
    rows, cols = lit.sum(axis=1), lit.sum(axis=0)
    diameter = float(max(rows.max(), cols.max()))
    # The disc's centre: along the axis where its widest line lies, that line; across it, the
    # middle of the widest line (the disc may be clipped by the image's edges either way).
    centre_row = float(np.flatnonzero(rows == rows.max()).mean())
    centre_col = float(np.flatnonzero(cols == cols.max()).mean())
    yy, xx = np.ogrid[: grey.shape[0], : grey.shape[1]]
    disc = (yy - centre_row) ** 2 + (xx - centre_col) ** 2 <= (diameter / 2) ** 2
    fit = np.logical_and(disc, lit).sum() / max(np.logical_or(disc, lit).sum(), 1)
    return diameter if fit >= MIN_DISC_FIT else None


def source_field_of_view(source: BlockSource) -> float | None:
    """:func:`field_of_view_diameter` of a 2D ``source``, in the source's pixels."""
    if len(source.shape) != 2:
        return None
    grey, step = source_view(source)
    found = field_of_view_diameter(grey)
    return None if found is None else found * step


def field_of_view_calibration(width: float, images: list[np.ndarray]) -> float | None:
    """``width`` (the median structure width of a model's training labels) over the median
    field-of-view diameter of its training ``images`` (normalised, channels first): a
    user's field of view times this is the width the model would see there. None when no
    image shows a round field of view."""
    from .normalize import PreparedSource

    found = [source_field_of_view(PreparedSource(np.asarray(image))) for image in images]
    diameters = [d for d in found if d]
    return round(width / float(np.median(diameters)), 6) if diameters else None
