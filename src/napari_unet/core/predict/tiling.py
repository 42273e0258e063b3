"""Sliding-window prediction of N-d images of any size with a bounded memory footprint.

The image is cut into *cores* that tile it without overlap; each core is predicted from a
*window* that adds a halo of context on every side. With the default "exact" halo (the
network's receptive radius) and a network whose output at a pixel depends only on nearby
pixels (batch norm in eval mode, or no norm), the tiled output equals the whole-image output up
to float rounding. Windows start on multiples of ``2**depth``, so the poolings see the same grid
as in a whole-image pass, and are clipped to the padded image so that convolution padding
happens at the real image border only.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch

from ..data.normalize import BlockSource
from ..errors import UserInputError
from ..network.devices import autocast, memory_format, reuse_cpu_memory
from ..network.unet import Network, UNet, activation, padding_mode, receptive_radius


@dataclass(frozen=True)
class TileProgress:
    """Progress of a tiled prediction: ``done`` of ``total`` tiles processed."""

    done: int
    total: int


@dataclass(frozen=True)
class Tile:
    """One window of the padded image and the core of it whose prediction is kept."""

    window: tuple[slice, ...]  # in padded-image coordinates
    core: tuple[slice, ...]  # in image coordinates (clipped to the image)
    core_in_window: tuple[slice, ...]


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def plan_tiles(
    shape: tuple[int, ...],
    tile_size: tuple[int, ...],
    halo: tuple[int, ...],
    multiple: int,
    region: tuple[slice, ...] | None = None,
) -> tuple[list[Tile], tuple[int, ...]]:
    """Cut an image of spatial ``shape`` (or the ``region`` of it) into equally sized windows.

    Returns the tiles and the common window shape. Core and halo sizes are rounded up to
    ``multiple``; windows are shifted inward at the image border instead of shrinking, so that
    every window has the same shape and tiles can be batched. With a ``region`` (whose starts
    must be multiples of ``multiple``) only its pixels are cores, but windows still take their
    context from the whole image, so a region's prediction equals that part of the whole one.
    """
    region = region or tuple(slice(0, n) for n in shape)
    if any(r.start % multiple for r in region):
        raise ValueError(f"region starts must be multiples of {multiple}, got {region}")
    padded = [_round_up(s, multiple) for s in shape]
    cores = [max(multiple, _round_up(t, multiple)) for t in tile_size]
    halos = [_round_up(h, multiple) for h in halo]
    window = [
        min(p, _round_up(r.stop - r.start, multiple) + 2 * h, c + 2 * h)
        for p, r, c, h in zip(padded, region, cores, halos, strict=True)
    ]
    per_axis: list[list[tuple[slice, slice, slice]]] = []
    for n, p, c, h, w, r in zip(shape, padded, cores, halos, window, region, strict=True):
        if w == p:
            # The whole axis fits in one window: one tile, no seams at all.
            per_axis.append([(slice(0, p), r, r)])
            continue
        axis_tiles = []
        for start in range(r.start, r.stop, c):
            stop = min(start + c, r.stop, n)
            w_start = min(max(start - h, 0), p - w)
            axis_tiles.append(
                (
                    slice(w_start, w_start + w),
                    slice(start, stop),
                    slice(start - w_start, stop - w_start),
                )
            )
        per_axis.append(axis_tiles)
    tiles = [
        Tile(tuple(t[0] for t in combo), tuple(t[1] for t in combo), tuple(t[2] for t in combo))
        for combo in itertools.product(*per_axis)
    ]
    return tiles, tuple(window)


# One forward pass over the whole image when it has at most this many pixels (voxels): no
# halo is computed at all, and Segment on a normal image is a single pass.
WHOLE_IMAGE_BUDGET = {2: 1536 * 1536, 3: 128**3}
# Larger images are cut into windows of at most this many pixels (voxels), and batches of
# windows stay within it. Per-pixel speed hardly depends on the window size once memory is
# reused (benchmarks/large_inputs.py), but memory does: one CPU forward pass of a base-16 net
# in bfloat16 peaked at 290 MB for a 1024^2 window and 680 MB for 1536^2 (2D, depth 4), and
# at 410 MB for 128 x 96^2 and 720 MB for 128^3 voxels (3D, depth 3).
WINDOW_BUDGET = {2: 1024 * 1024, 3: 112**3}


def resolve_halo(halo: int | tuple[int, ...] | str, config) -> tuple[int, ...]:
    """Halo per axis for ``halo``: "exact" is the receptive radius (tiled output equals the
    whole-image output); "auto" is that radius capped at an eighth of the budget window's edge.

    The cap only bites in 3D: a depth-3 net's exact radius of 58 voxels would leave tiny
    cores in 112-voxel windows, many times the work; 14 voxels of context (MONAI's default
    overlap gives 12) keep it near 2x, and volumes that fit one pass stay exact.
    """
    dims = config.spatial_dims
    if halo in ("exact", "auto"):
        radius = receptive_radius(config)
        if halo == "auto":
            cap = round(WINDOW_BUDGET[dims] ** (1 / dims)) // 8
            radius = min(radius, max(config.size_multiple, cap))
        return (radius,) * dims
    if isinstance(halo, str):
        raise UserInputError(f"halo must be 'exact', 'auto' or a number of pixels, got {halo!r}")
    return (int(halo),) * dims if isinstance(halo, (int, np.integer)) else tuple(halo)


def default_tile_size(
    shape: tuple[int, ...], halo: tuple[int, ...], multiple: int
) -> tuple[int, ...]:
    """Core size for ``shape``: the whole image in one window when it fits
    :data:`WHOLE_IMAGE_BUDGET`, else the largest cores whose windows (core + 2 halos) fit
    :data:`WINDOW_BUDGET`, choosing which axes to take whole (no seams along them) and how
    many tiles per axis so that the total work, halos included, is least."""
    dims = len(shape)
    padded = [_round_up(s, multiple) for s in shape]
    if math.prod(padded) <= WHOLE_IMAGE_BUDGET[dims]:
        return tuple(padded)
    budget = WINDOW_BUDGET[dims]
    halos = [_round_up(h, multiple) for h in halo]
    best: tuple[int, tuple[int, ...]] | None = None
    # Try every choice of axes taken whole (at most 8 in 3D) and keep the least total work.
    for whole in itertools.product((False, True), repeat=dims):
        fixed = math.prod(p for p, w in zip(padded, whole, strict=True) if w)
        free = whole.count(False)
        if fixed > budget or free == 0:
            continue
        edge = (budget / fixed) ** (1 / free) + 1e-6  # float roots of exact powers
        cores, work = [], 1
        for p, h, w in zip(padded, halos, whole, strict=True):
            if w:
                cores.append(p)
                work *= p
                continue
            largest = (int(edge) - 2 * h) // multiple * multiple
            if largest < multiple:
                break
            # As many tiles as the largest core needs, evened out: no thin last tile whose
            # window would be mostly overlap.
            count = -(-p // largest)
            core = min(p, _round_up(-(-p // count), multiple))
            cores.append(core)
            work *= -(-p // core) * min(p, core + 2 * h)
        else:
            if best is None or work < best[0]:
                best = (work, tuple(cores))
    if best is None:  # halos too wide for the budget: the smallest cores
        return tuple(min(p, multiple) for p in padded)
    return best[1]


def _mirrored_index(start: int, size: int, n: int, mode: str) -> slice | np.ndarray:
    """Index into a real axis of length ``n`` for ``size`` pixels from ``start`` (which may lie
    outside the axis): mirrored about the first and last pixel (``"reflect"``, as numpy's and
    torch's reflection) or the edge repeated (``"replicate"``)."""
    if start >= 0 and start + size <= n:
        return slice(start, start + size)
    idx = np.arange(start, start + size)
    if mode != "reflect" or n == 1:
        return np.clip(idx, 0, n - 1)
    period = 2 * (n - 1)
    idx = np.abs(idx) % period
    return np.where(idx >= n, period - idx, idx)


def _taper(window: tuple[int, ...], core_in_window: tuple[slice, ...]) -> np.ndarray:
    """Blending weights: 1 on the core, falling off smoothly (cosine) across the halo."""
    weights = np.ones(window, np.float32)
    for axis, (w, core) in enumerate(zip(window, core_in_window, strict=True)):
        ramp = np.ones(w, np.float32)
        for i in range(core.start):
            ramp[i] = 0.5 - 0.5 * math.cos(math.pi * (i + 1) / (core.start + 1))
        for i in range(core.stop, w):
            ramp[i] = 0.5 - 0.5 * math.cos(math.pi * (w - i) / (w - core.stop + 1))
        shape = [1] * len(window)
        shape[axis] = w
        weights *= ramp.reshape(shape)
    return weights


def _out_of_memory(err: BaseException) -> bool:
    """True for a device (CUDA, MPS) or CPU allocation failure."""
    return isinstance(err, torch.OutOfMemoryError) or "can't allocate memory" in str(err)


def _shift(core: tuple[slice, ...], region: tuple[slice, ...]) -> tuple[slice, ...]:
    """A core in image coordinates as an index into the region's output array."""
    return tuple(
        slice(c.start - r.start, c.stop - r.start) for c, r in zip(core, region, strict=True)
    )


NON_FINITE_OUTPUT = (
    "the network's output is not finite (NaN or infinity), so no segmentation was written: "
    "the model's weights or the image's values are out of range for the precision it ran in "
    "(NAPARI_UNET_PRECISION=float32 runs it in float32)"
)


def probabilities_to_labels(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Class labels from (K, ...) probabilities: ``p > threshold`` for one or two classes
    (foreground = 1), the most probable class for more."""
    if prob.shape[0] == 1:
        return (prob[0] > threshold).astype(np.uint8)
    if prob.shape[0] == 2:
        return (prob[1] > threshold).astype(np.uint8)
    return np.argmax(prob, axis=0).astype(np.uint8 if prob.shape[0] <= 256 else np.uint16)


def foreground_plane(prob: np.ndarray) -> np.ndarray:
    """The (1, ...) foreground probability of (K, ...) probabilities: the one channel, or
    1 - background."""
    return prob[:1] if prob.shape[0] == 1 else 1 - prob[:1]


def labels_on_grid(
    prob: np.ndarray,
    to_grid: Callable[[np.ndarray], np.ndarray],
    threshold: float,
    all_classes: bool,
) -> tuple[np.ndarray | None, np.ndarray]:
    """Class labels of ``prob`` on another grid, ``to_grid`` interpolating (C, ...) arrays
    there: from all the classes (returned too) when ``all_classes``, else from the foreground
    plane alone (a slide's worth of every class is large)."""
    if all_classes:
        full = to_grid(prob)
        return full, probabilities_to_labels(full, threshold)
    return None, (to_grid(foreground_plane(prob))[0] > threshold).astype(np.uint8)


def predict_tiled(
    model: Network,
    source: BlockSource,
    out: np.ndarray,
    *,
    tile_size: int | tuple[int, ...] | None = None,
    halo: int | tuple[int, ...] | str = "auto",
    batch_size: int = 4,
    device: torch.device | str = "cpu",
    precision: str = "auto",
    blend: bool = False,
    output: str = "probabilities",
    threshold: float = 0.5,
    region: tuple[slice, ...] | None = None,
    finish: Callable[[torch.Tensor], torch.Tensor] = activation,
) -> Iterator[TileProgress]:
    """Predict ``source`` tile by tile into the preallocated ``out``, yielding progress.

    Parameters
    ----------
    model : the network (put in eval mode here).
    source : the image, read block by block.
    out : float32 array (K, *spatial) for ``output="probabilities"``, or an integer array
        (*spatial) for ``output="labels"``. May be a memory map: only the cores are written.
    tile_size : core size per axis, rounded up to ``2**depth``; None: the whole image in one
        window when it fits :data:`WHOLE_IMAGE_BUDGET`, else windows of :data:`WINDOW_BUDGET`.
    halo : context around each core: "exact" (the receptive radius: tiled == untiled), "auto"
        (exact in 2D, capped in 3D, see :func:`resolve_halo`) or pixels.
    batch_size : windows per forward pass (at most what fits the window budget); memory grows
        with it, not with the image. When the device runs out of memory the batch is halved
        and prediction goes on; a single window that does not fit raises UserInputError.
    device, precision : where and in which precision to run (see :mod:`.devices`).
    blend : accumulate whole windows with cosine weights instead of keeping cores (only for
        probabilities; softens seams when a small halo is chosen). ``out`` is then normalised
        in place at the end.
    output : "probabilities" or "labels".
    threshold : foreground threshold for labels of one- or two-class models.
    region : predict only this part of the image (slices with steps of 1, starts multiples of
        the model's ``size_multiple``), with context from around it; ``out`` then has the
        region's shape. Used to segment very large images part by part.
    finish : turns the network's output into probabilities (softmax / sigmoid by default; the
        identity for networks that finish their output themselves, like bioimage.io packages).
    """
    config = model.config
    shape = source.shape
    device = torch.device(device)
    region = _checked_region(config, shape, out, output, blend, region)
    plan = _plan_windows(config, shape, region, tile_size, halo, batch_size)
    blend = blend and not plan.margin  # a valid network's cores are exact: nothing to blend
    weight_sum = np.zeros(shape, np.float32) if blend else None
    if blend:
        out[...] = 0
    tapers: dict[tuple[tuple[int, int], ...], np.ndarray] = {}
    tiles, batch_size = plan.tiles, plan.batch_size
    model.eval()
    layout = memory_format(device, len(shape))
    model.to(device, memory_format=layout)
    yield TileProgress(0, len(tiles))
    first = 0
    with torch.inference_mode():
        while first < len(tiles):
            batch = tiles[first : first + batch_size]
            # Each window with its margin (0 but for "valid" networks), mirrored at the border.
            blocks = [source.read(plan.input_index(t, shape)) for t in batch]
            x = torch.from_numpy(np.stack(blocks)).to(device).contiguous(memory_format=layout)
            try:
                prob = _forward(model, x, plan, device, precision, finish)
            except (torch.OutOfMemoryError, RuntimeError) as err:
                del x
                batch_size = _fewer_windows(err, len(batch), device, plan.window)
                continue
            for tile, p in zip(batch, prob, strict=True):
                if weight_sum is not None:
                    _add_blended(out, weight_sum, tile, p, plan.window, shape, tapers)
                else:
                    _keep_core(out, tile, p, region, output, threshold)
            first += len(batch)
            yield TileProgress(first, len(tiles))
    if weight_sum is not None:
        out /= np.maximum(weight_sum, 1e-6)


def _checked_region(
    config: Any,
    shape: tuple[int, ...],
    out: np.ndarray,
    output: str,
    blend: bool,
    region: tuple[slice, ...] | None,
) -> tuple[slice, ...]:
    """The region to predict (the whole image by default), after checking the request and
    that ``out`` has the shape it needs."""
    if output not in ("probabilities", "labels"):
        raise UserInputError(f"output must be 'probabilities' or 'labels', got {output!r}")
    if blend and output != "probabilities":
        raise UserInputError("blending needs probabilities output")
    if region is not None:
        if blend:
            raise UserInputError("blending works on whole images only, not on a region")
        region = tuple(slice(*r.indices(n)[:2]) for r, n in zip(region, shape, strict=True))
    else:
        region = tuple(slice(0, n) for n in shape)
    region_shape = tuple(r.stop - r.start for r in region)
    channels = config.out_channels
    expected = (channels, *region_shape) if output == "probabilities" else region_shape
    if tuple(out.shape) != expected:
        raise UserInputError(f"output array has shape {tuple(out.shape)}, expected {expected}")
    return region


@dataclass(frozen=True)
class _WindowPlan:
    """The windows of one prediction and how each is read."""

    tiles: list[Tile]
    window: tuple[int, ...]  # the window every tile has
    net_input: tuple[int, ...]  # what the network reads per window (window + 2 margins)
    margin: int  # a "valid" network's margin; 0 for "same" networks
    mode: str  # how the image is extended beyond its border
    batch_size: int

    def input_index(self, tile: Tile, shape: tuple[int, ...]) -> tuple[slice | np.ndarray, ...]:
        """Where the network's input for ``tile`` lies in the image (mirrored at borders)."""
        return tuple(
            _mirrored_index(w.start - self.margin, size, n, self.mode)
            for w, size, n in zip(tile.window, self.net_input, shape, strict=True)
        )


def _plan_windows(
    config: Any,
    shape: tuple[int, ...],
    region: tuple[slice, ...],
    tile_size: int | tuple[int, ...] | None,
    halo: int | tuple[int, ...] | str,
    batch_size: int,
) -> _WindowPlan:
    dims = len(shape)
    halos = resolve_halo(halo, config)
    multiple = config.size_multiple
    region_shape = tuple(r.stop - r.start for r in region)
    # A "valid" network (the paper's overlap-tile strategy) gives exactly the core when the
    # core is read with its margin of context, mirrored at the image border: no halo to
    # discard, nothing to blend, and the same output as one pass over the whole image.
    margin = getattr(config, "valid_margin", 0)
    if margin:
        halos = (margin,) * dims
    if tile_size is None:
        tiles_ = default_tile_size(region_shape, halos, multiple)
    else:
        tiles_ = (tile_size,) * dims if isinstance(tile_size, int) else tuple(tile_size)
    tiles, window = plan_tiles(shape, tiles_, (0,) * dims if margin else halos, multiple, region)
    if margin:
        valid_input = config.valid_input_size
        net_input = tuple(valid_input(w) for w in window)
        after = tuple(valid_input(s) - s - margin for s in shape)
        mode = padding_mode(shape, tuple(max(margin, a) for a in after))
    else:
        net_input = window
        padded = tuple(_round_up(s, multiple) for s in shape)
        mode = padding_mode(shape, tuple(p - s for p, s in zip(padded, shape, strict=True)))
    # Batch small windows (GPUs like it); never stack large ones beyond the budget.
    batch_size = max(1, min(int(batch_size), WINDOW_BUDGET[dims] // math.prod(net_input)))
    return _WindowPlan(tiles, window, net_input, margin, mode, batch_size)


def _forward(
    model: Network,
    x: torch.Tensor,
    plan: _WindowPlan,
    device: torch.device,
    precision: str,
    finish: Callable[[torch.Tensor], torch.Tensor],
) -> np.ndarray:
    """Probabilities of a batch of windows, checked finite."""
    reuse = reuse_cpu_memory if device.type == "cpu" else nullcontext
    with reuse(), autocast(device, precision):
        if plan.margin:
            logits = cast(UNet, model).forward_valid(x)  # only our U-Net has a margin
            crop: tuple[Any, ...] = (..., *(slice(0, w) for w in plan.window))
            logits = logits[crop]
        else:
            logits = model(x)
        prob = finish(logits.float()).cpu().numpy()
    if not np.isfinite(prob).all():
        raise UserInputError(NON_FINITE_OUTPUT)
    return prob


def _fewer_windows(
    err: BaseException, windows: int, device: torch.device, window: tuple[int, ...]
) -> int:
    """After ``err``: half as many windows per pass when the device ran out of memory (and
    more than one was tried); otherwise ``err`` again, or a UserInputError for one window."""
    if not _out_of_memory(err):
        raise err
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if windows == 1:
        raise UserInputError(
            f"out of memory on {device} for one window of {'x'.join(map(str, window))} "
            "pixels; choose a smaller tile size"
        ) from None
    return windows // 2


def _keep_core(
    out: np.ndarray,
    tile: Tile,
    p: np.ndarray,
    region: tuple[slice, ...],
    output: str,
    threshold: float,
) -> None:
    """Write the core of one window's probabilities (or their labels) into ``out``."""
    core = p[(slice(None), *tile.core_in_window)]
    if output == "probabilities":
        out[(slice(None), *_shift(tile.core, region))] = core
    else:
        out[_shift(tile.core, region)] = probabilities_to_labels(core, threshold)


def _add_blended(
    out: np.ndarray,
    weight_sum: np.ndarray,
    tile: Tile,
    p: np.ndarray,
    window: tuple[int, ...],
    shape: tuple[int, ...],
    tapers: dict[tuple[tuple[int, int], ...], np.ndarray],
) -> None:
    """Add a whole window, cropped to the real image, weighted by a cosine taper."""
    real = tuple(slice(w.start, min(w.stop, n)) for w, n in zip(tile.window, shape, strict=True))
    in_win = tuple(slice(0, r.stop - r.start) for r in real)
    key = tuple((c.start, c.stop) for c in tile.core_in_window)
    if key not in tapers:
        tapers[key] = _taper(window, tile.core_in_window)
    wt = tapers[key][in_win]
    out[(slice(None), *real)] += p[(slice(None), *in_win)] * wt
    weight_sum[real] += wt
