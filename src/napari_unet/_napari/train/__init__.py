"""The Train tab: training pairs chosen on layers, the new-model and training-settings forms,
the worker that trains (with live loss plot, Stop and Resume), and saving the result."""

from .panel import TrainPanel

__all__ = ["TrainPanel"]
