"""Low-resolution augmentation: patches shown as a camera with larger pixels would show
them, on their own grid, so that a model learns the enlarged images auto prediction gives it."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.core import TrainConfig, UserInputError
from napari_unet.core.train.data import Augmentation, at_lower_resolution, augment


def _detail(image: np.ndarray) -> float:
    """Energy of the finest detail (differences between neighbouring pixels)."""
    return float(np.abs(np.diff(image, axis=-1)).mean())


def test_a_patch_at_lower_resolution_keeps_its_grid_and_loses_its_finest_detail():
    rng = np.random.default_rng(0)
    image = rng.random((2, 64, 48)).astype(np.float32)
    coarse = at_lower_resolution(image, 4)
    assert coarse.shape == image.shape and coarse.dtype == np.float32
    assert _detail(coarse) < 0.3 * _detail(image)
    assert abs(coarse.mean() - image.mean()) < 0.02  # the same picture, blurred
    assert np.allclose(at_lower_resolution(image, 1), image, atol=1e-6)


def test_augmentation_shows_about_half_the_patches_at_lower_resolution():
    rng = np.random.default_rng(1)
    image = rng.random((1, 32, 32)).astype(np.float32)
    targets = np.zeros((32, 32), np.int16)
    plain = Augmentation(flips=False, rotations=False, intensity=False)
    coarse = Augmentation(flips=False, rotations=False, intensity=False, low_resolution=4)
    assert np.array_equal(augment(image, targets, plain, rng)[0], image)
    changed = [not np.allclose(augment(image, targets, coarse, rng)[0], image) for _ in range(40)]
    assert 10 <= sum(changed) <= 30
    with pytest.raises(UserInputError, match="low resolution must be a number from 1 to 8"):
        TrainConfig(low_resolution=0.5)
