"""Shared fixtures: tiny synthetic images and tiny networks keep the suite fast on 2 cores.

``--precision float32|bfloat16`` runs the suite with "auto" meaning that precision (through
``NAPARI_UNET_PRECISION``, which CLI subprocesses inherit), so one machine exercises the path
that machines with and without AMX take by default. ``.ci/run`` runs the whole suite in
float32 and the tests marked ``numerics`` (those that train or predict) again in bfloat16.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PRECISION_ENV = "NAPARI_UNET_PRECISION"  # napari_unet.core.network.devices reads it


def pytest_addoption(parser):
    parser.addoption(
        "--precision",
        choices=("auto", "float32", "bfloat16"),
        default=None,
        help='what precision="auto" means in this run (default: what the machine picks)',
    )


def pytest_configure(config):
    chosen = config.getoption("--precision")
    if chosen and chosen != "auto":
        os.environ[PRECISION_ENV] = chosen
    elif chosen == "auto":
        os.environ.pop(PRECISION_ENV, None)


def pytest_report_header(config):
    import torch

    from napari_unet.core.network.devices import autocast_dtype

    dtype = autocast_dtype(torch.device("cpu"), "auto")
    name = "float32" if dtype is None else str(dtype).removeprefix("torch.")
    return f"napari-unet: precision 'auto' on the CPU means {name}"


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
