"""What the Train panel's worker thread runs: build the Trainer from layer rows (planning the
network for a time budget when asked), then train, yielding progress and live previews."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ...core import (
    ImageSource,
    ModelFile,
    Preprocessing,
    TrainConfig,
    Trainer,
    TrainProgress,
    UNetConfig,
    predict_tiled,
)
from ...core.data.normalize import model_channels
from ...core.predict.tiling import probabilities_to_labels
from ...core.train.planner import plan_for_budget
from .pairs import build_pairs


@dataclasses.dataclass
class Preview:
    """A live prediction of the preview image, made between two training steps."""

    labels: np.ndarray
    step: int


def trainer_factory(
    rows: list[tuple[Any, ...]],
    config: TrainConfig,
    base: ModelFile | None,
    *,
    preprocessing: Preprocessing,
    network: dict[str, Any],
    task: dict[str, Any],
    planning: bool,
) -> Callable[[], Trainer]:
    """A function (run in the worker: preparing pairs and planning take seconds) that builds
    the Trainer: fine-tuning ``base``, or a new model of ``network``'s settings
    (:meth:`~napari_unet._napari.train.model_form.NewModelForm.network_settings`)."""

    def make() -> Trainer:
        if base is not None:
            pairs = build_pairs(
                rows,
                base.config.spatial_dims,
                base.preprocessing,
                base.config.in_channels,
                max(2, base.config.out_channels),
                base.task,
            )
            return Trainer(pairs, base, config)
        pairs = build_pairs(
            rows, network["spatial_dims"], preprocessing, None, network["out_channels"], task
        )
        channels = model_channels(pairs[0].image.shape[0], preprocessing)
        net = UNetConfig(in_channels=channels, **network)
        plan = None
        train_config = config
        if planning:
            net, train_config, plan = plan_for_budget(pairs, net, config, task=task)
        return Trainer(
            pairs,
            net,
            train_config,
            preprocessing=preprocessing,
            task=task,
            plan=plan.to_dict() if plan else None,
        )

    return make


def train_job(
    trainer: Trainer | None,
    make_trainer: Callable[[], Trainer] | None,
    preview_image: np.ndarray | None,
    preview_every: int,
) -> Iterator[Trainer | TrainProgress | Preview]:
    """Worker body: build the trainer (first run), then train, yielding progress and previews."""
    if trainer is None:
        assert make_trainer is not None
        trainer = make_trainer()
    yield trainer
    try:
        for progress in trainer.train():
            yield progress
            if preview_image is not None and preview_every and progress.step % preview_every == 0:
                yield Preview(predict_labels(trainer, preview_image), progress.step)
    finally:
        trainer.release()


def predict_labels(trainer: Trainer, image: np.ndarray) -> np.ndarray:
    """The labels the trainer's current weights predict for ``image``."""
    config = trainer.net_config
    source = ImageSource(image, config.spatial_dims, trainer.preprocessing, config.in_channels)
    prob = np.zeros((config.out_channels, *source.shape), np.float32)
    for _ in predict_tiled(
        trainer.model, source, prob, device=trainer.device, halo=2 * config.size_multiple
    ):
        pass
    return probabilities_to_labels(prob)
