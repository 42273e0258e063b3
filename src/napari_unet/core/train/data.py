"""Training data: label conversion, validation splits, patch sampling and augmentation.

Targets are int16 class maps where ``IGNORE`` (-1) marks pixels nobody annotated; the losses
and metrics skip them, which is what lets a few scribbled strokes train a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..data.image_kind import image_kind
from ..data.normalize import ImageSource, Preprocessing, channels_first, model_channels
from ..errors import UserInputError
from ..network.unet import UNetConfig
from .losses import IGNORE
from .targets import check_labels, labels_to_targets

PadMode = Literal["reflect", "symmetric"]


@dataclass
class TrainingPair:
    """A normalised image (C, *spatial) float32 and its int16 targets (*spatial); for
    instance models also the object labels, which validation matches against.
    ``corrections``: the targets accept a model's prediction (strokes on a prediction), so
    they are never held out for validation: they would grade that model on its own output."""

    image: np.ndarray
    targets: np.ndarray
    name: str = ""
    instances: np.ndarray | None = None
    corrections: bool = False
    kind: str | None = None  # what kind of picture the raw image was (data/image_kind.py)
    pixel_size: tuple[float, ...] | None = None  # micrometres per spatial axis, when known

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.targets.shape)


def prepare_pair(
    image: np.ndarray,
    labels: np.ndarray,
    *,
    spatial_dims: int,
    preprocessing: Preprocessing,
    in_channels: int | None = None,
    num_classes: int = 2,
    label_mode: str = "dense",
    ignore_value: int | None = None,
    channel_axis: int | None = None,
    name: str = "",
    task: dict | None = None,
    prediction: np.ndarray | None = None,
    pixel_size: tuple[float, ...] | None = None,
) -> TrainingPair:
    """Check and convert one (image, labels) pair for training, with clear errors.

    For an instance ``task`` ({"kind": "instances", "boundary_width": w}) dense labels must
    be instance labels (one value per object); scribbled objects train the interior class.
    ``label_mode="corrections"``: ``labels`` are strokes (as scribbles) correcting
    ``prediction``, whose uncorrected rest counts as labelled (see :mod:`.corrections`).
    ``pixel_size``: the image's in micrometres, when its file or layer says (the model
    records it when all its training images share one).
    """
    view = channels_first(image, spatial_dims, channel_axis)
    if in_channels is None:
        in_channels = model_channels(view.shape[0], preprocessing)
    what = f" ({name})" if name else ""
    if tuple(view.shape[1:]) != tuple(np.shape(labels)):
        raise UserInputError(
            f"image{what} has spatial shape {tuple(view.shape[1:])} but its labels have shape "
            f"{tuple(np.shape(labels))}; they must match pixel for pixel"
        )
    source = ImageSource(view, spatial_dims, preprocessing, in_channels, channel_axis=0)
    prepared = source.read(tuple(slice(None) for _ in source.shape))
    kind = image_kind(view if view.shape[0] > 1 else view[0], 0 if view.shape[0] > 1 else None)
    if label_mode == "corrections":
        if prediction is None:
            raise UserInputError(
                f"labels{what} are corrections, but no prediction was given for them to correct"
            )
        from .corrections import correction_targets

        targets = correction_targets(
            prediction, labels, task=task, num_classes=num_classes, name=f"labels{what}"
        )
        return TrainingPair(
            np.ascontiguousarray(prepared),
            targets,
            name,
            corrections=True,
            kind=kind,
            pixel_size=pixel_size,
        )
    if task and task.get("kind") == "instances":
        targets, instances = _instance_pair_targets(
            labels, label_mode, ignore_value, task, f"labels{what}"
        )
        return TrainingPair(
            np.ascontiguousarray(prepared),
            targets,
            name,
            instances,
            kind=kind,
            pixel_size=pixel_size,
        )
    targets = labels_to_targets(labels, num_classes, label_mode, ignore_value, name=f"labels{what}")
    return TrainingPair(
        np.ascontiguousarray(prepared), targets, name, kind=kind, pixel_size=pixel_size
    )


def _instance_pair_targets(
    labels: np.ndarray, mode: str, ignore_value: int | None, task: dict, name: str
) -> tuple[np.ndarray, np.ndarray | None]:
    from ..predict.instances import INTERIOR, instance_targets

    labels = check_labels(labels, name)
    if mode == "scribbles":
        values = labels.astype(np.int64)
        targets = np.where(values >= 2, INTERIOR, 0).astype(np.int16)
        targets[values == 0] = IGNORE
        return targets, None
    objects = np.asarray(labels)
    unannotated = None
    if ignore_value is not None:
        unannotated = objects == ignore_value
        objects = np.where(unannotated, 0, objects)
    targets = instance_targets(objects, int(task.get("boundary_width", 2)))
    if unannotated is not None:
        targets[unannotated] = IGNORE
    return targets, objects


FEW_IMAGES = 4
VALIDATION_PART = " (validation part)"  # ends the name of a held-out slab


def split_for_validation(
    pairs: list[TrainingPair], fraction: float, seed: int = 0
) -> tuple[list[TrainingPair], list[TrainingPair]]:
    """Hold out ``fraction`` of the data for validation.

    With :data:`FEW_IMAGES` images or more, whole images are held out (at least one, never
    all). With fewer, no image is lost to training: a slab at the end of each image's longest
    axis is held out; its labels are hidden from training, but the pixels remain as context.
    An image whose annotations all lie in its slab keeps them for training. Pairs of
    strokes on a prediction (``corrections``) always train and are never held out.
    """
    if fraction <= 0 or not pairs:
        return list(pairs), []
    if not 0 < fraction < 1:
        raise UserInputError(f"validation fraction must be between 0 and 1, got {fraction}")
    corrections = [p for p in pairs if p.corrections]
    pairs = [p for p in pairs if not p.corrections]
    if not pairs:
        return corrections, []
    train, val = _split(pairs, fraction, seed)
    return corrections + train, val


def _split(
    pairs: list[TrainingPair], fraction: float, seed: int
) -> tuple[list[TrainingPair], list[TrainingPair]]:
    if len(pairs) >= FEW_IMAGES:
        rng = np.random.default_rng(seed)
        n_val = min(len(pairs) - 1, max(1, round(fraction * len(pairs))))
        val_idx = set(rng.choice(len(pairs), n_val, replace=False).tolist())
        return [p for i, p in enumerate(pairs) if i not in val_idx], [
            p for i, p in enumerate(pairs) if i in val_idx
        ]
    train, val = [], []
    for pair in pairs:
        kept, slab = _hold_out_slab(pair, fraction)
        train.append(kept)
        if slab is not None:
            val.append(slab)
    if not val:
        raise UserInputError(
            "all annotations lie in the validation part; annotate more or set validation to 0"
        )
    return train, val


def _hold_out_slab(pair: TrainingPair, fraction: float) -> tuple[TrainingPair, TrainingPair | None]:
    """The pair with the labels of its last ``fraction`` (along the longest axis) hidden, and
    that slab as a validation pair; (pair, None) when nothing would be left to train on."""
    axis = int(np.argmax(pair.spatial_shape))
    length = pair.spatial_shape[axis]
    cut = length - max(1, round(fraction * length))
    val_index = [slice(None)] * len(pair.spatial_shape)
    val_index[axis] = slice(cut, None)
    train_targets = pair.targets.copy()
    train_targets[tuple(val_index)] = IGNORE
    if not (train_targets != IGNORE).any():
        return pair, None
    val = TrainingPair(
        pair.image[(slice(None), *val_index)].copy(),
        pair.targets[tuple(val_index)].copy(),
        pair.name + VALIDATION_PART,
        None if pair.instances is None else pair.instances[tuple(val_index)].copy(),
        pixel_size=pair.pixel_size,
    )
    train = TrainingPair(
        pair.image, train_targets, pair.name, pair.instances, pixel_size=pair.pixel_size
    )
    return train, val


@dataclass(frozen=True)
class Augmentation:
    """Random transformations applied to each training patch."""

    flips: bool = True
    rotations: bool = True
    intensity: bool = True
    elastic: bool = False
    # Largest zoom factor: each patch is rescaled by a factor drawn log-uniformly from
    # [1/zoom, zoom] (1 = none), so a few images teach objects of other sizes too.
    zoom: float = 1.0
    # Largest pixel-size factor of the low-resolution look (1 = none): see TrainConfig.
    low_resolution: float = 1.0


def augment(
    image: np.ndarray, targets: np.ndarray, aug: Augmentation, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Flip, rotate by multiples of 90 degrees, rescale intensities and (optionally) warp."""
    dims = targets.ndim
    if aug.flips:
        for axis in range(dims):
            if rng.random() < 0.5:
                image = np.flip(image, axis + 1)
                targets = np.flip(targets, axis)
    if aug.rotations and targets.shape[-1] == targets.shape[-2]:
        k = int(rng.integers(4))
        image = np.rot90(image, k, axes=(-2, -1))
        targets = np.rot90(targets, k, axes=(-2, -1))
    if aug.elastic:
        image, targets = _elastic(image, targets, rng)
    image = np.ascontiguousarray(image, dtype=np.float32)
    if aug.low_resolution > 1 and rng.random() < 0.5:
        image = at_lower_resolution(
            image, float(np.exp(rng.uniform(0, np.log(aug.low_resolution))))
        )
    if aug.intensity:
        scale = np.exp(rng.uniform(-0.2, 0.2, size=(image.shape[0],) + (1,) * dims)).astype(
            np.float32
        )
        shift = rng.uniform(-0.1, 0.1, size=(image.shape[0],) + (1,) * dims).astype(np.float32)
        image = image * scale + shift
    return image, np.ascontiguousarray(targets)


