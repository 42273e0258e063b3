"""The third pass of a big image whose objects were found on the model's grid (a rescaled
copy, read lazily): its blocks on the image's own grid, as the single-process path maps a
whole image back (objects by nearest neighbour; from a coarser grid, outlines that follow the
interpolated foreground: :func:`~napari_unet.core.data.rescale.objects_to_original_grid`)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from ..data.rescale import (
    nearest_indices,
    outline_reach,
    region_to_original_grid,
    rescaled_region,
    smooth_outlines,
)
from ..predict.stitching import block_at, grid_of


@dataclass(frozen=True)
class ObjectsBack:
    """Where a big image's objects on the model's grid go, block by block."""

    shape: tuple[int, ...]  # the image's spatial shape
    blocks: tuple[int, ...]  # the output's chunks
    model_shape: tuple[int, ...]
    model_labels: str  # zarr group (array "0"): the objects on the model's grid
    foreground: str | None  # zarr group (array "0"): the foreground probability there, or
    # None when the model's grid is the finer one (nearest neighbour is then enough)
    labels: str  # the output OME-Zarr image
    work: str  # its "mapped" markers
    threshold: float

    @property
    def count(self) -> int:
        return math.prod(grid_of(self.shape, self.blocks))

    def core(self, index: int) -> tuple[slice, ...]:
        return block_at(index, self.shape, self.blocks)


def _group_array(path: str, name: str = "0"):
    import zarr

    return zarr.open_group(path, mode="r+")[name]


def _nearest(back: ObjectsBack, region: tuple[slice, ...]) -> np.ndarray:
    """The model-grid objects nearest to each pixel of ``region`` (on the image's grid)."""
    indices = [
        nearest_indices(np.arange(r.start, r.stop), n, m)
        for r, n, m in zip(region, back.shape, back.model_shape, strict=True)
    ]
    bounds = tuple(slice(int(i.min()), int(i.max()) + 1) for i in indices)
    block = np.asarray(_group_array(back.model_labels)[bounds])
    for axis, (i, b) in enumerate(zip(indices, bounds, strict=True)):
        block = np.take(block, i - b.start, axis=axis)
    return block


def map_block_task(back: ObjectsBack, index: int) -> dict:
    """Pass 3: block ``index`` of the output from the objects on the model's grid."""
    core = back.core(index)
    if back.foreground is None:
        out = _nearest(back, core)
    else:
        reach = outline_reach(back.model_shape, back.shape)
        extra = math.ceil(reach) + 1  # what the outline of a core pixel may depend on
        window = tuple(
            slice(max(0, c.start - extra), min(n, c.stop + extra))
            for c, n in zip(core, back.shape, strict=True)
        )
        region, coords = rescaled_region(window, back.shape, back.model_shape)
        plane = np.asarray(_group_array(back.foreground)[region])[None]
        foreground = region_to_original_grid(plane, region, coords)[0] > back.threshold
        smooth = smooth_outlines(_nearest(back, window), foreground, reach)
        out = smooth[
            tuple(
                slice(c.start - w.start, c.stop - w.start)
                for c, w in zip(core, window, strict=True)
            )
        ]
    _group_array(back.labels)[core] = out
    _group_array(back.work, "mapped")[index] = 1
    return {"pid": os.getpid()}
