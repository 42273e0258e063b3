"""Training as a generator: each step yields a :class:`TrainProgress`; closing it stops cleanly.

    trainer = Trainer(pairs, model=UNetConfig(...), config=TrainConfig(epochs=20))
    for progress in trainer.train():
        print(progress.step, progress.train_loss)
        if user_pressed_stop:
            break                      # the generator is closed between two steps
    save_model(trainer.model_file(), "model.pt")   # best weights + state to resume

The GUI runs the same generator in a napari worker, the CLI behind a terminal progress bar.
"""

from __future__ import annotations

import copy
import datetime as _dt
import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import limits
from ..data.normalize import PreparedSource, Preprocessing
from ..errors import TrainingDiverged, UserInputError
from ..metrics import MetricAccumulator, mean_foreground_dice
from ..models.model_file import ModelFile, default_class_names, non_finite_entries
from ..network.devices import autocast, describe_device, memory_format, resolve_device
from ..network.unet import UNet, UNetConfig
from ..predict.instances import INSTANCE_CLASSES, InstanceAccumulator, instances_from_probabilities
from ..predict.tiling import predict_tiled, probabilities_to_labels
from .data import (
    FEW_IMAGES,
    VALIDATION_PART,
    Augmentation,
    PatchSampler,
    TrainingPair,
    split_for_validation,
)
from .ddp import SINGLE, World
from .defaults import training_defaults
from .losses import IGNORE, LOSSES, cross_entropy, log_probabilities, segmentation_loss, soft_dice

