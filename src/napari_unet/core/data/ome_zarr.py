"""OME-Zarr (NGFF) images in, labels and probabilities out, through the ``ome-zarr`` package.

Reading takes level 0 of the first multiscale image, lazily (a dask array: prediction reads it
tile by tile), with its axis names (t, c, z, y, x) and pixel sizes from the metadata. Writing
uses ``ome_zarr.writer``: the labels either as a new OME-Zarr image with the input's pixel
sizes, or into the input's own ``labels/`` group (the NGFF labels convention), where napari and
other viewers show them over the image.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserInputError
from .safe_paths import check_name, is_inside, remove_output_tree


def _attributes(path: Path) -> dict[str, Any]:
    """The group's attributes (zarr v2 ``.zattrs`` or v3 ``zarr.json``), or {}."""
    try:
        if (path / "zarr.json").is_file():
            meta = json.loads((path / "zarr.json").read_text())
            attrs = meta.get("attributes") or {}
            return attrs.get("ome", attrs)
        if (path / ".zattrs").is_file():
            return json.loads((path / ".zattrs").read_text())
    except (OSError, ValueError):
        return {}
    return {}


def is_ome_zarr(path: str | os.PathLike) -> bool:
    """A folder holding an OME-Zarr multiscale image."""
    path = Path(path)
    return path.is_dir() and "multiscales" in _attributes(path)


def _needs_ome_zarr() -> None:
    try:
        import ome_zarr  # noqa: F401
    except ImportError as err:
        raise UserInputError(
            "OME-Zarr needs the ome-zarr extra: pip install 'napari-unet-torch[ome-zarr]'"
        ) from err


@dataclass
class OmeZarrImage:
    """Level 0 of an OME-Zarr image: ``data`` (lazy), ``axes`` (names such as "c", "z", "y",
    "x", "t") and ``scale`` (pixel size per axis), ``units`` (per axis, where given)."""

    path: Path
    data: Any
    axes: list[str]
    scale: list[float]
    units: dict[str, str]

    @property
    def channel_axis(self) -> int | None:
        return self.axes.index("c") if "c" in self.axes else None


def _check_multiscales(path: Path) -> None:
    """The metadata the reader relies on has the NGFF shape: a list of multiscales whose first
    lists datasets with a path each, level 0 present on disk."""
    meta = _attributes(path).get("multiscales")

    def malformed(what: str) -> UserInputError:
        return UserInputError(f"{path} is a malformed OME-Zarr image: {what}")

    if not isinstance(meta, list) or not meta or not isinstance(meta[0], dict):
        raise malformed("'multiscales' must be a list of multiscale descriptions")
    datasets = meta[0].get("datasets")
    if not isinstance(datasets, list) or not datasets or not isinstance(datasets[0], dict):
        raise malformed("'datasets' must be a list of levels, each with a 'path'")
    level0 = datasets[0].get("path")
    if not isinstance(level0, str) or not level0:
        raise malformed("level 0 has no 'path'")
    target = path / level0
    if not is_inside(target, path) or not target.is_dir():
        raise malformed(f"level 0 ({level0!r}) is missing")
    axes = meta[0].get("axes")
    if axes is not None and not isinstance(axes, list):
        raise malformed("'axes' must be a list")
    for transform in datasets[0].get("coordinateTransformations") or []:
        if not isinstance(transform, dict):
            raise malformed("coordinateTransformations must be a list of mappings")


def read_ome_zarr(path: str | os.PathLike) -> OmeZarrImage:
    """Open an OME-Zarr image (level 0, lazily) with its axes and pixel sizes."""
    _needs_ome_zarr()
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    path = Path(path)
    _check_multiscales(path)
    location = parse_url(str(path), mode="r")
    if location is None:
        raise UserInputError(f"{path} is not a readable OME-Zarr image")
    # The reader logs what it finds on its way (labels' parents...); one line per file is ours.
    quiet = logging.getLogger("ome_zarr")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        nodes = [n for n in Reader(location)() if n.load(Multiscales) is not None]
    except Exception as err:  # the reader's own errors on a malformed store, whatever they are
        detail = " ".join(str(err).split())[:160] or type(err).__name__
        raise UserInputError(f"{path} is a malformed OME-Zarr image ({detail})") from err
    finally:
        quiet.setLevel(level)
    if not nodes:
        raise UserInputError(f"{path} holds no OME-Zarr multiscale image")
    node = nodes[0]
    data = node.data[0]
    meta = _attributes(path)["multiscales"][0]
    axes_meta = meta.get("axes") or [{"name": a} for a in "tczyx"[-data.ndim :]]
    axes = [a["name"] if isinstance(a, dict) else str(a) for a in axes_meta]
    units = {a["name"]: a["unit"] for a in axes_meta if isinstance(a, dict) and a.get("unit")}
    scale = [1.0] * data.ndim
    for transform in meta["datasets"][0].get("coordinateTransformations") or []:
        if transform.get("type") == "scale":
            scale = [float(s) for s in transform["scale"]]
    if len(axes) != data.ndim or len(scale) != data.ndim:
        raise UserInputError(
            f"{path}: the metadata names {len(axes)} axes but the image has {data.ndim}"
        )
    return OmeZarrImage(path, data, axes, scale, units)


