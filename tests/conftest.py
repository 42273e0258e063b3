"""Shared fixtures: tiny synthetic images and tiny networks keep the suite fast on 2 cores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def disks_image(shape=(96, 96), n=8, radius=6, seed=0, dtype=np.uint16):
    """Bright disks on a noisy background and their instance labels."""
    from skimage.draw import disk

    rng = np.random.default_rng(seed)
    image = rng.normal(200, 20, shape)
    labels = np.zeros(shape, np.uint16)
    for i in range(n):
        centre = [int(rng.integers(radius, s - radius)) for s in shape]
        rr, cc = disk(centre, radius, shape=shape)
        image[rr, cc] += 300
        labels[rr, cc] = i + 1
    return np.clip(image, 0, None).astype(dtype), labels


@pytest.fixture
def disks():
    return disks_image()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


def randomise_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Give batch-norm layers non-trivial running statistics, as a trained model has."""
    gen = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=gen))
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)
    return model.eval()
