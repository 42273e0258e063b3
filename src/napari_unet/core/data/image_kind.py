"""What kind of picture an image is, roughly: fluorescence (bright objects on dark), brightfield
or stained tissue (dark objects on bright), or a colour fundus photograph (a lit disc in a dark
frame, red over blue). Enough to warn before a model meets images unlike any it learnt from
(a nuclei model on a fundus photograph, a vessel model on fluorescence), not a classifier.

Measured on the shared data (DSB2018 train and val by their ``meta.json`` kinds, DRIVE):
``python benchmarks/image_kinds.py``; results in benchmarks/README.md.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np

KINDS = ("fluorescence", "brightfield", "fundus")
VIEW = 256  # the longest side of the view looked at: the answer needs no detail
DARK = 0.08  # of the image's range: frame, or fluorescence background


def _colour_view(image: Any, channel_axis: int | None) -> np.ndarray:
    """A small (H, W, C) float view in [0, 1] of an image (C = 1 for grey images; a stack:
    its middle slice), read by striding the array itself: a lazy (Dask, Zarr) image is
    never read whole."""
    ndim = len(image.shape)
    channel = None if channel_axis is None else channel_axis % ndim
    plane = [axis for axis in range(ndim) if axis != channel][-2:]
    step = max(1, max(image.shape[axis] for axis in plane) // VIEW)
    index = tuple(
        slice(0, 3) if axis == channel
        else slice(None, None, step) if axis in plane
        else image.shape[axis] // 2
        for axis in range(ndim)
    )  # fmt: skip
    array = np.asarray(image[index])
    if channel is None:
        array = array[..., None]
    else:  # the channel axis's place once the stack axes before it are indexed away
        dropped = sum(1 for axis in range(channel) if axis not in plane)
        array = np.moveaxis(array, channel - dropped, -1)
    view = array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer) and np.iinfo(array.dtype).max == 255:
        return view / 255
    top = float(np.percentile(view, 99.9)) or 1.0
    low = float(view.min())
    return np.clip((view - low) / max(top - low, 1e-6), 0, 1)


def image_kind(image: Any, channel_axis: int | None = None) -> str:
    """One of :data:`KINDS` for a 2D image (a stack: its middle slice), ``channel_axis`` its
    colour or channel axis (None: grey)."""
    view = _colour_view(image, channel_axis)
    if view.shape[-1] >= 3:
        r, g, b = (view[..., i] for i in range(3))
        brightest = view.max(axis=-1)
        dark = brightest < DARK
        lit = ~dark
        if lit.sum() > 0.3 * lit.size:
            mean_r, mean_g, mean_b = (float(c[lit].mean()) for c in (r, g, b))
            framed = 0.15 < dark.mean() < 0.6 and not dark[view.shape[0] // 2].all()
            if framed and mean_r > 1.4 * mean_b and mean_r > mean_g:
                return "fundus"
        grey = float(np.abs(r - g).mean() + np.abs(g - b).mean()) < 0.02
        if not grey:
            return "fluorescence" if float(np.median(brightest)) < 0.25 else "brightfield"
        view = view[..., :1]
    # Grey: fluorescence lights objects on a dark background; brightfield the reverse.
    return "fluorescence" if float(np.median(view)) < 0.35 else "brightfield"


def kinds_entry(kinds: Iterable[str | None]) -> dict[str, Any]:
    """``{"image_kinds": {kind: count}}`` for a training run's history (empty when no image
    had a kind, as for pairs prepared without their raw image)."""
    counts = Counter(kind for kind in kinds if kind)
    return {"image_kinds": dict(counts)} if counts else {}


def model_image_kinds(model: Any) -> set[str] | None:
    """The kinds of image ``model`` learnt from (recorded by its training runs, or for the
    bundled models from their training data); None when unknown (older files, packages)."""
    history = getattr(model, "history", None) or {}
    kinds = set(history.get("image_kinds", {}))
    for run in history.get("runs", []):
        kinds |= set(run.get("image_kinds", {}))
    return kinds or None


def mismatch_warning(model: Any, image: Any, channel_axis: int | None) -> str | None:
    """A sentence to show before segmenting when ``image`` looks unlike every image ``model``
    learnt from (None when it looks like one of them, or nothing is known)."""
    known = model_image_kinds(model)
    if known is None:
        return None
    kind = image_kind(image, channel_axis)
    if kind in known:
        return None
    return (
        f"this looks like a {kind} image, but the model learnt from "
        f"{' and '.join(sorted(known))} images only: expect poor results (fine-tune it on a "
        "few corrected images like this one, or choose another model)"
    )
