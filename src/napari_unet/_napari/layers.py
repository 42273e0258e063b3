"""Layer <-> array glue: what the widgets read from napari layers and how results go back.

A Labels layer written by napari-unet remembers a checksum of what was written; if the data no
longer matches, the user has edited it and it is never overwritten.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

METADATA_KEY = "napari_unet"


def layer_array(layer: Any) -> Any:
    """The full-resolution data of an image layer (level 0 of a multiscale pyramid)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def guess_channel_axis(layer: Any) -> int | None:
    """RGB(A) layers hold colour in their last axis; other layers are single-channel."""
    return -1 if getattr(layer, "rgb", False) else None


def shown_block(
    viewer: Any, layer: Any, spatial_dims: int, channel_axis: int | None
) -> tuple[int, ...]:
    """Index of the slice / time point of ``layer`` that the viewer shows: its leading axes
    (those beyond channel and spatial axes) at the viewer's current position; () for none."""
    from ..core.predict.inference import leading_shape

    data = layer_array(layer)
    lead = leading_shape(tuple(data.shape), spatial_dims, channel_axis)
    point = [round(c) for c in layer.world_to_data(viewer.dims.point)]
    if channel_axis is not None and not getattr(layer, "rgb", False):
        del point[channel_axis % data.ndim]
    return tuple(min(max(p, 0), n - 1) for p, n in zip(point[: len(lead)], lead, strict=True))


def spatial_transform(layer: Any, channel_axis: int | None) -> dict[str, tuple[float, ...]]:
    """Scale and translate of ``layer`` without its channel axis, for a result layer."""
    scale, translate = list(layer.scale), list(layer.translate)
    ndim = layer.data[0].ndim if getattr(layer, "multiscale", False) else layer.data.ndim
    if channel_axis is not None and not getattr(layer, "rgb", False):
        axis = channel_axis % ndim
        del scale[axis], translate[axis]
    return {"scale": tuple(scale), "translate": tuple(translate)}


def checksum(data: np.ndarray) -> str:
    """A fingerprint of a labels array, to notice later edits."""
    array = np.ascontiguousarray(data)
    return hashlib.blake2b(array.tobytes(), digest_size=16).hexdigest() + str(array.shape)


def was_edited(layer: Any) -> bool:
    """True unless ``layer`` holds exactly what napari-unet last wrote into it."""
    info = layer.metadata.get(METADATA_KEY)
    return info is None or info.get("checksum") != checksum(np.asarray(layer.data))


def free_name(viewer: Any, base: str) -> str:
    """``base``, or ``base (2)``, ``base (3)``... whichever is not a layer name yet."""
    names = {layer.name for layer in viewer.layers}
    if base not in names:
        return base
    n = 2
    while f"{base} ({n})" in names:
        n += 1
    return f"{base} ({n})"


def write_labels(
    viewer: Any,
    name: str,
    data: np.ndarray,
    source: Any,
    channel_axis: int | None,
    index: tuple[int, ...] | None = None,
    **meta: Any,
) -> Any:
    """Put ``data`` into the Labels layer ``name``, or into a new layer if that one was edited.

    With ``index`` (one slice / time point of a stack), only that block of an existing,
    unedited layer is replaced. Returns the layer written; scale and translate follow the
    ``source`` image layer.
    """
    target = next((layer for layer in viewer.layers if layer.name == name), None)
    reusable = (
        target is not None
        and target.__class__.__name__ == "Labels"
        and not was_edited(target)
        and target.data.shape == data.shape
    )
    if reusable:
        if index is not None:
            merged = np.array(target.data, copy=True)
            merged[index] = data[index]
            data = merged
        target.data = data
        target.metadata[METADATA_KEY] = {"checksum": checksum(data), **meta}
        return target
    info = {METADATA_KEY: {"checksum": checksum(data), **meta}}
    if target is not None:
        name = free_name(viewer, name)  # keep the user's edited (or foreign) layer intact
    return viewer.add_labels(
        data, name=name, metadata=info, **spatial_transform(source, channel_axis)
    )
