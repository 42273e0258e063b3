"""Anisotropic z-stacks: a 3D model records the aspect of its training objects, and an
image whose pixel sizes are known is measured, and predicted, at that aspect."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from tests.core.test_scale import blobs

from napari_unet.core import ModelFile, Preprocessing, Segmenter, UNet, UNetConfig
from napari_unet.core.data.normalize import ImageSource
from napari_unet.core.data.object_size import ObjectScale, measure_labels
from napari_unet.core.predict.scale import choose_scale, refined


@pytest.fixture(scope="module")
def balls():
    return blobs(12, shape=(72, 72, 72), spacing=2.0)


def _isotropic_scale(balls) -> ObjectScale:
    image, labels = balls
    scale = measure_labels([labels], "objects", [image[None]])
    assert scale is not None and scale.aspect == pytest.approx((1, 1, 1), abs=0.1)
    return scale


def test_training_records_the_aspect_of_its_objects(balls):
    _, labels = balls
    every_third = measure_labels([labels[::3]], "objects")
    assert every_third.aspect == pytest.approx((1 / 3, 1, 1), abs=0.08)
    flat = measure_labels([labels[labels.shape[0] // 2]], "objects")  # 2D: no aspect
    assert flat.aspect is None
    assert ObjectScale.from_dict(every_third.to_dict()) == every_third


def test_a_z_stack_of_coarse_steps_is_brought_to_the_model_aspect(balls):
    scale = _isotropic_scale(balls)
    image, _ = balls
    stack = image[::3]  # z steps three times the pixel size
    source = ImageSource(stack, 3, Preprocessing(), 1)
    choice = choose_scale(scale, source, "auto", pixel_size=(0.6, 0.2, 0.2))
    assert choice.how == "estimated"
    assert choice.factors[0] == pytest.approx(3, rel=0.1) and choice.factors[1:] == (1.0, 1.0)
    assert "rescaled x3" in choice.describe()
    # Unknown pixel sizes: measured as it is (isotropically), as before.
    plain = choose_scale(scale, source, "auto")
    assert len(set(plain.factors)) == 1
    # A check on the prediction keeps the stack's aspect.
    again = refined(choice, scale.size * 2, scale)
    assert again is not None and again.factors[0] / again.factors[2] == pytest.approx(3, rel=0.1)


def test_prediction_of_an_anisotropic_stack_comes_back_on_its_grid(balls, tmp_path):
    config = UNetConfig(spatial_dims=3, depth=2, base_features=4)
    torch.manual_seed(0)
    scale = _isotropic_scale(balls)
    model = ModelFile(config, Preprocessing(), UNet(config).state_dict(), scale=scale)
    stack = balls[0][::3, :48, :48]
    result = Segmenter(model, device="cpu", precision="float32").predict(
        stack, pixel_size=(0.6, 0.2, 0.2)
    )
    assert result.labels.shape == stack.shape
    assert result.scale.factors[0] / result.scale.factors[2] == pytest.approx(3, rel=0.1)
    # The command line reads the z step from an ImageJ TIFF.
    from napari_unet.core.data.pixel_size import file_pixel_size

    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack.astype(np.float32), imagej=True, resolution=(5, 5),
                     metadata={"unit": "um", "spacing": 0.6, "axes": "ZYX"})  # fmt: skip
    assert file_pixel_size(path, 3) == pytest.approx((0.6, 0.2, 0.2))