def axes_metadata(names: list[str], units: dict[str, str]) -> list[dict[str, str]]:
    kinds = {"t": "time", "c": "channel"}
    out = []
    for name in names:
        entry = {"name": name, "type": kinds.get(name, "space")}
        if name in units:
            entry["unit"] = units[name]
        out.append(entry)
    return out


def output_axes(image: OmeZarrImage) -> tuple[list[str], list[float]]:
    """Axes and pixel sizes of the labels: the image's, without its channel axis."""
    keep = [i for i, a in enumerate(image.axes) if a != "c"]
    return [image.axes[i] for i in keep], [image.scale[i] for i in keep]


def probability_layout(
    probabilities: np.ndarray, axes: list[str], scale: list[float], spatial_dims: int
) -> tuple[np.ndarray, list[str], list[float]]:
    """Probabilities come as (*stack, K, *space) (``spatial_dims`` axes the model sees; the
    stack axes may be z for a 2D model); NGFF wants (t, c, z, y, x) order."""
    lead = probabilities.ndim - 1 - spatial_dims
    names = [*axes[:lead], "c", *axes[lead:]]
    sizes = [*scale[:lead], 1.0, *scale[lead:]]
    times = sum(1 for a in axes[:lead] if a == "t")
    order = list(range(probabilities.ndim))
    order.insert(times, order.pop(lead))
    return (
        np.transpose(probabilities, order),
        [names[i] for i in order],
        [sizes[i] for i in order],
    )


def write_ome_zarr(
    path: str | os.PathLike,
    data: np.ndarray,
    axes: list[str],
    scale: list[float],
    units: dict[str, str] | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``data`` as a new single-level OME-Zarr image at ``path`` (``name.ome.zarr``)."""
    _needs_ome_zarr()
    import zarr
    from ome_zarr.writer import write_image

    path = Path(path)
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise UserInputError(f"{path} already exists; pass --overwrite to replace it")
        remove_output_tree(path, root=path.parent, is_ours=is_ome_zarr, kind="an OME-Zarr image")
    group = zarr.open_group(str(path), mode="w")
    write_image(
        np.asarray(data), group, scale_factors=(), axes=axes_metadata(axes, units or {}),
        coordinate_transformations=[[{"type": "scale", "scale": [float(s) for s in scale]}]],
    )  # fmt: skip
    return path


WRITER_KEY = "napari_unet"  # in the attributes of the labels napari-unet writes into an image


def written_by_us(group: Path) -> bool:
    """Whether a labels image inside an OME-Zarr image was written by napari-unet."""
    try:
        if (group / "zarr.json").is_file():
            attrs = json.loads((group / "zarr.json").read_text()).get("attributes") or {}
        elif (group / ".zattrs").is_file():
            attrs = json.loads((group / ".zattrs").read_text())
        else:
            return False
    except (OSError, ValueError):
        return False
    return isinstance(attrs.get(WRITER_KEY), dict)


def check_label_name(name: str) -> str:
    """A label name (``--label-name``) is one plain path component under ``IMAGE/labels/``."""
    return check_name(name, "the label name")


def write_labels_into(
    image: OmeZarrImage, labels: np.ndarray, name: str = "napari-unet", *, overwrite: bool = False
) -> Path:
    """Write ``labels`` into the image's ``labels/NAME`` group (NGFF labels), with its pixel
    sizes. ``name`` is one plain name, never a path. An existing labels image of that name is
    replaced only with ``overwrite``, and only when napari-unet wrote it (its attributes say
    so): the labels a person or another tool put in the image are never replaced."""
    _needs_ome_zarr()
    import zarr
    from ome_zarr.writer import write_labels

    from ... import __version__

    check_label_name(name)
    target = image.path / "labels" / name
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise UserInputError(
                f"{image.path.name} already holds labels/{name}; pass --overwrite to replace them"
            )
        if not target.is_symlink() and is_ome_zarr(target) and not written_by_us(target):
            raise UserInputError(
                f"refusing to replace {target}: those labels were not written by napari-unet "
                "(a person's or another tool's); choose another --label-name"
            )
        remove_output_tree(
            target, root=image.path / "labels", is_ours=is_ome_zarr, kind="an OME-Zarr labels image"
        )
    axes, scale = output_axes(image)
    group = zarr.open_group(str(image.path), mode="a")
    write_labels(
        np.asarray(labels), group, name, scaler=None, scale_factors=(),
        axes=axes_metadata(axes, image.units),
        coordinate_transformations=[[{"type": "scale", "scale": scale}]],
    )  # fmt: skip
    zarr.open_group(str(target), mode="a").attrs[WRITER_KEY] = {"version": __version__}
    return target
