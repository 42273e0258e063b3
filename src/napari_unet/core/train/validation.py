"""Validation and best-weight keeping: how a training run is graded on held-out labels
(:func:`validate`) and the record of its epochs that decides which weights are the best
(:class:`TrainingRecord`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..data.normalize import PreparedSource
from ..metrics import MetricAccumulator, mean_foreground_dice
from ..predict.instances import InstanceAccumulator, instances_from_probabilities
from ..predict.tiling import predict_tiled, probabilities_to_labels
from .data import FEW_IMAGES, VALIDATION_PART, TrainingPair
from .losses import IGNORE, cross_entropy, soft_dice

KEPT_START = "no epoch beat the starting model on the validation data, so its weights are kept"


def score_name(task: dict[str, Any], val_pairs: list[TrainingPair]) -> str:
    """What the validation score is: object F1 at IoU 0.5 for instance models whose
    validation data has object labels, else mean foreground Dice."""
    if (
        task.get("kind") == "instances"
        and val_pairs
        and all(p.instances is not None for p in val_pairs)
    ):
        return "F1@0.5"
    return "Dice"


def validation_summary(
    train_pairs: list[TrainingPair], val_pairs: list[TrainingPair], val_fraction: float
) -> str:
    """What validation is done on, in words (the CLI and the widget say it at the start)."""
    if not val_pairs:
        if val_fraction > 0 and any(p.corrections for p in train_pairs):
            return (
                "no validation data (strokes on a prediction are not held out: their "
                "accepted rest would grade the model on its own prediction): the weights "
                "with the lowest training loss are kept"
            )
        return "no validation data: the weights with the lowest training loss are kept"
    slabs = [p for p in val_pairs if p.name.endswith(VALIDATION_PART)]
    if slabs and len(train_pairs) < FEW_IMAGES:
        return (
            f"validating on the last {val_fraction:.0%} of {len(slabs)} of the "
            f"{len(train_pairs)} image(s) (under {FEW_IMAGES} images none is held out "
            "whole; those labels are hidden from training)"
        )
    return f"validating on {len(val_pairs)} image(s)"


def validate(
    model: torch.nn.Module,
    val_pairs: list[TrainingPair],
    *,
    out_channels: int,
    halo: int,
    device: torch.device,
    precision: str,
    loss_name: str,
    score: str,
) -> tuple[float, float]:
    """Loss (``loss_name``, weighted by labelled pixels) and score (``score``, see
    :func:`score_name`) of ``model`` on ``val_pairs``, predicted with the tiler as a user's
    image would be; NaN for both when no validation pixel is labelled. Leaves the model in
    training mode."""
    acc = MetricAccumulator(max(2, out_channels))
    objects = InstanceAccumulator((0.5,)) if score == "F1@0.5" else None
    losses, weights = [], []
    for pair in val_pairs:
        prob = np.zeros((out_channels, *pair.spatial_shape), np.float32)
        for _ in predict_tiled(
            model, PreparedSource(pair.image), prob, device=device, precision=precision, halo=halo
        ):
            pass
        if objects is not None and pair.instances is not None:  # score_name checked it
            objects.add(instances_from_probabilities(prob), pair.instances)
        labelled = int((pair.targets != IGNORE).sum())
        if labelled == 0:
            continue
        losses.append(_validation_loss(prob, pair.targets, loss_name))
        weights.append(labelled)
        acc.add(probabilities_to_labels(prob), pair.targets)
    model.train()
    if not weights:
        return float("nan"), float("nan")
    loss = float(np.average(losses, weights=weights))
    if objects is not None:
        return loss, objects.pooled()[0.5]["f1"]
    return loss, mean_foreground_dice(acc.pooled())


def _validation_loss(prob: np.ndarray, targets: np.ndarray, loss_name: str) -> float:
    """The training loss of one image's probabilities (not logits: these are what the tiler
    stitched), so that validation and training losses can be compared."""
    p = torch.from_numpy(prob)[None]
    if p.shape[1] == 1:
        p = torch.cat([1 - p, p], dim=1)
    t = torch.from_numpy(targets.astype(np.int64))[None]
    loss = float(cross_entropy(p.clamp_min(1e-7).log(), t))
    if "dice" in loss_name:
        dice_loss = float(soft_dice(p, t))
        loss = dice_loss if loss_name == "dice" else loss + dice_loss
    return loss


@dataclass
class TrainingRecord:
    """Where a run stands (steps, time) and its epochs' scores; saved to resume.

    ``history`` has one entry per validated epoch (step 0: the weights a fine-tune started
    from); ``best_score`` and ``best_val_loss`` are those of the weights kept."""

    step: int = 0
    seconds: float = 0.0
    best_score: float | None = None
    best_val_loss: float | None = None  # breaks ties between equal scores
    history: list[dict[str, Any]] = field(default_factory=list)

    def better(self, score: float, val_loss: float | None) -> bool:
        """Whether an epoch beats the best so far: a higher score, or the same score with a
        lower validation loss. Scores on few objects saturate (F1 1.0 on a handful of nuclei
        is reached early); without the tie-break the earliest such weights would be kept."""
        if self.best_score is None:
            return True
        if math.isnan(score):
            return False
        if score != self.best_score:
            return score > self.best_score
        return (
            val_loss is not None
            and self.best_val_loss is not None
            and val_loss < self.best_val_loss
        )

    def log_epoch(
        self,
        *,
        epoch: int,
        train_loss: float | None,
        val_loss: float | None,
        val_score: float | None,
        improved: bool,
        score: float | None = None,
    ) -> None:
        """Append one epoch; when ``improved``, its ``score`` (default ``val_score``) and
        validation loss become the best."""
        if improved:
            self.best_score = val_score if score is None else score
            self.best_val_loss = val_loss
        self.history.append(
            {
                "epoch": epoch,
                "step": self.step,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_score": val_score,
                "seconds": round(self.seconds, 2),
                "improved": improved,
            }
        )

    def best_step(self) -> int:
        """The step of the weights kept (0: the starting ones)."""
        improved = [h["step"] for h in self.history if h.get("improved")]
        return improved[-1] if improved else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "seconds": self.seconds,
            "best_score": self.best_score,
            "best_val_loss": self.best_val_loss,
            "history": self.history,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TrainingRecord:
        return cls(
            step=int(state["step"]),
            seconds=float(state["seconds"]),
            best_score=state.get("best_score"),
            best_val_loss=state.get("best_val_loss"),
            history=list(state.get("history", [])),
        )
