"""Preprocessing shared by training and prediction: channel handling and intensity scaling.

The :class:`Preprocessing` settings are stored in the model file, so an image is prepared the
same way when a model is trained, fine-tuned, and applied.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

import numpy as np

from ..errors import UserInputError
from .arrays import add_leading_axis, moveaxis

CHANNEL_MODES = ("as_is", "gray", "single")
NORM_MODES = ("percentile", "fixed", "none")
INVERT_MODES = ("no", "yes", "auto")
# "auto" inverts images whose median normalised intensity (the mean over channels) is above
# this. On DSB2018 (533 images) it is 0.00-0.19 for fluorescence, 0.53-0.95 for H&E and
# brightfield.
BRIGHT_BACKGROUND = 0.3
# Luminance weights (ITU-R BT.709), as skimage.color.rgb2gray uses.
_LUMA = np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)
# Percentiles are estimated on at most this many values per channel: enough for 4 digits.
_STATS_SAMPLE = 2**22


@dataclass(frozen=True)
class Preprocessing:
    """How raw pixels become network input.

    Attributes
    ----------
    channel_mode : "as_is" keeps the image's channels (an RGBA image loses its alpha when the
        model takes 3 channels); "gray" turns RGB(A) into luminance, so colour and grayscale
        images can train and run one single-channel model; "single" keeps only channel
        ``channel`` (e.g. 1, the green channel of fundus photographs, where vessels have the
        most contrast and the choroid underneath shows least).
    channel : the channel kept by "single" (0-based).
    norm : "percentile" maps the ``low``/``high`` percentiles of each image to 0/1 (robust to
        any dtype and exposure); "fixed" maps ``fixed_min``/``fixed_max`` to 0/1; "none" only
        converts to float.
    low, high : percentiles for "percentile".
    per_channel : compute percentiles per channel (True) or over all channels jointly.
    fixed_min, fixed_max : range for "fixed".
    invert : "no"; "yes" turns the normalised intensities upside down (1 - x); "auto" does so
        for images whose background is bright (median normalised intensity above
        :data:`BRIGHT_BACKGROUND`): H&E and brightfield nuclei are dark on a bright background,
        fluorescence nuclei bright on a dark one, so one model sees both the same way round.
    """

    channel_mode: str = "as_is"
    norm: str = "percentile"
    low: float = 1.0
    high: float = 99.8
    per_channel: bool = True
    fixed_min: float = 0.0
    fixed_max: float = 255.0
    channel: int = 0
    invert: str = "no"

    def __post_init__(self) -> None:
        for name in ("low", "high", "fixed_min", "fixed_max"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise UserInputError(f"{name} must be a number, got {value!r}")
        if not isinstance(self.channel, int) or isinstance(self.channel, bool):
            raise UserInputError(f"channel must be a whole number, got {self.channel!r}")
        if not isinstance(self.per_channel, bool):
            raise UserInputError(f"per_channel must be true or false, got {self.per_channel!r}")
        if self.channel_mode not in CHANNEL_MODES:
            raise UserInputError(
                f"channel_mode must be one of {CHANNEL_MODES}, got {self.channel_mode!r}"
            )
        if self.channel < 0:
            raise UserInputError(f"the channel to keep must be 0 or more, got {self.channel}")
        if self.norm not in NORM_MODES:
            raise UserInputError(f"norm must be one of {NORM_MODES}, got {self.norm!r}")
        if not 0 <= self.low < self.high <= 100:
            raise UserInputError(
                f"percentiles must satisfy 0 <= low < high <= 100, got {self.low}, {self.high}"
            )
        if self.norm == "fixed" and self.fixed_max <= self.fixed_min:
            raise UserInputError("fixed_max must be greater than fixed_min")
        if self.invert not in INVERT_MODES:
            raise UserInputError(f"invert must be one of {INVERT_MODES}, got {self.invert!r}")
        if self.invert != "no" and self.norm == "none":
            raise UserInputError(
                "inverting intensities needs a normalisation (percentile or fixed), not 'none'"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def check_image_array(image: Any, what: str = "the image") -> None:
    """Raise a clear error for arrays no model can read: no pixels along an axis, or values
    that are not real numbers (complex, text, objects). Any real dtype is fine: bool, int8 to
    uint64, float16 to float64."""
    shape = tuple(np.shape(image))
    if not shape or 0 in shape:
        raise UserInputError(
            f"{what} has shape {shape}: it holds no pixels; expected an image with at least "
            "one pixel along every axis"
        )
    # Arrays (numpy, memory maps, zarr, dask) say their dtype; reading one to learn it would
    # load a whole large image. Only plain sequences are converted.
    dtype = np.dtype(image.dtype) if hasattr(image, "dtype") else np.asarray(image).dtype
    if dtype.kind not in "buif":
        kind = "complex numbers" if dtype.kind == "c" else f"values of type {dtype}"
        hint = " (take the magnitude or the real part first)" if dtype.kind == "c" else ""
        raise UserInputError(
            f"{what} holds {kind}{hint}; expected real intensities (bool, integers or floats)"
        )


def channels_first(
    image: np.ndarray, spatial_dims: int, channel_axis: int | None = None
) -> np.ndarray:
    """Return a view of ``image`` as (C, *spatial), without copying: memory maps, dask and
    zarr arrays stay lazy (see :mod:`.arrays`).

    With ``channel_axis=None`` the channel axis is guessed: none when ``image`` has exactly
    ``spatial_dims`` axes; otherwise the last axis when it has at most 4 entries (RGB/RGBA
    files), else the first when it has at most 16.
    """
    check_image_array(image)
    shape = tuple(image.shape)
    ndim = len(shape)
    if ndim == spatial_dims and channel_axis is None:
        return add_leading_axis(image)
    if ndim != spatial_dims + 1:
        raise UserInputError(
            f"expected a {spatial_dims}D image, optionally with one channel axis, "
            f"got an array of shape {shape} ({ndim} axes)"
        )
    if channel_axis is None:
        if shape[-1] <= 4:
            channel_axis = -1
        elif shape[0] <= 16:
            channel_axis = 0
        else:
            raise UserInputError(
                f"cannot tell which axis of the image of shape {shape} holds channels; "
                "give the channel axis explicitly"
            )
    if not -ndim <= channel_axis < ndim:
        raise UserInputError(f"channel axis {channel_axis} is out of range for shape {shape}")
    return moveaxis(image, channel_axis, 0)


def select_channels(
    block: np.ndarray, preprocessing: Preprocessing, in_channels: int
) -> np.ndarray:
    """Map a (C, ...) float block to the ``in_channels`` the model takes, or raise."""
    channels = block.shape[0]
    if preprocessing.channel_mode == "single":
        if preprocessing.channel >= channels:
            raise UserInputError(
                f"the model uses channel {preprocessing.channel} of its input images, "
                f"but the image has {channels} channel(s)"
            )
        block, channels = block[preprocessing.channel : preprocessing.channel + 1], 1
    if preprocessing.channel_mode == "gray" and channels > 1:
        if channels in (3, 4):
            block = np.tensordot(_LUMA, block[:3], axes=1)[np.newaxis]
        else:
            block = block.mean(axis=0, keepdims=True)
        channels = 1
    if channels == 4 and in_channels == 3:
        block, channels = block[:3], 3  # RGBA: the alpha channel carries no image content
    if channels != in_channels:
        raise UserInputError(
            f"the model expects {in_channels} input channel(s) but the image has {channels}"
            + (
                " (colour image: this model was trained on single-channel images)"
                if channels in (3, 4)
                else ""
            )
        )
    return block


def model_channels(raw_channels: int, preprocessing: Preprocessing) -> int:
    """Number of channels the network sees for an image with ``raw_channels`` channels."""
    if preprocessing.channel_mode in ("gray", "single"):
        return 1
    return raw_channels


def _sample(view: np.ndarray) -> np.ndarray:
    """A strided subsample of a (C, *spatial) array with at most ``_STATS_SAMPLE`` voxels each."""
    spatial = view.shape[1:]
    total = int(np.prod(spatial))
    if total <= _STATS_SAMPLE:
        return np.asarray(view)
    step = int(np.ceil((total / _STATS_SAMPLE) ** (1 / len(spatial))))
    return np.asarray(view[(slice(None), *(slice(None, None, step) for _ in spatial))])


def intensity_stats(
    view: np.ndarray, preprocessing: Preprocessing
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (offset, scale) so that ``(x - offset) / scale`` is the normalised image.

    ``view`` is the raw (C, *spatial) image; large images are subsampled, so this is cheap even
    for memory-mapped stacks. Raises for images containing NaN or infinity.
    """
    sample = _sample(view)  # in its own dtype: a uint16 sample takes half the memory
    if sample.dtype.kind == "b":
        sample = sample.view(np.uint8)
    if sample.dtype.kind == "f" and not np.isfinite(sample).all():
        raise UserInputError(
            "the image contains NaN or infinite values; replace them before segmenting"
        )
    channels = sample.shape[0]
    if preprocessing.norm == "none":
        return np.zeros(channels, np.float32), np.ones(channels, np.float32)
    # Percentiles of values near the float64 limit (1e308) overflow in their interpolation:
    # measured on the sample divided by a power of two (exact), and multiplied back.
    shrink = 1.0
    if sample.dtype.kind == "f" and sample.size and float(np.abs(sample).max()) > _FLOAT64_SAFE:
        shrink = 2.0**-64
        sample = sample.astype(np.float64) * shrink
    if preprocessing.norm == "fixed":
        lo = np.full(channels, preprocessing.fixed_min * shrink, np.float64)
        hi = np.full(channels, preprocessing.fixed_max * shrink, np.float64)
    elif preprocessing.per_channel:
        flat = sample.reshape(channels, -1)
        lo, hi = np.percentile(flat, [preprocessing.low, preprocessing.high], axis=1)
    else:
        lo_v, hi_v = np.percentile(sample, [preprocessing.low, preprocessing.high])
        lo = np.full(channels, lo_v, np.float64)
        hi = np.full(channels, hi_v, np.float64)
    scale = hi - lo
    # A flat channel (e.g. an empty one) would divide by zero; leave it unscaled instead.
    flat = scale <= 1e-12 * shrink
    scale[flat] = 1.0 * shrink
    if _inverted(sample, lo, scale, ~flat, preprocessing.invert):
        # (x - hi) / (lo - hi) = 1 - (x - lo) / (hi - lo): the same map, upside down.
        lo, scale = lo + scale, -scale
    with np.errstate(over="ignore"):
        lo, scale = lo / shrink, scale / shrink
    # A range wider than float64 holds (-1e308 to 1e308) stays the widest finite one.
    scale = np.clip(scale, -np.finfo(np.float64).max, np.finfo(np.float64).max)
    if _fits_float32(lo, scale):
        return lo.astype(np.float32), scale.astype(np.float32)
    return lo, scale  # float64: apply_stats then normalises in float64


