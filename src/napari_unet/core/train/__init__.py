"""Training: the Trainer (a generator of progress), training pairs and patch sampling,
targets from labels and corrections, losses, defaults, the time-budget planner and DDP."""

from .data import Augmentation, TrainingPair, prepare_pair, split_for_validation
from .trainer import TrainConfig, Trainer, TrainProgress

__all__ = [
    "Augmentation",
    "TrainConfig",
    "TrainProgress",
    "Trainer",
    "TrainingPair",
    "prepare_pair",
    "split_for_validation",
]
