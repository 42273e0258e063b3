"""Images read on another pixel grid, lazily, and results mapped back to the original grid.

A model sees the user's image rescaled so that its structures have the size it was trained
on. :class:`RescaledSource` reads blocks of the rescaled image straight from the original (so
the tiler, block-wise instances and Dask blocks work on the rescaled grid without it ever being
held whole), and every block equals the same region of the whole rescaled image: the tiler
stays exact. The grid: pixel centres aligned, ``rescaled = round(n * factor)`` pixels per axis,
linear interpolation, and before shrinking a Gaussian anti-aliasing filter of sigma
``(1 / factor - 1) / 2`` (scikit-image's choice), with the edge pixel repeated beyond the image
border. :func:`to_original_grid` maps probabilities (linear) and labels (nearest) back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from .normalize import BlockSource, PreparedSource

_TRUNCATE = 4.0  # scipy's default Gaussian truncation, in sigmas


def rescaled_shape(shape: Sequence[int], factors: Sequence[float]) -> tuple[int, ...]:
    """The shape of an image of ``shape`` rescaled by ``factors`` (per axis)."""
    return tuple(max(1, round(n * f)) for n, f in zip(shape, factors, strict=True))


def _axis_coordinates(positions: np.ndarray, n_from: int, n_to: int) -> np.ndarray:
    """Coordinates in a grid of ``n_from`` pixels of ``positions`` on a grid of ``n_to``
    pixels spanning the same extent (pixel centres aligned), clipped to the grid."""
    ratio = n_from / n_to
    return np.clip((positions + 0.5) * ratio - 0.5, 0, n_from - 1)


def _interpolate(block: np.ndarray, axis: int, coords: np.ndarray, start: int) -> np.ndarray:
    """Linear interpolation of ``block`` along ``axis`` at ``coords`` (in the coordinates of
    the whole axis; the block begins at ``start``)."""
    low = np.floor(coords).astype(np.int64)
    weight = (coords - low).astype(np.float32)
    high = np.minimum(low + 1, start + block.shape[axis] - 1)
    a = np.take(block, low - start, axis=axis)
    b = np.take(block, high - start, axis=axis)
    shape = [1] * block.ndim
    shape[axis] = -1
    weight = weight.reshape(shape)
    return a * (1 - weight) + b * weight


def _positions(index: slice | np.ndarray, n: int) -> np.ndarray:
    if isinstance(index, slice):
        return np.arange(*index.indices(n))
    return np.asarray(index, np.int64)


class RescaledSource:
    """``source`` (a :class:`~napari_unet.core.data.normalize.BlockSource`) read on a grid
    rescaled by ``factors`` (one per spatial axis, or one for all)."""

    def __init__(self, source: BlockSource, factors: float | Sequence[float]):
        self.source = source
        dims = len(source.shape)
        self.factors = tuple(factors) if isinstance(factors, Sequence) else (float(factors),) * dims
        if len(self.factors) != dims or not all(math.isfinite(f) and f > 0 for f in self.factors):
            raise ValueError(f"rescaling factors must be positive, got {factors!r}")
        self._shape = rescaled_shape(source.shape, self.factors)
        # Anti-aliasing before shrinking an axis (none when enlarging it).
        self.sigmas = tuple(
            max(0.0, (n / m - 1) / 2) for n, m in zip(source.shape, self._shape, strict=True)
        )

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    def read(self, index: tuple[slice | np.ndarray, ...]) -> np.ndarray:
        """The rescaled image's block at ``index`` (slices or index arrays per axis)."""
        original = self.source.shape
        coords, reads, starts = [], [], []
        for idx, n, m, sigma in zip(index, original, self._shape, self.sigmas, strict=True):
            x = _axis_coordinates(_positions(idx, m), n, m)
            margin = int(_TRUNCATE * sigma + 0.5) + 1 if sigma else 0
            lo, hi = int(np.floor(x.min())) - margin, int(np.floor(x.max())) + 1 + margin
            reads.append(np.clip(np.arange(lo, hi + 1), 0, n - 1))  # the edge repeated
            coords.append(x)
            starts.append(lo)
        block = self.source.read(tuple(reads)).astype(np.float32, copy=False)
        if any(self.sigmas):
            block = ndi.gaussian_filter(
                block, (0, *self.sigmas), mode="nearest", truncate=_TRUNCATE
            )
        for axis, (x, start) in enumerate(zip(coords, starts, strict=True)):
            block = _interpolate(block, axis + 1, x, start)
        return np.ascontiguousarray(block, dtype=np.float32)


