"""Object labels for images of any size, segmented block by block with bounded memory.

A whole-image watershed needs the class probabilities of every pixel at once: 12 bytes per
pixel, 3 GB for a 16k x 16k image. Here the image is cut into blocks along all spatial axes and
processed in bands along the first one. The network predicts each block once, exactly (with
context from around it, see :func:`~.tiling.predict_tiled`), and only the interior probability
(float16) and foreground (bool) of three bands are held. Each block's watershed runs on the
block plus a ``margin`` and keeps the objects whose centre lies in the block: an object cut by
a block edge is segmented whole by the block that owns its centre, and by no other, as long as
it reaches at most ``margin`` pixels beyond that block.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np

from ..data.normalize import BlockSource
from ..network.unet import Network
from .instances import BOUNDARY, INTERIOR, seeded_watershed
from .tiling import TileProgress, _round_up, default_tile_size, predict_tiled, resolve_halo

# How far an object may reach beyond the block that owns its centre (pixels), by dimension:
# nuclei and cells of the images this is made for are far smaller.
DEFAULT_MARGIN = {2: 64, 3: 32}


def default_block_size(
    model: Network, shape: tuple[int, ...], halo: int | str = "auto"
) -> tuple[int, ...]:
    """Block shape for an image of ``shape``: the core of the default network tile, so each
    block is one forward pass, and the whole image is one block when it fits one pass."""
    config = model.config
    return default_tile_size(shape, resolve_halo(halo, config), config.size_multiple)


def block_layout(
    model: Network,
    shape: tuple[int, ...],
    block_size: int | tuple[int, ...] | None = None,
    margin: int | None = None,
    halo: int | str = "auto",
) -> tuple[tuple[int, ...], int]:
    """Block shape (rounded up to the network's size multiple; None: one network tile's core)
    and watershed margin (None: :data:`DEFAULT_MARGIN`) for an image of ``shape``."""
    dims = len(shape)
    multiple = model.config.size_multiple
    if block_size is None:
        block_size = default_block_size(model, shape, halo)
    elif isinstance(block_size, int):
        block_size = (block_size,) * dims
    blocks = tuple(_round_up(b, multiple) for b in block_size)
    margin = _round_up(DEFAULT_MARGIN[dims] if margin is None else margin, multiple)
    # A window reaches into the neighbouring blocks only, never two blocks away.
    return blocks, min(margin, *blocks)


def iter_instances_in_blocks(
    model: Network,
    source: BlockSource,
    out: np.ndarray,
    *,
    foreground_threshold: float = 0.5,
    seed_threshold: float = 0.5,
    min_size: int = 0,
    block_size: int | tuple[int, ...] | None = None,
    margin: int | None = None,
    **tiling,
) -> Iterator[TileProgress]:
    """Segment ``source`` with an instance model into ``out`` (uint32, the image's spatial
    shape, zeros; may be a memory map), yielding progress over the blocks.

    Objects are numbered 1..N in the order their blocks are done; those under ``min_size``
    pixels are dropped. ``block_size`` (pixels, per axis or for all; rounded up to the
    network's size multiple) defaults to one network tile's core (the whole image when it fits
    one pass); ``margin`` to :data:`DEFAULT_MARGIN`.
    ``tiling`` goes to :func:`~.tiling.predict_tiled` (device, precision, halo, batch_size).
    """
    shape = source.shape
    blocks, margin = block_layout(model, shape, block_size, margin, tiling.get("halo", "auto"))
    if tuple(out.shape) != shape:
        raise ValueError(f"output has shape {tuple(out.shape)}, expected {shape}")
    starts = [range(0, n, b) for n, b in zip(shape, blocks, strict=True)]
    total = math.prod(len(s) for s in starts)
    done = 0
    yield TileProgress(done, total)
    # Predicted bands along axis 0, by band index: (interior float16, foreground bool).
    bands: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    next_id = 1
    n_bands = len(starts[0])
    for band in range(n_bands):
        for needed in (band, band + 1):
            if needed < n_bands and needed not in bands:
                bands[needed] = _predict_band(
                    model, source, needed, blocks, foreground_threshold, tiling
                )
        for old in [b for b in bands if b < band - 1]:
            del bands[old]
        r0 = band * blocks[0]
        r1 = min(r0 + blocks[0], shape[0])
        rows = slice(max(0, r0 - margin), min(shape[0], r1 + margin))
        interior_rows, foreground_rows = _rows(bands, rows, blocks[0])
        for rest in _grid(shape[1:], blocks[1:]):
            core = (slice(r0, r1), *rest)
            window = (
                rows,
                *(
                    slice(max(0, c.start - margin), min(n, c.stop + margin))
                    for c, n in zip(rest, shape[1:], strict=True)
                ),
            )
            local = (slice(None), *window[1:])
            objects = seeded_watershed(interior_rows[local], foreground_rows[local], seed_threshold)
            next_id = _keep_owned(objects, core, window, out, next_id, min_size)
            done += 1
            yield TileProgress(done, total)


def _predict_band(
    model: Network,
    source: BlockSource,
    band: int,
    blocks: tuple[int, ...],
    foreground_threshold: float,
    tiling: dict,
) -> tuple[np.ndarray, np.ndarray]:
    """Interior probability and foreground of band ``band`` (along axis 0), predicted one
    block at a time to keep the float32 probabilities small."""
    shape = source.shape
    rows = slice(band * blocks[0], min((band + 1) * blocks[0], shape[0]))
    band_shape = (rows.stop - rows.start, *shape[1:])
    interior = np.zeros(band_shape, np.float16)
    foreground = np.zeros(band_shape, bool)
    for rest in _grid(shape[1:], blocks[1:]):
        region = (rows, *rest)
        prob = np.zeros(
            (model.config.out_channels, *(r.stop - r.start for r in region)), np.float32
        )
        for _ in predict_tiled(model, source, prob, region=region, **tiling):
            pass
        local = (slice(None), *rest)
        interior[local] = prob[INTERIOR]
        foreground[local] = (prob[INTERIOR] + prob[BOUNDARY]) > foreground_threshold
    return interior, foreground


def grid_of(shape: tuple[int, ...], blocks: tuple[int, ...]) -> tuple[int, ...]:
    """Blocks of ``blocks`` size along each axis of ``shape``."""
    return tuple(-(-n // b) for n, b in zip(shape, blocks, strict=True))


def block_at(index: int, shape: tuple[int, ...], blocks: tuple[int, ...]) -> tuple[slice, ...]:
    """Block ``index`` of the tiling of ``shape`` (raster order, as :func:`_grid` gives them)."""
    position = np.unravel_index(index, grid_of(shape, blocks))
    return tuple(
        slice(int(p) * b, min((int(p) + 1) * b, n))
        for p, b, n in zip(position, blocks, shape, strict=True)
    )


def _grid(shape: tuple[int, ...], blocks: tuple[int, ...]) -> Iterator[tuple[slice, ...]]:
    """The blocks of ``blocks`` size that tile ``shape``, as slices, in raster order."""
    for starts in itertools.product(*(range(0, n, b) for n, b in zip(shape, blocks, strict=True))):
        yield tuple(slice(s, min(s + b, n)) for s, b, n in zip(starts, blocks, shape, strict=True))


def _rows(
    bands: dict[int, tuple[np.ndarray, np.ndarray]], rows: slice, block: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``rows`` (absolute) of the predicted bands, joined."""
    parts_interior, parts_foreground = [], []
    for band in sorted(bands):
        lo = max(rows.start, band * block)
        hi = min(rows.stop, band * block + bands[band][0].shape[0])
        if lo < hi:
            local = slice(lo - band * block, hi - band * block)
            parts_interior.append(bands[band][0][local])
            parts_foreground.append(bands[band][1][local])
    return np.concatenate(parts_interior), np.concatenate(parts_foreground)


def _keep_owned(
    objects: np.ndarray,
    core: tuple[slice, ...],
    window: tuple[slice, ...],
    out: np.ndarray,
    next_id: int,
    min_size: int,
) -> int:
    """Write the objects of a window whose centre lies in ``core`` into ``out`` (where it is
    still empty), numbered from ``next_id``; returns the next free number."""
    owned, kept = owned_objects(objects, core, window, min_size)
    if kept == 0:
        return next_id
    new = np.where(owned > 0, owned + np.uint32(next_id - 1), np.uint32(0))
    # Pixels an earlier block's object already holds stay with it.
    target = np.asarray(out[window])
    out[window] = np.where(target == 0, new, target)
    return next_id + kept


def owned_objects(
    objects: np.ndarray, core: tuple[slice, ...], window: tuple[slice, ...], min_size: int
) -> tuple[np.ndarray, int]:
    """The objects of a window (labelled ``objects`` over ``window``) whose centre lies in
    ``core`` and that have at least ``min_size`` pixels, numbered 1..k in label order (uint32,
    the window's shape), and k. Each object of the image is owned by exactly one block."""
    count = int(objects.max())
    if count == 0:
        return np.zeros(objects.shape, np.uint32), 0
    flat = objects.ravel()
    sizes = np.bincount(flat, minlength=count + 1)
    keep = sizes >= max(1, min_size)
    keep[0] = False
    for axis, (c, w) in enumerate(zip(core, window, strict=True)):
        coordinate = np.arange(objects.shape[axis], dtype=np.float64)
        shape = [1] * objects.ndim
        shape[axis] = -1
        along = np.broadcast_to(coordinate.reshape(shape), objects.shape).ravel()
        centre = np.bincount(flat, weights=along, minlength=count + 1) / np.maximum(sizes, 1)
        centre += w.start
        keep &= (centre >= c.start) & (centre < c.stop)
    kept = int(keep.sum())
    numbers = np.zeros(count + 1, np.uint32)
    numbers[keep] = np.arange(1, kept + 1, dtype=np.uint32)
    return numbers[objects], kept
