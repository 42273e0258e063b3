"""Apply a trained model to an image: probabilities, class labels, or object labels."""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from .. import limits
from ..data.arrays import moveaxis
from ..data.normalize import BlockSource, ImageSource, check_image_array
from ..data.object_size import ObjectScale
from ..data.rescale import RescaledSource, objects_to_original_grid, to_original_grid
from ..errors import UserInputError
from ..interop.bioimageio_import import PackageModel
from ..interop.open import load_any_model
from ..models.model_file import ModelFile
from ..network.devices import describe_device, release_cpu_memory, resolve_device
from ..network.fold import fold_batchnorm
from ..network.unet import Network
from .instances import instances_from_probabilities
from .packages import package_tiling
from .scale import ScaleChoice, choose_scale, found_size, refined
from .stitching import iter_instances_in_blocks
from .tiling import TileProgress, labels_on_grid, predict_tiled, probabilities_to_labels
from .tta import TestTimeAugmented

OUTPUTS = ("semantic", "instances", "probabilities")
MIN_SIZE_FRACTION = 0.1  # of a median object's area: smaller pieces are fragments

_R = TypeVar("_R")  # what a prediction generator returns


@dataclass
class Prediction:
    """Result of :meth:`Segmenter.predict`: labels (*spatial) and optionally probabilities."""

    labels: np.ndarray
    probabilities: np.ndarray | None
    device: str
    scale: ScaleChoice | None = None  # the grid it was predicted on, and why


