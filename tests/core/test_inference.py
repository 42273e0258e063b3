import numpy as np
import pytest
from tests.conftest import disks_image, randomise_batchnorm

from napari_unet.core import (
    ModelFile,
    Preprocessing,
    Segmenter,
    UNet,
    UNetConfig,
    UserInputError,
    instances_from_foreground,
    iter_predict_stack,
)

pytestmark = pytest.mark.numerics  # trains or predicts: run in both precisions


def _segmenter(in_channels=1):
    config = UNetConfig(depth=2, base_features=4, in_channels=in_channels)
    net = randomise_batchnorm(UNet(config))
    return Segmenter(ModelFile(config, Preprocessing(), net.state_dict()), device="cpu")


def _run(gen):
    steps = []
    while True:
        try:
            steps.append(next(gen))
        except StopIteration as done:
            return steps, done.value


def test_a_stack_is_segmented_slice_by_slice_like_single_images():
    seg = _segmenter()
    stack = np.stack([disks_image(seed=s)[0] for s in range(3)])
    steps, result = _run(iter_predict_stack(seg, stack))
    assert result.labels.shape == stack.shape
    for z in range(3):
        np.testing.assert_array_equal(result.labels[z], seg.predict(stack[z]).labels)
    assert steps[-1].fraction == pytest.approx(1.0)
    assert [s.block for s in steps] == sorted(s.block for s in steps)


def test_only_the_requested_slice_is_computed():
    seg = _segmenter()
    stack = np.stack([disks_image(seed=s)[0] for s in range(3)])
    steps, result = _run(iter_predict_stack(seg, stack, index=(1,)))
    assert {s.blocks for s in steps} == {1}
    np.testing.assert_array_equal(result.labels[1], seg.predict(stack[1]).labels)
    assert not result.labels[0].any() and not result.labels[2].any()
    with pytest.raises(UserInputError, match="does not fit"):
        _run(iter_predict_stack(seg, stack, index=(3,)))


def test_rgb_time_series_and_probabilities():
    seg = _segmenter(in_channels=3)
    movie = np.random.default_rng(0).integers(0, 255, (2, 40, 48, 3)).astype(np.uint8)
    _, result = _run(iter_predict_stack(seg, movie, channel_axis=-1, output="probabilities"))
    assert result.labels.shape == (2, 40, 48)
    assert result.probabilities.shape == (2, 2, 40, 48)
    np.testing.assert_allclose(result.probabilities.sum(1), 1, atol=1e-5)


def test_instance_ids_are_unique_across_slices():
    from napari_unet.core import io
    from napari_unet.samples import sample_path

    nuclei = io.read_image(sample_path("nuclei"))[:256, :256]
    seg = Segmenter("nuclei", device="cpu")
    _, result = _run(iter_predict_stack(seg, np.stack([nuclei, nuclei]), output="instances"))
    first, second = (set(np.unique(result.labels[z])) - {0} for z in (0, 1))
    assert len(first) == len(second) > 20 and not first & second


def test_instances_drop_small_objects():
    mask = np.zeros((20, 20), bool)
    mask[1:3, 1:3] = True  # 4 pixels
    mask[10:16, 10:16] = True  # 36 pixels
    labels = instances_from_foreground(mask, min_size=10)
    assert labels.max() == 1 and (labels > 0).sum() == 36


def test_too_few_axes_for_the_model():
    seg = Segmenter(
        ModelFile(
            UNetConfig(spatial_dims=3, depth=1, base_features=2),
            Preprocessing(),
            UNet(UNetConfig(spatial_dims=3, depth=1, base_features=2)).state_dict(),
        ),
        device="cpu",
    )
    with pytest.raises(UserInputError, match="model is 3D"):
        _run(iter_predict_stack(seg, np.zeros((30, 30))))


def test_test_time_augmentation_makes_the_output_orientation_independent():
    segmenter = _segmenter()
    segmenter.precision = "float32"
    image = np.random.default_rng(3).random((64, 64)).astype(np.float32)
    turned = np.ascontiguousarray(np.rot90(image)[:, ::-1])

    def probabilities(img, tta):
        options = {"output": "probabilities", "test_time_augmentation": tta, "tile_size": 32}
        return segmenter.predict(img, **options).probabilities

    plain, plain_turned = probabilities(image, False), probabilities(turned, False)
    averaged, averaged_turned = probabilities(image, True), probabilities(turned, True)
    back = np.rot90(averaged_turned[:, :, ::-1], -1, axes=(1, 2))
    assert np.allclose(averaged.sum(0), 1, atol=1e-5)
    assert np.abs(back - averaged).max() < 1e-5  # the same answer in any orientation
    unaugmented_back = np.rot90(plain_turned[:, :, ::-1], -1, axes=(1, 2))
    assert np.abs(unaugmented_back - plain).max() > 1e-3  # which a plain network does not give


def test_stack_channel_axis_tells_stacks_from_channels():
    from napari_unet.core.predict.inference import stack_channel_axis

    gray = _segmenter().model_file  # 2D, one input channel
    assert stack_channel_axis((64, 64), gray) is None
    assert stack_channel_axis((5, 64, 64), gray) is None  # a z-stack, not 5 channels
    assert stack_channel_axis((2, 5, 64, 64), gray) is None  # time and z
    assert stack_channel_axis((5, 64, 64, 3), gray) == -1  # colour: the error says so later
    assert stack_channel_axis((5, 64, 64), gray, channel_axis=0) == 0  # explicit wins
    two = _segmenter(in_channels=2).model_file
    assert stack_channel_axis((64, 64, 2), two) == -1
    assert stack_channel_axis((2, 64, 64), two) == 0
    assert stack_channel_axis((7, 2, 64, 64), two) == 1  # ImageJ Z, C, Y, X
    with pytest.raises(UserInputError, match="holds the model's 2 input channels"):
        stack_channel_axis((7, 5, 64, 64), two)