def to_original_grid(
    array: np.ndarray, shape: Sequence[int], *, labels: bool, leading: int = 0
) -> np.ndarray:
    """``array`` (on a rescaled grid) on the original grid of spatial ``shape``: labels by
    nearest neighbour (object ids kept), probabilities by linear interpolation. ``leading``
    axes (channels) are kept as they are."""
    out = array
    for axis, n in enumerate(shape):
        axis_in = leading + axis
        m = out.shape[axis_in]
        if m == n:
            continue
        y = _axis_coordinates(np.arange(n), m, n)
        if labels:
            out = np.take(out, nearest_indices(np.arange(n), n, m), axis=axis_in)
        else:
            out = _interpolate(out.astype(np.float32, copy=False), axis_in, y, 0)
    return np.ascontiguousarray(out)


def rescale_image(image: np.ndarray, factors: float | Sequence[float]) -> np.ndarray:
    """A whole (C, *spatial) float image on the rescaled grid, as :class:`RescaledSource`
    reads it (for tests and for small images)."""
    source = RescaledSource(PreparedSource(image), factors)
    return source.read(tuple(slice(0, n) for n in source.shape))


def rescaled_region(
    core: Sequence[slice], shape: Sequence[int], rescaled: Sequence[int]
) -> tuple[tuple[slice, ...], list[np.ndarray]]:
    """The region of the rescaled grid (of spatial shape ``rescaled``) that the pixels of
    ``core`` (a block of the original grid of ``shape``) are interpolated from, and their
    coordinates there: with :func:`region_to_original_grid`, a block's results equal the
    same block of :func:`to_original_grid` applied to the whole rescaled result."""
    region, coords = [], []
    for c, n, m in zip(core, shape, rescaled, strict=True):
        y = _axis_coordinates(np.arange(c.start, c.stop), m, n)
        region.append(slice(int(np.floor(y.min())), min(m, int(np.floor(y.max())) + 2)))
        coords.append(y)
    return tuple(region), coords


def region_to_original_grid(
    array: np.ndarray, region: Sequence[slice], coords: Sequence[np.ndarray], *, leading: int = 1
) -> np.ndarray:
    """``array`` (results on the rescaled ``region`` of :func:`rescaled_region`, with
    ``leading`` channel axes) linearly interpolated at ``coords``."""
    out = array.astype(np.float32, copy=False)
    for axis, (r, y) in enumerate(zip(region, coords, strict=True)):
        out = _interpolate(out, leading + axis, y, r.start)
    return np.ascontiguousarray(out)


def objects_to_original_grid(
    labels: np.ndarray, foreground: np.ndarray, shape: Sequence[int]
) -> np.ndarray:
    """Objects from a coarser grid on the original grid of ``shape``, with outlines that
    follow ``foreground`` (the linearly interpolated foreground, on the original grid) rather
    than the coarse grid's staircase (:func:`smooth_outlines`)."""
    nearest = to_original_grid(labels, shape, labels=True)
    return smooth_outlines(nearest, foreground, outline_reach(labels.shape, shape))


def outline_reach(coarse: Sequence[int], shape: Sequence[int]) -> float:
    """How far (original pixels) an outline may move: one coarse pixel."""
    return max(n / m for n, m in zip(shape, coarse, strict=True))


def smooth_outlines(nearest: np.ndarray, foreground: np.ndarray, reach: float) -> np.ndarray:
    """Each ``foreground`` pixel within ``reach`` of an object of ``nearest`` (objects brought
    to this grid by nearest neighbour) takes the nearest object's id; the rest is 0. Local:
    a block read with ``ceil(reach) + 1`` more pixels a side gives its core the same answer
    (up to ties between objects equally near)."""
    distance, indices = ndi.distance_transform_edt(nearest == 0, return_indices=True)
    filled = nearest[tuple(indices)]
    return np.where(foreground & (distance <= reach), filled, 0).astype(nearest.dtype, copy=False)


def nearest_indices(positions: np.ndarray, n: int, m: int) -> np.ndarray:
    """The pixels of a grid of ``m`` nearest to ``positions`` on the original grid of ``n``
    (as :func:`to_original_grid` picks labels)."""
    return np.rint(_axis_coordinates(np.asarray(positions), m, n)).astype(np.int64)