def at_lower_resolution(image: np.ndarray, coarser: float) -> np.ndarray:
    """``image`` (C, *spatial) as pixels ``coarser`` times larger show it, on its own grid:
    shrunk with anti-aliasing and enlarged back, as auto prediction enlarges such images."""
    from ..data.rescale import rescale_image

    spatial = image.shape[1:]
    small = rescale_image(image, 1 / coarser)
    back = tuple(n / m for n, m in zip(spatial, small.shape[1:], strict=True))
    return rescale_image(small, back)


def _elastic(
    image: np.ndarray, targets: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random deformation (Simard et al. 2003): linear for the image, nearest for labels."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    shape = targets.shape
    sigma = max(shape) / 16
    alpha = max(shape) / 16  # displacement of up to about alpha pixels
    coords = list(np.meshgrid(*(np.arange(s, dtype=np.float32) for s in shape), indexing="ij"))
    for axis in range(len(shape)):
        field = gaussian_filter(rng.uniform(-1, 1, shape).astype(np.float32), sigma)
        field *= alpha / (np.abs(field).max() + 1e-6)
        coords[axis] = coords[axis] + field
    warped = np.stack([map_coordinates(ch, coords, order=1, mode="reflect") for ch in image])
    warped_t = map_coordinates(targets, coords, order=0, mode="reflect").astype(targets.dtype)
    return warped, warped_t


def _resize_patch(
    image: np.ndarray, targets: np.ndarray, size: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (C, *region) and ``targets`` (*region) resampled to ``size``: linear for the
    image, nearest for the targets (classes and "unannotated" must not blend)."""
    from scipy.ndimage import affine_transform

    # Pixel centres of the output mapped onto the region's: x_in = scale * x_out + offset.
    scale = [r / n for n, r in zip(size, targets.shape, strict=True)]
    offset = [0.5 * f - 0.5 for f in scale]
    # A diagonal transform is about twice as fast as map_coordinates with a coordinate grid.
    resized = np.stack(
        [
            affine_transform(
                ch.astype(np.float32, copy=False),
                scale,
                offset=offset,
                output_shape=size,
                order=1,
                mode="nearest",
            )
            for ch in image
        ]
    )
    nearest = np.ix_(
        *(
            np.clip(np.rint(np.arange(n) * f + o), 0, r - 1).astype(np.intp)
            for n, f, o, r in zip(size, scale, offset, targets.shape, strict=True)
        )
    )
    return resized, targets[nearest]


def _mirror(pair: TrainingPair, margin: int) -> TrainingPair:
    """``pair`` mirrored by ``margin`` on every side: context for a "valid" network's tiles at
    the image border; the mirrored pixels carry no labels."""
    shape = pair.spatial_shape
    pads = [(margin, margin)] * len(shape)
    mode: PadMode = "reflect" if all(margin < s for s in shape) else "symmetric"
    image = np.pad(pair.image, [(0, 0), *pads], mode=mode)
    targets = np.pad(pair.targets, pads, constant_values=IGNORE)
    return TrainingPair(image, targets, pair.name)


class PatchSampler:
    """Draws training batches of patches, biased toward annotated and foreground pixels.

    Half of the patches (``foreground_fraction``) are centred on a random foreground pixel; the
    rest on a random annotated pixel (so sparse scribbles are always in view). Images smaller
    than a patch are padded (reflected image, unannotated targets). ``margin`` mirrors every
    image by that much first (context for a "valid" network's tiles). With zoom augmentation
    a patch is cut from a larger or smaller region and resampled to the patch size.
    """

    def __init__(
        self,
        pairs: list[TrainingPair],
        patch_size: tuple[int, ...],
        augmentation: Augmentation | None = None,
        foreground_fraction: float = 0.5,
        max_candidates: int = 200_000,
        margin: int = 0,
    ):
        if not pairs:
            raise UserInputError("no training images were given")
        self.patch_size = tuple(patch_size)
        self.augmentation = augmentation
        self.foreground_fraction = foreground_fraction
        self.margin = margin
        self.pairs: list[TrainingPair] = []
        self._labelled: list[np.ndarray] = []
        self._foreground: list[np.ndarray] = []
        rng = np.random.default_rng(0)
        for pair in pairs:
            if margin:
                pair = _mirror(pair, margin)
            pair = self._pad(pair)
            labelled = np.flatnonzero(pair.targets != IGNORE)
            if labelled.size == 0:
                continue
            foreground = np.flatnonzero(pair.targets > 0)
            # Keep memory bounded on big images: a random subset of candidate centres is plenty.
            if labelled.size > max_candidates:
                labelled = rng.choice(labelled, max_candidates, replace=False)
            if foreground.size > max_candidates:
                foreground = rng.choice(foreground, max_candidates, replace=False)
            self.pairs.append(pair)
            self._labelled.append(labelled)
            self._foreground.append(foreground)
        if not self.pairs:
            raise UserInputError(
                "the labels contain no annotated pixels; paint at least a few strokes of background and foreground"
            )

    def _pad(self, pair: TrainingPair) -> TrainingPair:
        shape = pair.spatial_shape
        pads = [(0, max(0, p - s)) for p, s in zip(self.patch_size, shape, strict=True)]
        if not any(after for _, after in pads):
            return pair
        mode: PadMode = (
            "reflect"
            if all(after < s for (_, after), s in zip(pads, shape, strict=True))
            else "symmetric"
        )
        image = np.pad(pair.image, [(0, 0), *pads], mode=mode)
        targets = np.pad(pair.targets, pads, constant_values=IGNORE)
        return TrainingPair(image, targets, pair.name)

    def _crop_size(self, shape: tuple[int, ...], rng: np.random.Generator) -> tuple[int, ...]:
        """The region a patch is cut from: the patch itself, or with zoom augmentation a
        region ``1 / factor`` times its size (at most the image), later resized to the patch."""
        zoom = self.augmentation.zoom if self.augmentation is not None else 1.0
        if zoom <= 1.0:
            return self.patch_size
        factor = float(np.exp(rng.uniform(-np.log(zoom), np.log(zoom))))
        return tuple(
            min(s, max(2, round(p / factor))) for p, s in zip(self.patch_size, shape, strict=True)
        )

    def sample(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A batch: images (B, C, *patch) float32 and targets (B, *patch) int64."""
        images, targets = [], []
        for _ in range(batch_size):
            i = int(rng.integers(len(self.pairs)))
            pair = self.pairs[i]
            fg = self._foreground[i]
            pool = fg if fg.size and rng.random() < self.foreground_fraction else self._labelled[i]
            centre = np.unravel_index(int(pool[rng.integers(pool.size)]), pair.spatial_shape)
            crop = self._crop_size(pair.spatial_shape, rng)
            start = []
            for c, p, s, out in zip(centre, crop, pair.spatial_shape, self.patch_size, strict=True):
                # Jitter so the chosen pixel is anywhere in the patch (in the part that is
                # learnt from, inside the margin), not always the centre.
                margin = self.margin * p // out
                lo = int(c) - margin - int(rng.integers(max(1, p - 2 * margin)))
                start.append(min(max(lo, 0), s - p))
            index = tuple(slice(b, b + p) for b, p in zip(start, crop, strict=True))
            img, tgt = pair.image[(slice(None), *index)], pair.targets[index]
            if crop != self.patch_size:
                img, tgt = _resize_patch(img, tgt, self.patch_size)
            if self.augmentation is not None:
                img, tgt = augment(img, tgt, self.augmentation, rng)
            images.append(img)
            targets.append(tgt)
        return np.stack(images).astype(np.float32, copy=False), np.stack(targets).astype(np.int64)


def check_pairs(pairs: list[TrainingPair], net_config: UNetConfig) -> None:
    """Refuse pairs the network cannot take: other dimensions or channels, or classes beyond
    its outputs."""
    dims, channels = net_config.spatial_dims, net_config.in_channels
    for pair in pairs:
        if pair.targets.ndim != dims or pair.image.ndim != dims + 1:
            raise UserInputError(
                f"image {pair.name!r} is {pair.targets.ndim}D but the model is {dims}D"
            )
        if pair.image.shape[0] != channels:
            raise UserInputError(
                f"image {pair.name!r} has {pair.image.shape[0]} channel(s) but the model "
                f"takes {channels}"
            )
        top = int(pair.targets.max()) if pair.targets.size else 0
        if top >= max(2, net_config.out_channels):
            raise UserInputError(
                f"labels of {pair.name!r} contain class {top}, beyond the model's classes"
            )


def check_classes_present(pairs: list[TrainingPair], class_names: list[str]) -> None:
    """From scratch, the labels must show at least two classes: a model that only ever
    sees background cannot learn what an object is. (Fine-tuning may: an image corrected
    to "no objects here" teaches a trained model its false positives.)"""
    present: set[int] = set()
    for pair in pairs:
        targets = pair.targets[pair.targets != IGNORE]
        present |= {int(c) for c in np.flatnonzero(np.bincount(targets.ravel()))}
        if len(present) > 1:
            return
    only = class_names[next(iter(present))] if present else "none"
    raise UserInputError(
        f"the training labels hold only one class ({only}) in every image: a new model "
        "cannot learn from that. Label some pixels of the other class (objects and "
        "background), or fine-tune an existing model instead"
    )
