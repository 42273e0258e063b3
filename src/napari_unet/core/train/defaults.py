"""The training settings a new model starts from when the user leaves them alone: one set,
shared by the CLI, the widget and :class:`~napari_unet.core.train.trainer.Trainer`.

They depend on the device. On a CPU a step of the GPU-sized network (base 32, 8 x 256^2
patches) costs about 6 s on 2 cores, so a few minutes' budget buys a few dozen steps; half the
width and a quarter of the patch area give about 16 times more steps in the same time, which
learns far more (``benchmarks/time_budget.py``). A GPU affords the larger network.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..network.devices import resolve_device


@dataclass(frozen=True)
class TrainingDefaults:
    """Network width and depth, patch edge and patches per step for a new model."""

    depth: int
    base_features: int
    patch_size: int
    batch_size: int


def training_defaults(spatial_dims: int, device: str | torch.device = "auto") -> TrainingDefaults:
    """The defaults for a ``spatial_dims`` (2 or 3) model trained on ``device``."""
    if spatial_dims == 3:
        # Not yet measured against alternatives on a CPU: the long-standing 3D settings.
        return TrainingDefaults(depth=4, base_features=32, patch_size=64, batch_size=2)
    if resolve_device(device).type in ("cuda", "mps"):
        return TrainingDefaults(depth=4, base_features=32, patch_size=256, batch_size=8)
    return TrainingDefaults(depth=4, base_features=16, patch_size=128, batch_size=8)