_FLOAT64_SAFE = 1e300  # beyond this, sums and differences of two values may overflow float64
_FLOAT32_SAFE = 1e30  # offsets and scales within this normalise in float32 without overflow


def _fits_float32(offset: np.ndarray, scale: np.ndarray) -> bool:
    magnitude = np.abs(scale)
    return bool(
        np.all(np.abs(offset) < _FLOAT32_SAFE)
        and np.all(magnitude < _FLOAT32_SAFE)
        and np.all(magnitude > 1 / _FLOAT32_SAFE)
    )


def _inverted(
    sample: np.ndarray, lo: np.ndarray, scale: np.ndarray, contrast: np.ndarray, invert: str
) -> bool:
    """Whether to invert: always, never, or (auto) when the background is bright, judged on
    the channels with ``contrast`` (a flat one, like an opaque alpha, says nothing)."""
    if invert != "auto":
        return invert == "yes"
    if not contrast.any():
        return False
    # The median commutes with the (increasing) normalisation: no normalised copy of the image.
    medians = np.array([np.median(sample[c]) for c in np.flatnonzero(contrast)])
    return float(np.mean((medians - lo[contrast]) / scale[contrast])) > BRIGHT_BACKGROUND


def apply_stats(block: np.ndarray, offset: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Normalise a raw (C, ...) block with per-channel ``offset`` and ``scale`` to float32.

    Usual images are normalised in float32. Where the stats (or the block's values) exceed
    what float32 holds, the arithmetic is done in float64 and the result limited to
    +-``NORMALISED_LIMIT``: always finite, whatever the values."""
    shape = (-1,) + (1,) * (block.ndim - 1)
    wide = (
        block.dtype.itemsize == 8
        and block.dtype.kind in "fiu"
        and block.size > 0
        # two reductions, no |block| copy: this runs on every block of 64-bit images
        and max(-float(block.min()), float(block.max())) > _FLOAT32_SAFE
    )
    if not wide and _fits_float32(offset, scale):
        out = block.astype(np.float32)  # always a copy: the caller's array is never modified
        out -= offset.reshape(shape).astype(np.float32)
        out /= scale.reshape(shape).astype(np.float32)
        return out
    offset64 = np.asarray(offset, np.float64).reshape(shape)
    scale64 = np.asarray(scale, np.float64).reshape(shape)
    with np.errstate(over="ignore", invalid="ignore"):
        # x / s - o / s: no difference of two values near the float64 limit.
        out64 = block.astype(np.float64) / scale64 - offset64 / scale64
    np.nan_to_num(out64, copy=False, nan=0.0, posinf=NORMALISED_LIMIT, neginf=-NORMALISED_LIMIT)
    np.clip(out64, -NORMALISED_LIMIT, NORMALISED_LIMIT, out=out64)
    return out64.astype(np.float32)


NORMALISED_LIMIT = 1e6  # normalised values are ~0-1; far beyond that a value only says "bright"


class BlockSource(Protocol):
    """What the tiler reads: an image's spatial ``shape`` and its blocks, channels first, as
    the network takes them (:class:`ImageSource`, :class:`PreparedSource`, or a
    bioimage.io package's own reader)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def read(self, index: tuple[slice | np.ndarray, ...]) -> np.ndarray: ...


class ImageSource:
    """Reads normalised, channel-mapped blocks of an image of any size, lazily.

    Parameters
    ----------
    image : array of shape (*spatial) or with one channel axis; numpy arrays and memory maps
        are read block by block.
    spatial_dims : 2 or 3.
    preprocessing : the model's :class:`Preprocessing`.
    in_channels : channels the model takes.
    channel_axis : axis of ``image`` holding channels, or None to guess.
    stats : the (offset, scale) of :func:`intensity_stats`, when already measured (the blocks
        of one image predicted by different processes must share them).
    """

    def __init__(
        self,
        image: np.ndarray,
        spatial_dims: int,
        preprocessing: Preprocessing,
        in_channels: int,
        channel_axis: int | None = None,
        stats: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        self.view = channels_first(image, spatial_dims, channel_axis)
        self.preprocessing = preprocessing
        self.in_channels = in_channels
        # Fail before any work if channels cannot match, with the user's channel count.
        probe = np.zeros((self.view.shape[0],) + (1,) * spatial_dims, np.float32)
        select_channels(probe, preprocessing, in_channels)
        self.offset, self.scale = stats or intensity_stats(self.view, preprocessing)

    @property
    def shape(self) -> tuple[int, ...]:
        """Spatial shape of the image."""
        return tuple(self.view.shape[1:])

    def read(self, index: tuple[slice | np.ndarray, ...]) -> np.ndarray:
        """Normalised float32 block (in_channels, ...) at a spatial ``index`` (see :func:`read_block`)."""
        block = read_block(self.view, index)
        if block.dtype.kind == "f" and not np.isfinite(block).all():
            raise UserInputError(
                "the image contains NaN or infinite values; replace them before segmenting"
            )
        block = apply_stats(block, self.offset, self.scale)
        return select_channels(block, self.preprocessing, self.in_channels)


class PreparedSource:
    """An already normalised (C, *spatial) float32 array, read like an :class:`ImageSource`."""

    def __init__(self, image: np.ndarray):
        self.view = image

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.view.shape[1:])

    def read(self, index: tuple[slice | np.ndarray, ...]) -> np.ndarray:
        return np.ascontiguousarray(read_block(self.view, index), dtype=np.float32)


def read_block(view: np.ndarray, index: tuple[slice | np.ndarray, ...]) -> np.ndarray:
    """Read ``view[:, *index]`` where each index entry is a slice or an array of indices.

    Index arrays (used by the tiler to pad beyond the image edge) are applied axis by axis
    after reading only their bounding range, so memory maps are never read whole.
    """
    bounds: list[slice] = []
    takes: list[np.ndarray | None] = []
    for idx in index:
        if isinstance(idx, slice):
            bounds.append(idx)
            takes.append(None)
        else:
            lo = int(idx.min())
            bounds.append(slice(lo, int(idx.max()) + 1))
            takes.append(idx - lo)
    block = np.asarray(view[(slice(None), *bounds)])
    for axis, take in enumerate(takes):
        if take is not None:
            block = np.take(block, take, axis=axis + 1)
    return block
