"""Apply a trained model to an image: probabilities, class labels, or object labels."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np
import torch

from .checkpoint import ModelFile, load_model
from .devices import describe_device, resolve_device
from .errors import UserInputError
from .normalize import ImageSource
from .tiling import TileProgress, predict_tiled, probabilities_to_labels

OUTPUTS = ("semantic", "instances", "probabilities")


@dataclass
class Prediction:
    """Result of :meth:`Segmenter.predict`: labels (*spatial) and optionally probabilities."""

    labels: np.ndarray
    probabilities: np.ndarray | None
    device: str


def instances_from_foreground(foreground: np.ndarray, min_size: int = 0) -> np.ndarray:
    """One label per connected foreground component of at least ``min_size`` pixels,
    numbered 1..N (touching objects stay merged)."""
    from skimage.measure import label

    labels = label(foreground.astype(bool)).astype(np.uint32)
    if min_size > 1 and labels.max() > 0:
        sizes = np.bincount(labels.ravel())
        keep = sizes >= min_size
        keep[0] = False
        remap = np.zeros(sizes.size, np.uint32)
        remap[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
        labels = remap[labels]
    return labels


class Segmenter:
    """A model ready to predict on a device; reuse it for many images.

    Parameters
    ----------
    model : a :class:`ModelFile`, a path, or a bundled model's name.
    device : "auto", "cpu", "cuda", "cuda:1" or "mps".
    precision : "auto", "float32", "bfloat16" or "float16".
    """

    def __init__(self, model: ModelFile | str, device: str = "auto", precision: str = "auto"):
        self.model_file = model if isinstance(model, ModelFile) else load_model(model)
        self.device = resolve_device(device)
        self.precision = precision
        self.net = self.model_file.build(self.device)

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
        halo: int | str = "exact",
        batch_size: int = 4,
        min_size: int = 0,
    ) -> Generator[TileProgress, None, Prediction]:
        """Like :meth:`predict`, but a generator yielding tile progress; returns the result."""
        if output not in OUTPUTS:
            raise UserInputError(f"output must be one of {OUTPUTS}, got {output!r}")
        config = self.model_file.config
        source = ImageSource(
            image,
            config.spatial_dims,
            self.model_file.preprocessing,
            config.in_channels,
            channel_axis,
        )
        prob = None
        if output == "probabilities" or keep_probabilities:
            prob = np.zeros((config.out_channels, *source.shape), np.float32)
            yield from predict_tiled(
                self.net,
                source,
                prob,
                tile_size=tile_size,
                halo=halo,
                batch_size=batch_size,
                device=self.device,
                precision=self.precision,
            )
            labels = probabilities_to_labels(prob, threshold)
        else:
            # Labels straight from each tile: no full-size probability array in memory.
            labels = np.zeros(source.shape, np.uint8 if config.out_channels <= 256 else np.uint16)
            yield from predict_tiled(
                self.net,
                source,
                labels,
                tile_size=tile_size,
                halo=halo,
                batch_size=batch_size,
                device=self.device,
                precision=self.precision,
                output="labels",
                threshold=threshold,
            )
        if output == "instances":
            labels = instances_from_foreground(labels > 0, min_size)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return Prediction(labels, prob, self.device_name)

    def predict(
        self,
        image: np.ndarray,
        *,
        progress: Callable[[TileProgress], None] | None = None,
        **options,
    ) -> Prediction:
        """Segment ``image`` (see :meth:`iter_predict` for options); ``progress`` sees each batch.

        output : "semantic" (class per pixel), "instances" (connected components of the
            foreground, at least ``min_size`` pixels) or "probabilities" (also keeps them).
        """
        gen = self.iter_predict(image, **options)
        while True:
            try:
                step = next(gen)
            except StopIteration as done:
                return done.value
            if progress is not None:
                progress(step)
