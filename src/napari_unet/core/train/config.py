"""Training settings (:class:`TrainConfig`, saved in each model file's history), what every
step reports (:class:`TrainProgress`) and the learning-rate schedule."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from .. import limits
from ..errors import UserInputError
from .losses import LOSSES

LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; saved in the model file's history.

    Attributes
    ----------
    epochs : number of epochs (an epoch is ``steps_per_epoch`` optimisation steps).
    max_minutes : stop after this much training time even if epochs remain (None: no limit).
    steps_per_epoch : steps between validations; None picks one from the amount of data
        (between 10 and 200).
    batch_size : patches per step (None: :func:`~napari_unet.core.train.defaults.training_defaults`).
    patch_size : patch edge in pixels (None: the defaults: 128 in 2D on a CPU, 256 on a GPU,
        64 in 3D); rounded to ``2**depth``.
    learning_rate, weight_decay : AdamW settings.
    lr_schedule : "constant", or "cosine": the rate decays along a half cosine to 1% of
        ``learning_rate`` by the end of the run (by the epochs, or by ``max_minutes`` when that
        comes first; a resumed time-limited run starts a new decay over its own budget).
    loss : "ce", "dice" or "ce+dice".
    val_fraction : share of the data held out for validation when no validation set is given.
    augment, elastic : random flips/rotations/intensity changes; elastic deformation.
    zoom : with augmentation, rescale each patch by a random factor between ``1 / zoom`` and
        ``zoom`` (1: never), so objects of other sizes than the labelled ones are learnt too.
    low_resolution : with augmentation, show half the patches as a camera with pixels up to
        this many times larger would (shrunk with anti-aliasing, enlarged back; 1: never):
        what prediction gives a model when it enlarges a low-magnification image.
    foreground_fraction : share of patches centred on foreground.
    seed : makes sampling, augmentation and initialisation repeatable.
    device, precision : see :mod:`napari_unet.core.network.devices`.
    """

    epochs: int = 50
    max_minutes: float | None = None
    steps_per_epoch: int | None = None
    batch_size: int | None = None
    patch_size: int | None = None
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    lr_schedule: str = "constant"
    loss: str = "ce+dice"
    val_fraction: float = 0.2
    augment: bool = True
    elastic: bool = False
    zoom: float = 1.0
    low_resolution: float = 1.0
    foreground_fraction: float = 0.5
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        # Every number in its range (core/limits.py, shared with the CLI and the widget).
        for name in (
            "epochs", "max_minutes", "steps_per_epoch", "batch_size", "patch_size",
            "learning_rate", "weight_decay", "val_fraction", "zoom", "low_resolution",
            "foreground_fraction", "seed",
        ):  # fmt: skip
            limits.check(name, getattr(self, name))
        if self.lr_schedule not in LR_SCHEDULES:
            raise UserInputError(
                f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}"
            )
        if self.loss not in LOSSES:
            raise UserInputError(f"loss must be one of {LOSSES}, got {self.loss!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class TrainProgress:
    """What a training step reports. Validation fields are set at the end of an epoch."""

    step: int
    epoch: int  # 1-based epoch the step belongs to
    epochs: int
    steps_per_epoch: int
    train_loss: float  # mean loss over the epoch so far
    seconds: float  # training time so far, resumed runs included
    epoch_end: bool = False
    val_loss: float | None = None
    val_score: float | None = None  # Trainer.score_name: Dice, or object F1@0.5 for instances
    best_score: float | None = None
    improved: bool = False
    data_seconds: float = 0.0  # this run's time preparing batches (sampling, augmentation)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def learning_rate(config: TrainConfig, done: float) -> float:
    """The rate of ``config``'s schedule after the fraction ``done`` (0 to 1) of a run."""
    rate = config.learning_rate
    if config.lr_schedule == "cosine":
        rate *= 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, done)))
    return rate
