"""What a training run saves: the entry it adds to a model file's history, and the training
state (last weights, optimiser, record) that ``--resume`` and the widget's Resume continue from."""

from __future__ import annotations

import copy
import datetime as _dt
from typing import Any

import torch

from .config import TrainConfig
from .validation import TrainingRecord

EPOCHS_KEPT = 500  # the epochs log in a model file is capped: long runs stay small files


def state_copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of ``module``'s weights that later training does not change."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def history_with_run(
    base_history: dict[str, Any],
    run: dict[str, Any],
    record: TrainingRecord,
    *,
    resumed: bool,
) -> dict[str, Any]:
    """``base_history`` (the model file's) with this run appended to its ``runs``; a resumed
    run continues, and replaces, the entry of the run it resumes (keeping that run's plan
    when it has none of its own)."""
    history = dict(base_history)
    runs = list(history.get("runs", []))
    if resumed and runs:
        resumed_run = runs.pop()
        if "plan" not in run and resumed_run.get("plan"):
            run = {**run, "plan": resumed_run["plan"]}
    stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    runs.append({"finished": stamp, **run})
    history["runs"] = runs
    history["epochs_log"] = record.history[-EPOCHS_KEPT:]
    return history


def training_state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    record: TrainingRecord,
    config: TrainConfig,
) -> dict[str, Any]:
    """Everything resuming needs: plain tensors, numbers and strings (model files are data)."""
    return {
        "last_weights": state_copy(model),
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        **record.to_dict(),
        "train_config": config.to_dict(),
    }


def restore_training_state(
    state: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> TrainingRecord:
    """Load a saved :func:`training_state` into ``model`` and ``optimizer``; returns its record."""
    model.load_state_dict(state["last_weights"])
    optimizer.load_state_dict(state["optimizer"])
    return TrainingRecord.from_dict(state)