LR_SCHEDULES = ("constant", "cosine")
KEPT_START = "no epoch beat the starting model on the validation data, so its weights are kept"


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
    foreground_fraction: float = 0.5
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        # Every number in its range (core/limits.py, shared with the CLI and the widget).
        for name in (
            "epochs", "max_minutes", "steps_per_epoch", "batch_size", "patch_size",
            "learning_rate", "weight_decay", "val_fraction", "zoom", "foreground_fraction",
            "seed",
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


def _state_copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


@dataclass
class _State:
    step: int = 0
    seconds: float = 0.0
    best_score: float | None = None
    best_val_loss: float | None = None  # breaks ties between equal scores
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """Trains a U-Net on (image, targets) pairs; see the module docstring for use.

    Parameters
    ----------
    pairs : training data, from :func:`~napari_unet.core.train.data.prepare_pair`.
    model : a :class:`UNetConfig` to start from scratch, or a :class:`ModelFile` to fine-tune
        (its best weights) or, with ``resume=True``, to continue its interrupted training.
    config : training settings (when resuming, None reuses the saved ones).
    preprocessing : how the pairs were prepared (taken from ``model`` when it is a file).
    val_pairs : validation data; None holds out ``config.val_fraction`` of ``pairs``.
    class_names : names of the classes, background first.
    task : for a new model, {"kind": "semantic"} (default) or {"kind": "instances",
        "boundary_width": w} (needs 3 output channels); a model file brings its own.
    world : this process's place among torchrun's processes (:mod:`~napari_unet.core.train.ddp`);
        with more than one, each draws its own patches (``batch_size`` each), gradients are
        averaged by DistributedDataParallel, and only rank 0 validates.
    plan : how the settings were chosen (:meth:`~napari_unet.core.train.planner.TrainingPlan.to_dict`),
        stored with this run in the model file's history.
    """

    def __init__(
        self,
        pairs: list[TrainingPair],
        model: UNetConfig | ModelFile,
        config: TrainConfig | None = None,
        *,
        preprocessing: Preprocessing | None = None,
        val_pairs: list[TrainingPair] | None = None,
        class_names: list[str] | None = None,
        resume: bool = False,
        task: dict[str, Any] | None = None,
        world: World = SINGLE,
        plan: dict[str, Any] | None = None,
    ):
        self.state = _State()
        self.plan = plan
        self.world = world
        self._ddp: torch.nn.Module | None = None
        self.resumed = resume
        # A fine-tune (a model file, not resumed) scores its starting weights first, so that
        # it ends with weights at least as good on the validation data as those it began with.
        self.fine_tuning = isinstance(model, ModelFile) and not resume
        resume_state = None
        if isinstance(model, ModelFile):
            self.net_config = model.config
            self.preprocessing = model.preprocessing
            self.class_names = list(model.class_names)
            self.base_history = dict(model.history)
            self.description = model.description
            self.task = dict(model.task)
            if resume:
                if not model.training_state:
                    raise UserInputError("this model file holds no training state to resume from")
                resume_state = model.training_state
                config = config or TrainConfig.from_dict(resume_state["train_config"])
        else:
            if resume:
                raise UserInputError("resuming needs a model file, not a new architecture")
            self.net_config = model
            self.preprocessing = preprocessing or Preprocessing()
            self.task = dict(task or {"kind": "semantic"})
            if self.task["kind"] == "instances":
                if model.out_channels != 3:
                    raise UserInputError(
                        "an instance model needs 3 output channels (background, interior, boundary)"
                    )
                class_names = class_names or list(INSTANCE_CLASSES)
            self.class_names = class_names or default_class_names(model.out_channels)
            self.base_history = {}
            self.description = ""
        self.config = config or TrainConfig()
        dims = self.net_config.spatial_dims
        self._check_pairs(pairs + (val_pairs or []))
        if val_pairs is None:
            pairs, val_pairs = split_for_validation(
                pairs, self.config.val_fraction, self.config.seed
            )
        self.train_pairs, self.val_pairs = pairs, val_pairs

        self.device = resolve_device(self.config.device)
        torch.manual_seed(self.config.seed)
        self.model = UNet(self.net_config)
        if isinstance(model, ModelFile):
            self.model.load_state_dict(model.build().state_dict())
        self.layout = memory_format(self.device, dims)
        self.model.to(self.device, memory_format=self.layout)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=self.config.learning_rate,
            weight_decay=self.config.weight_decay,
        )
        self.best_weights = _state_copy(self.model)

        multiple = self.net_config.size_multiple
        defaults = training_defaults(dims, self.device)
        patch = self.config.patch_size or defaults.patch_size
        largest = max(max(p.spatial_shape) for p in pairs)
        # No point in patches larger than the largest image (rounded to what the net needs).
        patch = min(patch, -(-largest // multiple) * multiple)
        patch = max(multiple, -(-patch // multiple) * multiple)
        self.batch_size = self.config.batch_size or defaults.batch_size
        aug = (
            Augmentation(elastic=self.config.elastic, zoom=self.config.zoom)
            if self.config.augment
            else None
        )
        # A "valid" network learns on the centre of a larger tile (the paper's geometry): it
        # draws tiles of the valid input size around the patch, from images mirrored by the
        # margin so that the centres reach the image borders too.
        self.margin = self.net_config.valid_margin
        tile = self.net_config.valid_input_size(patch) if self.margin else patch
        self.patch_size = (tile - 2 * self.margin,) * dims
        self.sampler = PatchSampler(
            pairs, (tile,) * dims, aug, self.config.foreground_fraction, margin=self.margin
        )
        if self.config.steps_per_epoch:
            self.steps_per_epoch = self.config.steps_per_epoch
        else:
            pixels = sum(int(np.prod(p.spatial_shape)) for p in self.sampler.pairs)
            per_step = self.batch_size * patch**dims
            self.steps_per_epoch = int(min(200, max(10, math.ceil(2 * pixels / per_step))))

        if not isinstance(model, ModelFile):
            self._check_classes_present()
        if resume_state is not None:
            self._restore(resume_state, model)

    def load_encoder_weights(self, path: str | os.PathLike) -> list[str]:
        """Start a new MobileNetV2-encoder model from torchvision's ImageNet weights in a file
        on disk (:func:`~napari_unet.core.network.mobilenet.load_imagenet_weights`); before training.
        Returns the names of the tensors loaded."""
        if self.net_config.encoder != "mobilenet_v2":
            raise UserInputError("encoder weights need a model with the mobilenet_v2 encoder")
        if self.state.step:
            raise UserInputError("encoder weights are loaded before training, not during it")
        from ..network.mobilenet import load_imagenet_weights

        loaded = load_imagenet_weights(self.model.encoder, path)
        self.best_weights = _state_copy(self.model)
        self.base_history["encoder_weights"] = Path(path).name
        return loaded

    def _check_classes_present(self) -> None:
        """From scratch, the labels must show at least two classes: a model that only ever
        sees background cannot learn what an object is. (Fine-tuning may: an image corrected
        to "no objects here" teaches a trained model its false positives.)"""
        present: set[int] = set()
        for pair in self.train_pairs:
            targets = pair.targets[pair.targets != IGNORE]
            present |= {int(c) for c in np.flatnonzero(np.bincount(targets.ravel()))}
            if len(present) > 1:
                return
        only = self.class_names[next(iter(present))] if present else "none"
        raise UserInputError(
            f"the training labels hold only one class ({only}) in every image: a new model "
            "cannot learn from that. Label some pixels of the other class (objects and "
            "background), or fine-tune an existing model instead"
        )

    def _check_pairs(self, pairs: list[TrainingPair]) -> None:
        dims, channels = self.net_config.spatial_dims, self.net_config.in_channels
        for pair in pairs:
            if pair.targets.ndim != dims or pair.image.ndim != dims + 1:
                raise UserInputError(
                    f"image {pair.name!r} is {pair.targets.ndim}D but the model is {dims}D"
                )
            if pair.image.shape[0] != channels:
                raise UserInputError(
                    f"image {pair.name!r} has {pair.image.shape[0]} channel(s) but the model takes {channels}"
                )
            top = int(pair.targets.max()) if pair.targets.size else 0
            if top >= max(2, self.net_config.out_channels):
                raise UserInputError(
                    f"labels of {pair.name!r} contain class {top}, beyond the model's classes"
                )

    def _restore(self, state: dict[str, Any], model: ModelFile) -> None:
        self.model.load_state_dict(state["last_weights"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.best_weights = {
            k: v.float() if v.is_floating_point() else v for k, v in model.weights.items()
        }
        self.state = _State(
            step=int(state["step"]),
            seconds=float(state["seconds"]),
            best_score=state.get("best_score"),
            best_val_loss=state.get("best_val_loss"),
            history=list(state.get("history", [])),
        )

    @property
    def instance_task(self) -> bool:
        return self.task.get("kind") == "instances"

    @property
    def score_name(self) -> str:
        """What the validation score is: object F1 at IoU 0.5 for instance models whose
        validation data has object labels, else mean foreground Dice."""
        if (
            self.instance_task
            and self.val_pairs
            and all(p.instances is not None for p in self.val_pairs)
        ):
            return "F1@0.5"
        return "Dice"

    @property
    def total_steps(self) -> int:
        return self.config.epochs * self.steps_per_epoch

    @property
    def validation_summary(self) -> str:
        """What validation is done on, in words (the CLI and the widget say it at the start)."""
        if not self.val_pairs:
            if self.config.val_fraction > 0 and any(p.corrections for p in self.train_pairs):
                return (
                    "no validation data (strokes on a prediction are not held out: their "
                    "accepted rest would grade the model on its own prediction): the weights "
                    "with the lowest training loss are kept"
                )
            return "no validation data: the weights with the lowest training loss are kept"
        slabs = [p for p in self.val_pairs if p.name.endswith(VALIDATION_PART)]
        if slabs and len(self.train_pairs) < FEW_IMAGES:
            return (
                f"validating on the last {self.config.val_fraction:.0%} of {len(slabs)} of the "
                f"{len(self.train_pairs)} image(s) (under {FEW_IMAGES} images none is held out "
                "whole; those labels are hidden from training)"
            )
        return f"validating on {len(self.val_pairs)} image(s)"

    def release(self) -> None:
        """Move the network and optimiser state to the CPU and free GPU memory.

        Call it when training pauses or ends; :meth:`train` moves everything back.
        """
        self._move_to(torch.device("cpu"))
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _move_to(self, device: torch.device) -> None:
        self.model.to(device)
        for state in self.optimizer.state.values():
            for key, value in state.items():
                # Adam keeps its step counter on the CPU; only the moment tensors move.
                if isinstance(value, torch.Tensor) and key != "step":
                    state[key] = value.to(device)

    def train(self) -> Iterator[TrainProgress]:
        """Run training, yielding after every step; ``close()`` or ``break`` stops it cleanly."""
        cfg = self.config
        self._move_to(self.device)
        if self.world.distributed and self._ddp is None:
            from torch.nn.parallel import DistributedDataParallel

            # Wraps the same module: its weights are the ones validated, saved and resumed.
            index = [self.device.index] if self.device.type == "cuda" else None
            self._ddp = DistributedDataParallel(self.model, device_ids=index)
        state = self.state
        start_seconds = state.seconds
        started = time.perf_counter()
        epoch_losses: list[float] = []
        budget = cfg.max_minutes * 60 if cfg.max_minutes else math.inf
        data_seconds = 0.0

        def prepare(step: int) -> tuple[torch.Tensor, torch.Tensor]:
            nonlocal data_seconds
            started_batch = time.perf_counter()
            batch = self._sample(step)
            data_seconds += time.perf_counter() - started_batch
            return batch

        if self.fine_tuning and state.step == 0 and not state.history:
            self._score_start()
        batch = None
        elapsed = 0.0  # this run's training time, the same on every process
        while state.step < self.total_steps:
            if batch is None:
                batch = prepare(state.step)
            done = max(state.step / self.total_steps, elapsed / budget)
            self._set_learning_rate(done)
            loss_tensor = self._step(*batch)
            batch = None
            if state.step + 1 < self.total_steps:
                # Prepare the next batch while a GPU still works on this step (on the CPU,
                # which computes synchronously, this changes nothing).
                batch = prepare(state.step + 1)
            loss = float(loss_tensor)  # waits for the device
            loss, seconds = self._agree(loss, time.perf_counter() - started)
            out_of_time = seconds >= budget
            if not math.isfinite(loss):
                self._diverged(f"the loss became {loss} at step {state.step + 1}")
            state.step += 1
            epoch_losses.append(loss)
            state.seconds = start_seconds + time.perf_counter() - started
            epoch_end = (
                state.step % self.steps_per_epoch == 0
                or state.step == self.total_steps
                or out_of_time
            )
            progress = TrainProgress(
                step=state.step,
                epoch=(state.step - 1) // self.steps_per_epoch + 1,
                epochs=cfg.epochs,
                steps_per_epoch=self.steps_per_epoch,
                train_loss=float(np.mean(epoch_losses)),
                seconds=state.seconds,
                best_score=state.best_score,
                data_seconds=data_seconds,
            )
            if epoch_end:
                progress = self._end_epoch(progress)
                epoch_losses = []
                # Validation time is training time too: the budget includes it.
                state.seconds = start_seconds + time.perf_counter() - started
            elapsed = seconds if self.world.distributed else state.seconds - start_seconds
            yield progress
            if out_of_time:
                return

    def _score_start(self) -> None:
        """Validate the weights a fine-tune starts from; they stay the best until an epoch
        beats them (a user's retraining never hands back a model worse on the held-out
        labels than the one they started from)."""
        if not (self.val_pairs and self.world.is_main):
            return
        val_loss, val_score = self.validate()
        if math.isnan(val_score):
            return
        self.state.best_score, self.state.best_val_loss = val_score, val_loss
        self.state.history.append(
            {
                "epoch": 0,
                "step": 0,
                "train_loss": None,
                "val_loss": val_loss,
                "val_score": val_score,
                "seconds": 0.0,
                "improved": True,
            }
        )

    @property
    def start_score(self) -> float | None:
        """The validation score of the weights this fine-tune started from; None when they
        were not scored (a new model, a resumed run, no validation data)."""
        history = self.state.history
        if self.fine_tuning and history and history[0]["step"] == 0:
            return history[0]["val_score"]
        return None

    @property
    def kept_start(self) -> bool:
        """Whether no epoch of this fine-tune beat the weights it started from, which are the
        ones kept (:data:`KEPT_START` says so in words)."""
        return self.start_score is not None and not any(
            h.get("improved") for h in self.state.history[1:]
        )

    def _agree(self, loss: float, seconds: float) -> tuple[float, float]:
        """The step's loss averaged over the processes, and rank 0's clock. Each process's
        clock differs a little; all must use the same learning rate and stop at the same step
        (one that stopped alone would leave the others waiting for its gradients)."""
        if not self.world.distributed:
            return loss, seconds
        import torch.distributed as dist

        device = self.device if self.world.backend == "nccl" else torch.device("cpu")
        clock = seconds if self.world.is_main else 0.0
        shared = torch.tensor([loss / self.world.size, clock], dtype=torch.float64, device=device)
        dist.all_reduce(shared)
        return float(shared[0]), float(shared[1])

    def _set_learning_rate(self, done: float) -> None:
        """Apply the schedule for the fraction ``done`` (0 to 1) of this run."""
        rate = self.config.learning_rate
        if self.config.lr_schedule == "cosine":
            rate *= 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, done)))
        for group in self.optimizer.param_groups:
            group["lr"] = rate

    def _sample(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of ``step``."""
        # Seed per step, so a resumed run draws what an uninterrupted one would have; and per
        # rank, so that the processes of a distributed run see different patches.
        key = [self.config.seed, step] + ([self.world.rank] if self.world.distributed else [])
        rng = np.random.default_rng(key)
        x, y = (torch.from_numpy(a) for a in self.sampler.sample(self.batch_size, rng))
        if self.device.type == "cuda":
            # Page-locked memory lets the copy to the GPU overlap with computation.
            x, y = x.pin_memory(), y.pin_memory()
        return x, y

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimisation step; returns the loss without waiting for the device."""
        self.model.train()
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.layout)
        y = y.to(self.device, non_blocking=True)
        if self.margin:  # the targets of the centre a valid network predicts
            y = y[(slice(None), *(slice(self.margin, -self.margin),) * (y.ndim - 1))]
        with autocast(self.device, self.config.precision):
            logits = (self._ddp or self.model)(x)  # DDP averages the gradients in backward
        loss = segmentation_loss(log_probabilities(logits.float()), y, self.config.loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def _diverged(self, what: str) -> None:
        """Go back to the best finite weights with a fresh optimiser, then raise."""
        self.model.load_state_dict(self.best_weights)
        self.optimizer.state.clear()  # Adam's moments hold the NaNs too
        rate = self.config.learning_rate
        best = self._best_step()
        if best:
            kept = f"the best weights before it (step {best})"
        else:
            kept = "the weights it resumed from" if self.resumed else "the starting weights"
        raise TrainingDiverged(
            f"training diverged: {what}. Kept {kept}; train again with a lower learning rate "
            f"(now {rate:g}, try {rate / 10:g}), and check the images for extreme values"
        )

    def _best_step(self) -> int:
        improved = [h["step"] for h in self.state.history if h.get("improved")]
        return improved[-1] if improved else 0

    def _better(self, score: float, val_loss: float | None) -> bool:
        """Whether an epoch beats the best so far: a higher score, or the same score with a
        lower validation loss. Scores on few objects saturate (F1 1.0 on a handful of nuclei
        is reached early); without the tie-break the earliest such weights would be kept."""
        best = self.state.best_score
        if best is None:
            return True
        if math.isnan(score):
            return False
        if score != best:
            return score > best
        previous = self.state.best_val_loss
        return val_loss is not None and previous is not None and val_loss < previous

    def _end_epoch(self, progress: TrainProgress) -> TrainProgress:
        if non_finite_entries(self.model.state_dict()):  # weights and batch-norm statistics
            # The last step's update overflowed although its loss (computed before) was finite.
            self._diverged(f"the weights became NaN or infinite at step {progress.step}")
        if not self.world.is_main:
            # Rank 0 validates and keeps the best weights; the others go on to the next step
            # (whose gradient exchange waits for it).
            return TrainProgress(**{**asdict(progress), "epoch_end": True})
        val_loss, val_score = self.validate() if self.val_pairs else (None, None)
        # Without validation data the best model is the one with the lowest training loss.
        score = val_score if val_score is not None else -progress.train_loss
        improved = self._better(score, val_loss)
        if improved:
            self.state.best_score, self.state.best_val_loss = score, val_loss
            self.best_weights = _state_copy(self.model)
        self.state.history.append(
            {
                "epoch": progress.epoch,
                "step": progress.step,
                "train_loss": progress.train_loss,
                "val_loss": val_loss,
                "val_score": val_score,
                "seconds": round(self.state.seconds, 2),
                "improved": improved,
            }
        )
        return TrainProgress(
            **{
                **asdict(progress),
                "epoch_end": True,
                "val_loss": val_loss,
                "val_score": val_score,
                "best_score": self.state.best_score,
                "improved": improved,
            }
        )

    def validate(self) -> tuple[float, float]:
        """Loss and score (see :attr:`score_name`) of the current weights on the validation data."""
        classes = max(2, self.net_config.out_channels)
        acc = MetricAccumulator(classes)
        objects = InstanceAccumulator((0.5,)) if self.score_name == "F1@0.5" else None
        losses, weights = [], []
        for pair in self.val_pairs:
            prob = np.zeros((self.net_config.out_channels, *pair.spatial_shape), np.float32)
            for _ in predict_tiled(
                self.model,
                PreparedSource(pair.image),
                prob,
                device=self.device,
                precision=self.config.precision,
                halo=self.net_config.size_multiple * 2,
            ):
                pass
            if objects is not None:
                objects.add(instances_from_probabilities(prob), pair.instances)
            labelled = int((pair.targets != IGNORE).sum())
            if labelled == 0:
                continue
            p = torch.from_numpy(prob)[None]
            if p.shape[1] == 1:
                p = torch.cat([1 - p, p], dim=1)
            t = torch.from_numpy(pair.targets.astype(np.int64))[None]
            loss = float(cross_entropy(p.clamp_min(1e-7).log(), t))
            if "dice" in self.config.loss:
                dice_loss = float(soft_dice(p, t))
                loss = dice_loss if self.config.loss == "dice" else loss + dice_loss
            losses.append(loss)
            weights.append(labelled)
            acc.add(probabilities_to_labels(prob), pair.targets)
        self.model.train()
        if not weights:
            return float("nan"), float("nan")
        loss = float(np.average(losses, weights=weights))
        if objects is not None:
            return loss, objects.pooled()[0.5]["f1"]
        return loss, mean_foreground_dice(acc.pooled())

    def model_file(self, include_training_state: bool = True) -> ModelFile:
        """The best weights so far as a :class:`ModelFile`, with what resuming needs."""
        history = dict(self.base_history)
        runs = list(history.get("runs", []))
        plan = self.plan
        if self.resumed and runs:
            # A resumed run continues, and replaces, the entry of the run it resumes.
            resumed_run = runs.pop()
            plan = plan or resumed_run.get("plan")
        runs.append(
            {
                "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "steps": self.state.step,
                "seconds": round(self.state.seconds, 1),
                "best_score": self.state.best_score,
                "score": self.score_name,
                "train_images": [p.name for p in self.train_pairs],
                "val_images": [p.name for p in self.val_pairs],
                "device": describe_device(self.device),
                "config": self.config.to_dict(),
                **({"processes": self.world.size} if self.world.distributed else {}),
                **({"plan": plan} if plan else {}),
            }
        )
        history["runs"] = runs
        history["epochs_log"] = self.state.history[-500:]
        training_state = None
        if include_training_state:
            training_state = {
                "last_weights": _state_copy(self.model),
                "optimizer": copy.deepcopy(self.optimizer.state_dict()),
                "step": self.state.step,
                "seconds": self.state.seconds,
                "best_score": self.state.best_score,
                "best_val_loss": self.state.best_val_loss,
                "history": self.state.history,
                "train_config": self.config.to_dict(),
            }
        return ModelFile(
            config=self.net_config,
            preprocessing=self.preprocessing,
            weights=self.best_weights,
            class_names=self.class_names,
            history=history,
            training_state=training_state,
            task=dict(self.task),
            description=self.description,
        )
