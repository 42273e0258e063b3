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

import math
import os
import time
from collections.abc import Generator
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ..data.image_kind import kinds_entry
from ..data.normalize import Preprocessing
from ..data.object_size import ObjectScale
from ..errors import TrainingDiverged, UserInputError
from ..models.model_file import ModelFile, default_class_names, non_finite_entries
from ..network.devices import autocast, describe_device, memory_format, resolve_device
from ..network.unet import UNet, UNetConfig
from ..predict.instances import INSTANCE_CLASSES
from .config import LR_SCHEDULES, TrainConfig, TrainProgress, learning_rate
from .data import (
    Augmentation,
    PatchSampler,
    TrainingPair,
    check_classes_present,
    check_pairs,
    split_for_validation,
)
from .ddp import SINGLE, World, agree
from .defaults import training_defaults
from .losses import log_probabilities, segmentation_loss
from .saving import history_with_run, restore_training_state, state_copy, training_state
from .scale import measure_training_scale, rescale_note, to_model_scale
from .validation import (
    KEPT_START,
    TrainingRecord,
    score_name,
    validate,
    validation_summary,
)

# TrainConfig, TrainProgress and KEPT_START are imported from here by older scripts.
__all__ = ["KEPT_START", "LR_SCHEDULES", "TrainConfig", "TrainProgress", "Trainer"]


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
        self.state = TrainingRecord()
        self._scale: ObjectScale | Literal[False] | None = None  # False: nothing to measure
        self.plan = plan
        self.world = world
        self._ddp: torch.nn.Module | None = None
        self.resumed = resume
        # A fine-tune (a model file, not resumed) scores its starting weights first, so that
        # it ends with weights at least as good on the validation data as those it began with.
        self.fine_tuning = isinstance(model, ModelFile) and not resume
        if isinstance(model, ModelFile):
            config = self._adopt_model_file(model, config, resume)
        else:
            if resume:
                raise UserInputError("resuming needs a model file, not a new architecture")
            self._adopt_new_model(model, preprocessing, class_names, task)
        self.config = config or TrainConfig()
        check_pairs(pairs + (val_pairs or []), self.net_config)
        # A fine-tune sees its data at the model's scale, as prediction will show it images.
        self.rescaled_by = 1.0
        if self.fine_tuning:
            pairs, self.rescaled_by = to_model_scale(pairs, self.task, self.base_scale)
            if val_pairs:
                val_pairs, _ = to_model_scale(val_pairs, self.task, self.base_scale)
        if val_pairs is None:
            pairs, val_pairs = split_for_validation(
                pairs, self.config.val_fraction, self.config.seed
            )
        self.train_pairs, self.val_pairs = pairs, val_pairs
        self._build_network(model)
        self._build_sampler(pairs)
        if not isinstance(model, ModelFile):
            check_classes_present(self.train_pairs, self.class_names)
        elif resume and model.training_state is not None:  # checked in _adopt_model_file
            self.state = restore_training_state(model.training_state, self.model, self.optimizer)
            self.best_weights = {
                k: v.float() if v.is_floating_point() else v for k, v in model.weights.items()
            }

    def _adopt_model_file(
        self, model: ModelFile, config: TrainConfig | None, resume: bool
    ) -> TrainConfig | None:
        """Take the network, preprocessing, classes and task of a model file (and, resuming,
        its saved settings unless new ones are given)."""
        self.net_config = model.config
        self.preprocessing = model.preprocessing
        self.class_names = list(model.class_names)
        self.base_history = dict(model.history)
        self.description = model.description
        self.task = dict(model.task)
        self.base_scale = model.scale
        if resume:
            if not model.training_state:
                raise UserInputError("this model file holds no training state to resume from")
            config = config or TrainConfig.from_dict(model.training_state["train_config"])
        return config

    def _adopt_new_model(
        self,
        net_config: UNetConfig,
        preprocessing: Preprocessing | None,
        class_names: list[str] | None,
        task: dict[str, Any] | None,
    ) -> None:
        self.net_config = net_config
        self.preprocessing = preprocessing or Preprocessing()
        self.task = dict(task or {"kind": "semantic"})
        if self.task["kind"] == "instances":
            if net_config.out_channels != 3:
                raise UserInputError(
                    "an instance model needs 3 output channels (background, interior, boundary)"
                )
            class_names = class_names or list(INSTANCE_CLASSES)
        self.class_names = class_names or default_class_names(net_config.out_channels)
        self.base_history = {}
        self.description = ""
        self.base_scale = None

    def _build_network(self, model: UNetConfig | ModelFile) -> None:
        """The network (seeded, with the file's weights when there is one), its optimiser."""
        self.device = resolve_device(self.config.device)
        torch.manual_seed(self.config.seed)
        self.model = UNet(self.net_config)
        if isinstance(model, ModelFile):
            self.model.load_state_dict(model.build().state_dict())
        self.layout = memory_format(self.device, self.net_config.spatial_dims)
        # torch's stubs omit Module.to(memory_format=...), which it takes
        self.model.to(self.device, memory_format=self.layout)  # type: ignore[call-overload]
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=self.config.learning_rate,
            weight_decay=self.config.weight_decay,
        )
        self.best_weights = state_copy(self.model)

    def _build_sampler(self, pairs: list[TrainingPair]) -> None:
        """Patch and batch sizes, the patch sampler, and the steps of an epoch."""
        dims = self.net_config.spatial_dims
        multiple = self.net_config.size_multiple
        defaults = training_defaults(dims, self.device)
        patch = self.config.patch_size or defaults.patch_size
        largest = max(max(p.spatial_shape) for p in pairs)
        # No point in patches larger than the largest image (rounded to what the net needs).
        patch = min(patch, -(-largest // multiple) * multiple)
        patch = max(multiple, -(-patch // multiple) * multiple)
        self.batch_size = self.config.batch_size or defaults.batch_size
        c = self.config
        aug: Augmentation | None = Augmentation(
            elastic=c.elastic, zoom=c.zoom, low_resolution=c.low_resolution
        )
        aug = aug if c.augment else None
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
        self.best_weights = state_copy(self.model)
        self.base_history["encoder_weights"] = Path(path).name
        return loaded

    @property
    def instance_task(self) -> bool:
        return self.task.get("kind") == "instances"

    @property
    def score_name(self) -> str:
        """What the validation score is (:func:`~napari_unet.core.train.validation.score_name`)."""
        return score_name(self.task, self.val_pairs)

    @property
    def total_steps(self) -> int:
        return self.config.epochs * self.steps_per_epoch

    @property
    def validation_summary(self) -> str:
        """What validation is done on (and, for a fine-tune at another scale, how its data
        were rescaled), in words: the CLI and the widget say it at the start."""
        text = validation_summary(self.train_pairs, self.val_pairs, self.config.val_fraction)
        return rescale_note(self.rescaled_by, self.base_scale) + text

    def release(self) -> None:
        """Move the network and optimiser state to the CPU and free GPU memory.

        Call it when training pauses or ends; :meth:`train` moves everything back."""
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

    def train(self) -> Generator[TrainProgress, None, None]:
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
            loss, seconds = agree(self.world, self.device, loss, time.perf_counter() - started)
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
        self.state.log_epoch(
            epoch=0, train_loss=None, val_loss=val_loss, val_score=val_score, improved=True
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

    def _set_learning_rate(self, done: float) -> None:
        """Apply the schedule for the fraction ``done`` (0 to 1) of this run."""
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.config, done)

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
        best = self.state.best_step()
        if best:
            kept = f"the best weights before it (step {best})"
        else:
            kept = "the weights it resumed from" if self.resumed else "the starting weights"
        raise TrainingDiverged(
            f"training diverged: {what}. Kept {kept}; train again with a lower learning rate "
            f"(now {rate:g}, try {rate / 10:g}), and check the images for extreme values"
        )

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
        improved = self.state.better(score, val_loss)
        if improved:
            self.best_weights = state_copy(self.model)
        self.state.log_epoch(
            epoch=progress.epoch,
            train_loss=progress.train_loss,
            val_loss=val_loss,
            val_score=val_score,
            improved=improved,
            score=score,
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
        return validate(
            self.model,
            self.val_pairs,
            out_channels=self.net_config.out_channels,
            halo=self.net_config.size_multiple * 2,
            device=self.device,
            precision=self.config.precision,
            loss_name=self.config.loss,
            score=self.score_name,
        )

    def model_file(self, include_training_state: bool = True) -> ModelFile:
        """The best weights so far as a :class:`ModelFile`, with what resuming needs."""
        run = {
            "steps": self.state.step,
            "seconds": round(self.state.seconds, 1),
            "best_score": self.state.best_score,
            "score": self.score_name,
            "train_images": [p.name for p in self.train_pairs],
            "val_images": [p.name for p in self.val_pairs],
            "device": describe_device(self.device),
            "config": self.config.to_dict(),
            **({"processes": self.world.size} if self.world.distributed else {}),
            **({"plan": self.plan} if self.plan else {}),
            **({"rescaled_to_model": self.rescaled_by} if self.rescaled_by != 1 else {}),
            **kinds_entry(p.kind for p in self.train_pairs + self.val_pairs),
        }
        history = history_with_run(self.base_history, run, self.state, resumed=self.resumed)
        if self._scale is None:  # measured once: the data do not change during a run
            measured = measure_training_scale(self.train_pairs + self.val_pairs, self.task)
            self._scale = measured or self.base_scale or False
        state = None
        if include_training_state:
            state = training_state(self.model, self.optimizer, self.state, self.config)
        return ModelFile(
            config=self.net_config,
            preprocessing=self.preprocessing,
            weights=self.best_weights,
            class_names=self.class_names,
            history=history,
            training_state=state,
            task=dict(self.task),
            description=self.description,
            scale=self._scale or None,
        )
