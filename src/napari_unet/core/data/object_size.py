"""How large the structures in labels and images are, in pixels: the scale a model was trained
at, and the scale of a user's image.

- From labels (:func:`measure_labels`): objects by their median *equivalent diameter* (the
  diameter of the disc, or ball, of the same area, or volume); thin structures such as vessels
  by their median *width* (twice the distance to the background at the centre line).
- From an image alone (:func:`blob_diameter`): the dominant blob size by scale-normalised
  Laplacian of Gaussian, as in Lindeberg's scale selection: first the scale where the response
  spectrum peaks on a small view, then a per-blob choice around it. It is biased by contrast
  and texture in ways that differ per modality, so it is calibrated against a model's own
  training images (:attr:`ObjectScale.calibration`): what is compared is always the same
  estimator on the training images and on the user's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..errors import UserInputError

SIZE_KINDS = ("objects", "widths")
#: The estimator looks at views of at most this many pixels per axis (centre crops): its cost
#: is bounded whatever the image size.
VIEW_EDGE = {2: 512, 3: 96}
_STEPS_PER_OCTAVE = 4


@dataclass(frozen=True)
class ObjectScale:
    """The scale of the structures a model was trained on; stored in model files.

    Attributes
    ----------
    kind : "objects" (size = median equivalent diameter) or "widths" (size = median width of
        thin structures such as vessels).
    size : the median, in pixels of the training images.
    low, high : the 25th and 75th percentiles (the spread).
    count : objects (or centre-line pixels) measured.
    calibration : multiplies the image estimator's answer on a user's image; None when it
        was not measured. Objects: median over the training images of (size from labels /
        size from :func:`blob_diameter` of the image). Widths: ``size`` / the training
        images' median field-of-view diameter (:mod:`.field_of_view`: fundus photographs).
    pixel_size : the training images' pixel size per spatial axis, when their files said.
    unit : the unit of ``pixel_size`` ("micrometer", ...).
    aspect : 3D objects: their median extent along each axis over that along the last (x),
        on the training grid ((0.33, 1, 1): objects span a third as many z slices as x
        pixels, as in a z-stack of 3 um steps and 1 um pixels). An image whose pixel sizes
        are known is brought to this aspect before its objects are measured.
    """

    kind: str
    size: float
    low: float
    high: float
    count: int
    calibration: float | None = None
    pixel_size: tuple[float, ...] | None = None
    unit: str | None = None
    aspect: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in SIZE_KINDS:
            raise UserInputError(f"scale kind must be one of {SIZE_KINDS}, got {self.kind!r}")
        for name in ("size", "low", "high"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise UserInputError(f"scale {name} must be a positive number, got {value!r}")

    @property
    def noun(self) -> str:
        return "object diameter" if self.kind == "objects" else "structure width"

    def describe(self) -> str:
        """One line for `napari-unet info` and the widget."""
        text = (
            f"median {self.noun} {self.size:.1f} px (middle half {self.low:.1f}-{self.high:.1f}"
            f" px, {self.count} {'objects' if self.kind == 'objects' else 'centre-line px'})"
        )
        if self.pixel_size:
            sizes = " x ".join(f"{s:g}" for s in self.pixel_size)
            text += f"; pixel size {sizes} {self.unit or ''}".rstrip()
        return text

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["pixel_size"] = list(self.pixel_size) if self.pixel_size else None
        data["aspect"] = list(self.aspect) if self.aspect else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ObjectScale:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("pixel_size", "aspect"):
            if values.get(name) is not None:
                values[name] = tuple(float(s) for s in values[name])
        return cls(**values)


def equivalent_diameters(labels: np.ndarray) -> np.ndarray:
    """The equivalent diameter of each object of an instance label image (2D: disc of the
    same area; 3D: ball of the same volume), in pixels; an object is a connected region of
    one label value."""
    from skimage.measure import label as connected_regions

    labels = np.asarray(labels)
    if labels.size == 0 or labels.max() <= 0:
        return np.zeros(0)
    # Each connected region of one value is an object: a mask given as "instance labels"
    # (every object 1) still measures object by object.
    labels = connected_regions(labels, background=0, connectivity=1)
    counts = np.bincount(labels[labels > 0].ravel().astype(np.int64))[1:]
    counts = counts[counts > 0].astype(np.float64)
    if labels.ndim == 3:
        return np.cbrt(6 * counts / np.pi)
    return np.sqrt(4 * counts / np.pi)


def structure_widths(mask: np.ndarray) -> np.ndarray:
    """The local width of thin structures along their centre lines, in pixels: from the
    distance to the background at each skeleton pixel (a 1-pixel line is 1 wide)."""
    from skimage.morphology import skeletonize

    mask = np.asarray(mask, bool)
    if not mask.any():
        return np.zeros(0)
    centre = skeletonize(mask)
    # At a centre pixel the distance to the background is half the width plus half a pixel.
    return 2 * ndi.distance_transform_edt(mask)[centre] - 1


def thin_structures(mask: np.ndarray) -> bool:
    """Whether a semantic foreground is made of thin, long structures (vessels, membranes,
    filaments) rather than compact objects: their width is well under the size of the pieces
    most of the foreground belongs to (an area-weighted median, so that a vessel tree counts
    for more than the specks around it)."""
    widths = structure_widths(mask)
    if widths.size == 0:
        return False
    pieces, _ = ndi.label(mask)
    areas = np.bincount(pieces.ravel())[1:]
    areas = areas[areas > 0].astype(np.float64)
    diameters = np.sqrt(4 * areas / np.pi) if mask.ndim == 2 else np.cbrt(6 * areas / np.pi)
    order = np.argsort(diameters)
    weighted = diameters[order][np.searchsorted(np.cumsum(areas[order]), areas.sum() / 2)]
    return float(np.median(widths)) < 0.25 * float(weighted)


def measure_labels(
    label_images: list[np.ndarray],
    kind: str,
    images: list[np.ndarray] | None = None,
) -> ObjectScale | None:
    """The scale of ``label_images`` (instance labels for "objects", a foreground mask for
    "widths"); with ``images`` (the normalised model inputs, channels first), also the
    estimator's calibration (:func:`estimator_calibration`). None when the labels hold
    nothing to measure."""
    sizes = [_sizes(labels, kind) for labels in label_images]
    sizes = [found for found in sizes if found.size]
    if not sizes:
        return None
    pooled = np.concatenate(sizes)
    low, median, high = np.percentile(pooled, [25, 50, 75])
    calibration = None
    if images is not None and kind == "objects":
        calibration = estimator_calibration(label_images, images)
    return ObjectScale(
        kind=kind,
        size=round(float(median), 3),
        low=round(float(low), 3),
        high=round(float(high), 3),
        count=int(pooled.size),
        calibration=calibration,
        aspect=object_aspect(label_images) if kind == "objects" else None,
    )


def object_aspect(label_images: list[np.ndarray]) -> tuple[float, ...] | None:
    """3D objects' median extent per axis over that along the last axis (None in 2D or
    with fewer than 3 objects)."""
    from skimage.measure import label as connected_regions

    extents = []
    for labels in label_images:
        if np.ndim(labels) != 3:
            return None
        regions = connected_regions(np.asarray(labels), background=0, connectivity=1)
        extents += [[s.stop - s.start for s in box] for box in ndi.find_objects(regions) if box]
    if len(extents) < 3:
        return None
    median = np.median(np.asarray(extents, np.float64), axis=0)
    return tuple(round(float(m / median[-1]), 3) for m in median)


def estimator_calibration(label_images: list[np.ndarray], images: list[np.ndarray]) -> float | None:
    """Median over the images holding at least 3 objects of (median object diameter from the
    labels / :func:`blob_diameter` of the image); None when there is no such image."""
    ratios = []
    for labels, image in zip(label_images, images, strict=True):
        found = equivalent_diameters(labels)
        if found.size >= 3 and (estimate := blob_diameter(image)):
            ratios.append(float(np.median(found)) / estimate)
    return round(float(np.median(ratios)), 4) if ratios else None


def _sizes(labels: np.ndarray, kind: str) -> np.ndarray:
    if kind == "objects":
        return equivalent_diameters(labels)
    return structure_widths(np.asarray(labels) > 0)


def blob_diameter(image: np.ndarray) -> float | None:
    """The dominant blob size of a normalised image (channels first: (C, *spatial)), in the
    estimator's own units (about the diameter in pixels for bright discs on a dark ground;
    calibrate with :attr:`ObjectScale.calibration`). None for an image with no blobs."""
    view = _grey_view(image)
    if min(view.shape) < 8 or not np.isfinite(view).all() or view.max() <= view.min():
        return None
    sigma = _spectrum_peak(view)
    if sigma is None:
        return None
    sigma = _per_blob_scale(view, sigma)
    return None if sigma is None else 2 * math.sqrt(view.ndim) * sigma


def centre_view(shape: tuple[int, ...]) -> tuple[slice, ...]:
    """The centre crop of at most :data:`VIEW_EDGE` pixels per axis that the estimator reads."""
    edge = VIEW_EDGE.get(len(shape), 96)
    return tuple(slice(max(0, (n - edge) // 2), max(0, (n - edge) // 2) + edge) for n in shape)


def _grey_view(image: np.ndarray) -> np.ndarray:
    """The mean of the channels, over a centre crop of at most :data:`VIEW_EDGE` per axis,
    scaled to 0-1 (1st-99.8th percentile) with bright blobs on a dark ground."""
    image = np.asarray(image, np.float32)
    view = image[(slice(None), *centre_view(image.shape[1:]))].mean(axis=0)
    low, high = np.percentile(view, [1, 99.8])
    view = (view - low) / max(float(high - low), 1e-6)
    if np.median(view) > 0.5:  # a bright ground (brightfield, H&E): dark blobs
        view = 1 - view
    return view


def _spectrum_peak(view: np.ndarray) -> float | None:
    """The scale (Gaussian sigma, pixels) where the 99th percentile of the scale-normalised
    LoG response peaks, searched over octaves of a pyramid (cheap at every scale). The full
    resolution is only searched when the peak lies at the finest scale of the half
    resolution: small objects are rare beside the cost of filtering every pixel."""
    levels = [view]
    while min(levels[-1].shape) >= 32:
        levels.append(ndi.zoom(ndi.gaussian_filter(levels[-1], 1.0), 0.5, order=1))
    found = [item for octave in range(1, len(levels)) for item in _octave(levels, octave)]
    if not found or max(found, key=lambda item: item[1])[0] <= 2 * _BASE_SIGMAS[0] * 1.01:
        found += _octave(levels, 0)
    sigma, strength = max(found, key=lambda item: item[1])
    return sigma if strength > 0 else None


_BASE_SIGMAS = 1.6 * 2 ** (np.arange(_STEPS_PER_OCTAVE) / _STEPS_PER_OCTAVE)


def _octave(levels: list[np.ndarray], octave: int) -> list[tuple[float, float]]:
    """(sigma in full-resolution pixels, 99th percentile of the response) for the sigmas of
    one octave (its level of the pyramid; the percentile on every other pixel: it is a
    summary, and sorting is the slow part)."""
    level = levels[octave]
    found = []
    for s in _BASE_SIGMAS:
        response = -(s**2) * ndi.gaussian_laplace(level, s)
        strided = response[tuple(slice(None, None, 2) for _ in response.shape)]
        found.append((float(s * 2**octave), float(np.percentile(strided, 99))))
    return found


def _per_blob_scale(view: np.ndarray, sigma: float) -> float | None:
    """Refine ``sigma``: at a resolution where it is about 4 pixels, each blob centre (a
    local maximum of the best response over scales around ``sigma``) votes for its own
    scale, weighted by its response; the weighted median wins."""
    zoom = min(1.0, 4.0 / sigma)
    level = view
    if zoom < 1:
        level = ndi.zoom(ndi.gaussian_filter(view, (1 / zoom - 1) / 2), zoom, order=1)
    sigmas = sigma * zoom * 2 ** (np.arange(-3, 4) / 3)  # an octave either side
    sigmas = sigmas[sigmas >= 0.8]
    if sigmas.size == 0:
        return None
    responses = np.stack([-(s**2) * ndi.gaussian_laplace(level, s) for s in sigmas])
    best, choice = responses.max(axis=0), responses.argmax(axis=0)
    if best.max() <= 0:
        return None
    centres = (best == ndi.maximum_filter(best, size=3)) & (best > 0.3 * best.max())
    scales, weights = sigmas[choice[centres]], best[centres]
    order = np.argsort(scales)
    cumulative = np.cumsum(weights[order])
    median = scales[order][np.searchsorted(cumulative, cumulative[-1] / 2)]
    return float(median) / zoom