def instances_from_foreground(foreground: np.ndarray, min_size: int = 0) -> np.ndarray:
    """One label (uint32) per connected foreground component of at least ``min_size`` pixels,
    numbered 1..N (touching objects stay merged; instance models separate them).

    Works in place on one uint32 array, so a 16k x 16k image needs 1 GB, not the 2 GB of int64
    labels and again as much to renumber them."""
    from scipy import ndimage as ndi

    labels: np.ndarray = np.zeros(foreground.shape, np.uint32)
    count = ndi.label(foreground, np.ones((3,) * foreground.ndim), output=labels)
    if count == 0:
        return labels
    sizes = np.zeros(count + 1, np.int64)
    chunk = max(1, 2**22 // max(1, labels[0].size))  # rows per chunk: small int64 copies
    for rows in range(0, labels.shape[0], chunk):
        sizes += np.bincount(labels[rows : rows + chunk].ravel(), minlength=count + 1)
    keep = sizes >= max(min_size, 1)
    keep[0] = False
    if keep[1:].all():
        return labels  # ndimage numbers components 1..N already
    numbers = np.zeros(count + 1, np.uint32)
    numbers[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
    for rows in range(0, labels.shape[0], chunk):  # in place: no second full array
        labels[rows : rows + chunk] = numbers[labels[rows : rows + chunk]]
    return labels


class Segmenter:
    """A model ready to predict on a device; reuse it for many images.

    Parameters
    ----------
    model : a :class:`ModelFile`, a path, or a bundled model's name.
    device : "auto", "cpu", "cuda", "cuda:1" or "mps".
    precision : "auto", "float32", "bfloat16" or "float16".
    """

    def __init__(
        self,
        model: ModelFile | PackageModel | str,
        device: str = "auto",
        precision: str = "auto",
        *,
        trust_code: bool = False,
    ):
        if isinstance(model, (ModelFile, PackageModel)):
            self.model_file = model
        else:
            self.model_file = load_any_model(model, trust_code=trust_code)
        self.device = resolve_device(device)
        self.precision = precision
        self.is_package = isinstance(self.model_file, PackageModel)
        self.net: Network
        if isinstance(self.model_file, PackageModel):
            # Someone else's network was validated in float32: "auto" keeps it there.
            self.precision = "float32" if precision == "auto" else precision
            self.net = self.model_file.network(self.device)
        else:
            # Prediction never trains this copy: batch norm folds into the convolutions.
            self.net = fold_batchnorm(self.model_file.build(self.device))

    @property
    def device_name(self) -> str:
        return describe_device(self.device)

    def iter_predict(
        self,
        image: np.ndarray,
        *,
        channel_axis: int | None = None,
        output: str = "semantic",
        keep_probabilities: bool = False,
        threshold: float = 0.5,
        tile_size: int | tuple[int, ...] | None = None,
        halo: int | str = "auto",
        batch_size: int = 4,
        min_size: int | None = None,
        seed_threshold: float = 0.5,
        test_time_augmentation: bool = False,
        object_size: str | float | tuple[str, float] = "auto",
        pixel_size: tuple[float, ...] | None = None,
    ) -> Generator[TileProgress, None, Prediction]:
        """Like :meth:`predict`, but a generator yielding tile progress; returns the result."""
        _check_request(output, threshold, seed_threshold, min_size, batch_size, tile_size)
        tiling = {
            "tile_size": tile_size,
            "halo": halo,
            "batch_size": batch_size,
            "device": self.device,
            "precision": self.precision,
        }
        source = self._source(image, channel_axis, tiling)
        scale = self.scale
        choice = choose_scale(scale, source, object_size, pixel_size=pixel_size)
        if min_size is None:  # a fraction of the model's object size: no fragments at any scale
            min_size = default_min_size(scale, len(source.shape))
        net = TestTimeAugmented(self.net) if test_time_augmentation else self.net
        cut = {"threshold": threshold, "seed_threshold": seed_threshold, "min_size": min_size}
        run = (net, source, output, keep_probabilities, cut, tiling)
        labels, prob = yield from self._run_at(choice, *run)
        # An estimate is checked on what the model found (a given size or factor is not).
        if scale is not None and choice.how == "estimated":
            measured = found_size(labels, scale, output == "instances")
            better = refined(choice, measured[0], scale) if measured else None
            if better is not None:  # the estimate was off: once more, at the corrected factor
                choice = better
                labels, prob = yield from self._run_at(choice, *run)
        wanted = keep_probabilities or output == "probabilities"
        labels, prob = _to_image_grid(labels, prob, source.shape, output, threshold, wanted)
        if not wanted:
            prob = None
        original = getattr(source, "original_shape", source.shape)  # packages pad small images
        if original != source.shape:
            crop = tuple(slice(0, n) for n in original)
            labels = labels[crop]
            prob = None if prob is None else prob[(slice(None), *crop)]
        if output == "instances" and not self.model_file.is_instance_model:
            on_image = round(min_size / math.prod(choice.factors))
            labels = instances_from_foreground(labels > 0, on_image)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        elif self.device.type == "cpu":
            release_cpu_memory()
        return Prediction(labels, prob, self.device_name, choice)

    @property
    def scale(self) -> ObjectScale | None:
        """The size of the structures the model was trained on (None: unknown, as for
        bioimage.io packages from elsewhere)."""
        return getattr(self.model_file, "scale", None)

    def _source(
        self, image: np.ndarray, channel_axis: int | None, tiling: dict[str, Any]
    ) -> BlockSource:
        """The image as the network reads it (a package's own preprocessing and tiler
        settings for bioimage.io packages, added to ``tiling``)."""
        if isinstance(self.model_file, PackageModel):
            source = self.model_file.source(image, channel_axis)
            tiling.update(
                package_tiling(self.model_file, source.shape, tiling["tile_size"], tiling["halo"])
            )
            return source
        config = self.model_file.config
        return ImageSource(
            image, config.spatial_dims, self.model_file.preprocessing, config.in_channels,
            channel_axis,
        )  # fmt: skip

    def _run_at(
        self,
        choice: ScaleChoice,
        net: Network,
        source: BlockSource,
        output: str,
        keep_probabilities: bool,
        cut: dict[str, Any],
        tiling: dict[str, Any],
    ) -> Generator[TileProgress, None, tuple[np.ndarray, np.ndarray | None]]:
        """:meth:`_run` on ``choice``'s grid; semantic labels on a rescaled grid come back
        from its probabilities (smooth edges), objects from a coarser one with them."""
        keep = keep_probabilities or _needs_probabilities(choice, output)
        grid = source if choice.native else RescaledSource(source, choice.factors)
        return (yield from self._run(net, grid, output, keep, cut, tiling))

    def _run(
        self,
        net: Network,
        source: BlockSource,
        output: str,
        keep_probabilities: bool,
        cut: dict[str, Any],
        tiling: dict[str, Any],
    ) -> Generator[TileProgress, None, tuple[np.ndarray, np.ndarray | None]]:
        """Predict ``source``: labels (and probabilities when they are kept or asked for),
        without holding whole-image probabilities when they are not needed."""
        config = self.model_file.config
        instance_model = self.model_file.is_instance_model
        if output == "probabilities" or keep_probabilities:
            prob = np.zeros((config.out_channels, *source.shape), np.float32)
            yield from predict_tiled(net, source, prob, **tiling)
            if output == "instances" and instance_model:
                labels = instances_from_probabilities(
                    prob,
                    foreground_threshold=cut["threshold"],
                    seed_threshold=cut["seed_threshold"],
                    min_size=cut["min_size"],
                )
            else:
                labels = probabilities_to_labels(prob, cut["threshold"])
            return labels, prob
        if output == "instances" and instance_model:
            # Block by block: the whole-image probabilities are never held (3 GB at 16k^2).
            labels = np.zeros(source.shape, np.uint32)
            tiling = {**tiling, "block_size": tiling["tile_size"]}
            del tiling["tile_size"]
            yield from iter_instances_in_blocks(
                net,
                source,
                labels,
                foreground_threshold=cut["threshold"],
                seed_threshold=cut["seed_threshold"],
                min_size=cut["min_size"],
                **tiling,
            )
            return labels, None
        # Labels straight from each tile: no full-size probability array in memory.
        labels = np.zeros(source.shape, np.uint8 if config.out_channels <= 256 else np.uint16)
        yield from predict_tiled(
            net, source, labels, output="labels", threshold=cut["threshold"], **tiling
        )
        return labels, None

    def predict(
        self,
        image: np.ndarray,
        *,
        progress: Callable[[TileProgress], None] | None = None,
        **options,
    ) -> Prediction:
        """Segment ``image`` (see :meth:`iter_predict` for options); ``progress`` sees each batch.

        output : "semantic" (class per pixel), "instances" (one label per object of at least
            ``min_size`` pixels: seeded watershed for instance models, connected components of
            the foreground otherwise) or "probabilities" (also keeps them).
        threshold : foreground probability threshold; seed_threshold : interior probability
            that seeds an object (instance models).
        test_time_augmentation : average over the 8 flips and rotations of the image plane
            (8 times slower; a little more accurate and orientation-independent).
        """
        return run_to_end(self.iter_predict(image, **options), progress)


def run_to_end(
    steps: Generator[Any, None, _R], progress: Callable[[Any], None] | None = None
) -> _R:
    """Drive a prediction generator (:meth:`Segmenter.iter_predict`, :func:`iter_predict_stack`)
    to its end, showing each step to ``progress``; returns its result."""
    while True:
        try:
            step = next(steps)
        except StopIteration as done:
            return done.value
        if progress is not None:
            progress(step)


@dataclass(frozen=True)
class StackProgress:
    """Progress over the blocks of a stack: block ``block`` of ``blocks``, and its tiles."""

    block: int
    blocks: int
    tile: TileProgress

    @property
    def fraction(self) -> float:
        within = self.tile.done / self.tile.total if self.tile.total else 0.0
        return (self.block + within) / self.blocks if self.blocks else 1.0


def leading_shape(
    shape: tuple[int, ...], spatial_dims: int, channel_axis: int | None
) -> tuple[int, ...]:
    """The axes of an image beyond its channel and spatial axes (stack, time), which are
    segmented one block at a time; spatial axes are the last ones (after removing channels)."""
    axes = list(shape)
    if channel_axis is not None:
        if not -len(shape) <= channel_axis < len(shape):
            raise UserInputError(
                f"channel axis {channel_axis} is out of range for an image of shape {shape}"
            )
        del axes[channel_axis]
    if len(axes) < spatial_dims:
        raise UserInputError(
            f"the model is {spatial_dims}D but the image has only {len(axes)} non-channel axes {tuple(axes)}"
        )
    return tuple(axes[: len(axes) - spatial_dims])


def stack_channel_axis(
    shape: tuple[int, ...], model: ModelFile | PackageModel, channel_axis: int | None = None
) -> int | None:
    """The channel axis to use when ``model`` segments an image of ``shape`` that may hold
    more axes than the model's spatial ones (a z-stack for a 2D model, time points, ...).

    An explicit ``channel_axis`` wins. Single-channel models (and models that turn colour into
    gray) see a colour last axis (3 or 4 entries) as channels and every other extra axis as a
    stack axis. Multi-channel models look for an axis with as many entries as they have
    input channels: the last, the first, then the second (ImageJ's Z, C, Y, X order)."""
    if channel_axis is not None:
        return channel_axis
    config = model.config
    if len(shape) <= config.spatial_dims:
        return None
    colour = shape[-1] in (3, 4)
    if config.in_channels == 1 or model.preprocessing.channel_mode == "gray":
        return -1 if colour else None
    wanted = {config.in_channels} | ({4} if config.in_channels == 3 else set())
    candidates = [-1, 0] + ([1] if len(shape) >= config.spatial_dims + 2 else [])
    for axis in candidates:
        if shape[axis] in wanted:
            return axis
    raise UserInputError(
        f"cannot tell which axis of the image of shape {tuple(shape)} holds the model's "
        f"{config.in_channels} input channels; give the channel axis explicitly"
    )


def iter_predict_stack(
    segmenter: Segmenter,
    image: np.ndarray,
    *,
    channel_axis: int | None = None,
    index: tuple[int, ...] | None = None,
    output: str = "semantic",
    **options,
) -> Generator[StackProgress, None, Prediction]:
    """Segment an image whose leading axes (a z-stack for a 2D model, time points, ...) are
    processed block by block; ``index`` restricts the work to one block (e.g. the slice shown).

    Returns labels of shape (*leading, *spatial) (zeros outside ``index``) and, for
    ``output="probabilities"``, probabilities of shape (*leading, K, *spatial). Object ids of
    instance output are unique across blocks.
    """
    check_image_array(image)
    dims = segmenter.model_file.config.spatial_dims
    lead = leading_shape(tuple(image.shape), dims, channel_axis)
    view = image if channel_axis is None else moveaxis(image, channel_axis, -1)
    block_channel_axis = None if channel_axis is None else -1
    spatial = tuple(view.shape[len(lead) : len(lead) + dims])
    if index is not None:
        if len(index) != len(lead) or any(not 0 <= i < n for i, n in zip(index, lead, strict=True)):
            raise UserInputError(f"index {index} does not fit the stack axes {lead}")
        blocks = [tuple(index)]
    else:
        blocks = list(np.ndindex(*lead)) if lead else [()]
    labels: np.ndarray | None = None
    prob: np.ndarray | None = None
    scale: ScaleChoice | None = None
    offset = 0
    device = segmenter.device_name
    for n, block in enumerate(blocks):
        gen = segmenter.iter_predict(
            view[block], channel_axis=block_channel_axis, output=output, **options
        )
        while True:
            try:
                tile = next(gen)
            except StopIteration as done:
                result: Prediction = done.value
                break
            yield StackProgress(n, len(blocks), tile)
        if scale is None and result.scale is not None:
            # The first slice's grid for all: one stack, one scale.
            scale = result.scale
            options = {**options, "object_size": ("factor", scale.factor)}
        if labels is None:
            labels = np.zeros(lead + spatial, result.labels.dtype)
        block_labels = result.labels
        if output == "instances" and block_labels.max() > 0:
            block_labels = np.where(block_labels > 0, block_labels + offset, 0).astype(
                block_labels.dtype
            )
            offset = int(block_labels.max())
        labels[block] = block_labels
        if result.probabilities is not None:
            if prob is None:
                prob = np.zeros(lead + result.probabilities.shape, np.float32)
            prob[block] = result.probabilities
        device = result.device
    assert labels is not None  # there is at least one block
    return Prediction(labels, prob, device, scale)


def _check_request(
    output: str,
    threshold: float,
    seed_threshold: float,
    min_size: int | None,
    batch_size: int,
    tile_size: int | tuple[int, ...] | None,
) -> None:
    """Refuse an unknown output or a number outside its range (core/limits.py)."""
    if output not in OUTPUTS:
        raise UserInputError(f"output must be one of {OUTPUTS}, got {output!r}")
    tiles = tile_size if isinstance(tile_size, tuple) else (tile_size,)
    for name, value in (
        ("threshold", threshold), ("seed_threshold", seed_threshold),
        *((("min_size", min_size),) if min_size is not None else ()),
        ("predict_batch_size", batch_size), *(("tile_size", t) for t in tiles),
    ):  # fmt: skip
        limits.check(name, value, name.removeprefix("predict_").replace("_", " "))


def default_min_size(scale: ObjectScale | None, dims: int) -> int:
    """The smallest object kept, on the model's grid: a tenth of the area (volume) of an
    object of the model's median diameter; 0 when the model does not know its object size."""
    if scale is None or scale.kind != "objects":
        return 0
    radius = scale.size / 2
    whole = math.pi * radius**2 if dims == 2 else 4 / 3 * math.pi * radius**3
    return max(1, round(MIN_SIZE_FRACTION * whole))


def _to_image_grid(
    labels: np.ndarray,
    prob: np.ndarray | None,
    shape: tuple[int, ...],
    output: str,
    threshold: float,
    keep: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Results on a rescaled grid mapped to the image's grid ``shape``: probabilities by
    linear interpolation (all classes only when they are kept or needed: a slide's worth of
    them is large), semantic labels from them, objects by nearest neighbour with outlines
    that follow the foreground."""
    if tuple(labels.shape) == tuple(shape):
        return labels, prob
    if prob is None:
        return to_original_grid(labels, shape, labels=True), None
    all_classes = keep or (output != "instances" and prob.shape[0] > 2)
    full, classes = labels_on_grid(
        prob, lambda a: to_original_grid(a, shape, labels=False, leading=1), threshold, all_classes
    )
    if output != "instances":
        return classes.astype(labels.dtype, copy=False), full
    return objects_to_original_grid(labels, classes > 0, shape), full


def _needs_probabilities(choice: ScaleChoice, output: str) -> bool:
    """Whether results on a rescaled grid need their probabilities to come back well:
    semantic labels always, objects from a coarser grid for their outlines."""
    if choice.native:
        return False
    return output != "instances" or min(choice.factors) < 1
