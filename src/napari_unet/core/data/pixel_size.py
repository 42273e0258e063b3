"""Pixel sizes from what image files and napari layers say, in micrometres.

Read from OME-Zarr (``coordinateTransformations`` scale, axis units), OME-TIFF
(``PhysicalSizeX/Y/Z``), ImageJ TIFF (resolution tags with the ``unit=`` of its description,
``spacing`` for z) and plain TIFF resolution tags in centimetres or inches. Plain tags of a
pixel of 10 um or more are a document's print resolution (72, 96 or 300 dpi: 85-350 um),
which paint programs write into every file, not a microscope's: they are ignored. A model
and an image are compared only in micrometres (:func:`~napari_unet.core.predict.scale.choose_scale`).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

MICROMETRES_PER = {
    "nanometer": 1e-3, "nm": 1e-3,
    "micrometer": 1.0, "micron": 1.0, "microns": 1.0, "um": 1.0, "\u00b5m": 1.0, "\u03bcm": 1.0,
    "millimeter": 1e3, "mm": 1e3, "centimeter": 1e4, "cm": 1e4, "meter": 1e6, "m": 1e6,
    "inch": 25400.0, "in": 25400.0,
}  # fmt: skip
#: Resolution tags without a microscope's unit describing pixels this large are a print setting.
PRINT_RESOLUTION_UM = 10.0
UNIT = "micrometer"


def micrometres(value: float, unit: Any) -> float | None:
    """``value`` in ``unit`` (a name or abbreviation, a pint unit, or None for micrometres)
    in micrometres; None for units that are not lengths (pixels) or not finite."""
    factor = 1.0 if unit is None else MICROMETRES_PER.get(str(unit).strip().lower())
    if factor is None or not (math.isfinite(value) and value > 0):
        return None
    return float(value) * factor


def in_micrometres(values: Any, units: Any) -> tuple[float, ...] | None:
    """Per-axis ``values`` in micrometres (``units``: one unit, one per axis, or None for
    micrometres); None when any is not a length."""
    values = [float(v) for v in values]
    units = list(units) if isinstance(units, (list, tuple)) else [units] * len(values)
    found = [micrometres(v, u) for v, u in zip(values, units, strict=True)]
    if any(f is None for f in found):
        return None
    return tuple(float(f"{f:.9g}") for f in found if f is not None)  # 0.65, not 0.6499999


def layer_pixel_size(layer: Any, spatial_dims: int) -> tuple[float, ...] | None:
    """A napari layer's pixel size in micrometres: its ``scale`` in its ``units``. A scale
    other than 1 in napari's default unit (pixel) is taken as micrometres (readers often set
    the scale alone); a scale of 1 pixel says nothing (None)."""
    scale = np.asarray(layer.scale, float)[-spatial_dims:]
    units = [str(u) for u in tuple(getattr(layer, "units", None) or ())[-spatial_dims:]]
    if not units or all(u == "pixel" for u in units):
        return None if np.allclose(scale, 1) else in_micrometres(scale, None)
    return in_micrometres(scale, units)


def file_pixel_size(path: str | os.PathLike, spatial_dims: int) -> tuple[float, ...] | None:
    """The pixel size of an image file per spatial axis (z, y, x), in micrometres, when its
    metadata says; None otherwise (PNG, JPEG, a TIFF without a physical resolution)."""
    from .ome_zarr import is_ome_zarr

    path = Path(path)
    if is_ome_zarr(path):
        from .ome_zarr import read_ome_zarr

        return ome_zarr_pixel_size(read_ome_zarr(path), spatial_dims)
    if path.suffix.lower() not in (".tif", ".tiff") or not path.is_file():
        return None
    try:
        return _tiff_pixel_size(path, spatial_dims)
    except Exception:  # metadata a reader trips over says nothing we can use
        return None


def ome_zarr_pixel_size(image: Any, spatial_dims: int) -> tuple[float, ...] | None:
    """The spatial scale of an :class:`~.ome_zarr.OmeZarrImage`, in micrometres (axes without
    a unit are taken as micrometres, the usual unit of microscopy; NGFF leaves it open)."""
    axes = [i for i, axis in enumerate(image.axes) if axis in "zyx"][-spatial_dims:]
    if len(axes) != spatial_dims:
        return None
    units = [image.units.get(image.axes[i]) for i in axes]
    return in_micrometres([image.scale[i] for i in axes], units)


def _tiff_pixel_size(path: Path, spatial_dims: int) -> tuple[float, ...] | None:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if tif.is_ome and tif.ome_metadata:
            found = _ome_tiff(tif.ome_metadata, spatial_dims)
            if found:
                return found
        tags = tif.pages.first.tags
        x_tag, y_tag, unit_tag = (
            tags.get(n) for n in ("XResolution", "YResolution", "ResolutionUnit")
        )
        per_unit = [_ratio(t.value) if t is not None else None for t in (y_tag, x_tag)]
        imagej = tif.imagej_metadata or {}
    sizes = [1 / p for p in per_unit if p]
    if len(sizes) != 2:
        return None
    depth = None
    if imagej.get("unit"):
        unit: str | None = str(imagej["unit"]).replace("\\u00B5", "\u00b5")
        plane = in_micrometres(sizes, unit)
        spacing = imagej.get("spacing")
        depth = micrometres(float(spacing), unit) if spacing else None
    else:
        unit = {2: "inch", 3: "cm"}.get(int(unit_tag.value) if unit_tag is not None else 2)
        plane = in_micrometres(sizes, unit) if unit else None
        if plane and max(plane) >= PRINT_RESOLUTION_UM:
            return None
    if plane is None:
        return None
    if spatial_dims == 2:
        return plane
    return (depth, *plane) if depth else None


def _ratio(value: Any) -> float | None:
    numerator, denominator = value if isinstance(value, tuple) else (value, 1)
    return numerator / denominator if denominator and numerator > 0 else None


def _ome_tiff(xml: str, spatial_dims: int) -> tuple[float, ...] | None:
    """``PhysicalSize{Z,Y,X}`` of the first OME-TIFF Pixels element (default unit um)."""
    pixels = re.search(r"<(?:\w+:)?Pixels\b([^>]*)>", xml)
    if pixels is None:
        return None
    attributes = dict(re.findall(r'(\w+)="([^"]*)"', pixels.group(1)))
    sizes = []
    for axis in "ZYX"[3 - spatial_dims :]:
        value = attributes.get(f"PhysicalSize{axis}")
        if value is None:
            return None
        sizes.append(micrometres(float(value), attributes.get(f"PhysicalSize{axis}Unit")))
    return None if any(s is None for s in sizes) else tuple(s for s in sizes if s is not None)


def common_pixel_size(sizes: list[tuple[float, ...] | None]) -> tuple[float, ...] | None:
    """The pixel size all of ``sizes`` share (within 2%: rounding in files), or None when
    any is unknown or they differ (data at several scales: no one pixel size to record)."""
    if not sizes or any(s is None for s in sizes):
        return None
    first = np.asarray(sizes[0])
    for other in sizes[1:]:
        if other is None or len(other) != first.size or not np.allclose(other, first, rtol=0.02):
            return None
    return tuple(round(float(s), 6) for s in np.median(np.asarray(sizes), axis=0))
