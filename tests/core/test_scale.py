"""Scale: what a model stores of the size of its training structures, how a user's image is
measured, and prediction on a rescaled grid mapped back to the image's own."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unet.core import (
    ModelFile,
    Preprocessing,
    Segmenter,
    UNet,
    UNetConfig,
    UserInputError,
    load_model,
    predict_tiled,
    save_model,
)
from napari_unet.core.data.normalize import ImageSource, PreparedSource
from napari_unet.core.data.object_size import (
    ObjectScale,
    blob_diameter,
    equivalent_diameters,
    measure_labels,
    structure_widths,
)
from napari_unet.core.data.rescale import RescaledSource, rescale_image, to_original_grid
from napari_unet.core.predict.scale import choose_scale, parse_object_size, refined
from napari_unet.core.predict.tiling import probabilities_to_labels
from napari_unet.core.train.data import prepare_pair
from napari_unet.core.train.scale import measure_training_scale


def blobs(diameter: float, shape=(256, 256), seed=0, spacing=2.2):
    """Bright discs (2D) or balls (3D) of ``diameter`` on a grid with jitter, with a little
    blur and noise, and their instance labels."""
    rng = np.random.default_rng(seed)
    step = int(np.ceil(diameter * spacing))
    grids = np.meshgrid(*(np.arange(step // 2, n - step // 2, step) for n in shape), indexing="ij")
    centres = np.stack([g.ravel() for g in grids], axis=1).astype(float)
    centres += rng.uniform(-0.15, 0.15, centres.shape) * step
    coords = np.indices(shape).reshape(len(shape), -1).T.astype(float)
    labels = np.zeros(int(np.prod(shape)), np.uint16)
    for i, c in enumerate(centres):
        labels[((coords - c) ** 2).sum(1) <= (diameter / 2) ** 2] = i + 1
    labels = labels.reshape(shape)
    from scipy import ndimage as ndi

    image = ndi.gaussian_filter((labels > 0).astype(np.float32), 1.0) * 200 + 20
    image += rng.normal(0, 8, shape)
    return image.astype(np.float32), labels


def test_object_sizes_from_labels_2d_and_3d():
    _, labels = blobs(12)
    assert np.median(equivalent_diameters(labels)) == pytest.approx(12, rel=0.05)
    _, labels3d = blobs(10, shape=(48, 48, 48))
    assert np.median(equivalent_diameters(labels3d)) == pytest.approx(10, rel=0.05)
    scale = measure_labels([labels], "objects")
    assert scale.kind == "objects" and scale.size == pytest.approx(12, rel=0.05)
    assert scale.low <= scale.size <= scale.high and scale.count == labels.max()


def test_widths_of_thin_structures():
    mask = np.zeros((100, 100), bool)
    mask[20:23, 5:95] = True  # a bar 3 pixels wide
    mask[5:95, 60:65] = True  # one 5 wide
    widths = structure_widths(mask)
    assert set(np.round(np.percentile(widths, [10, 90]))) <= {3, 5}
    assert 3 <= measure_labels([mask], "widths").size <= 5


def _pair(image, labels, task):
    return prepare_pair(
        image, labels if task["kind"] == "instances" else (labels > 0).astype(np.uint8),
        spatial_dims=image.ndim, preprocessing=Preprocessing(), task=task,
        num_classes=3 if task["kind"] == "instances" else 2,
    )  # fmt: skip


def test_training_measures_instances_semantic_objects_and_vessels():
    image, labels = blobs(12)
    instances = measure_training_scale(
        [_pair(image, labels, {"kind": "instances"})], {"kind": "instances"}
    )
    assert instances.kind == "objects" and instances.size == pytest.approx(12, rel=0.05)
    assert instances.calibration > 0  # the estimator was calibrated on the image
    semantic = measure_training_scale(
        [_pair(image, labels, {"kind": "semantic"})], {"kind": "semantic"}
    )
    assert semantic.kind == "objects" and semantic.size == pytest.approx(12, rel=0.05)
    vessels = np.zeros((128, 128), np.uint8)
    for row in range(10, 120, 20):
        vessels[row : row + 3, 5:120] = 1
    vessels[10:120, 60:63] = 1  # one connected tree, 3 pixels wide
    thin = measure_training_scale(
        [_pair(vessels.astype(np.float32) * 100, vessels, {"kind": "semantic"})],
        {"kind": "semantic"},
    )
    assert thin.kind == "widths" and thin.size == pytest.approx(3, abs=0.5)
    image3d, labels3d = blobs(10, shape=(48, 48, 48))
    in3d = measure_training_scale(
        [_pair(image3d, labels3d, {"kind": "instances"})], {"kind": "instances"}
    )
    assert in3d.size == pytest.approx(10, rel=0.05)


def test_scribbles_say_nothing_of_sizes():
    image, labels = blobs(12)
    scribbles = np.zeros_like(labels)
    scribbles[labels == 1] = 2
    scribbles[:5, :5] = 1
    pair = prepare_pair(
        image, scribbles, spatial_dims=2, preprocessing=Preprocessing(), label_mode="scribbles"
    )
    assert measure_training_scale([pair], {"kind": "semantic"}) is None


@pytest.mark.parametrize(("dims", "trained", "sizes"), [(2, 12, (6, 9, 20, 32)), (3, 8, (5, 12))])
def test_the_estimate_finds_blob_sizes_within_20_percent(dims, trained, sizes):
    """Calibrated on blobs of one size, the estimator finds others within 20%."""
    shape = (256, 256) if dims == 2 else (64, 64, 64)
    image, labels = blobs(trained, shape)
    calibration = measure_labels([labels], "objects", [image[None]]).calibration
    for size in sizes:
        other, _ = blobs(size, shape if size < 24 else (384, 384), seed=1)
        found = blob_diameter(other[None]) * calibration
        assert found == pytest.approx(size, rel=0.2), f"blobs of {size} px: found {found:.1f}"


def test_scale_is_saved_loaded_and_checked(tmp_path):
    config = UNetConfig(depth=2, base_features=4)
    scale = ObjectScale("objects", 14.0, 10.0, 18.0, 50, 1.1, (0.5, 0.5), "micrometer")
    model = ModelFile(config, Preprocessing(), UNet(config).state_dict(), scale=scale)
    loaded = load_model(save_model(model, tmp_path / "m.pt"))
    assert loaded.scale == scale
    assert "14.0 px" in scale.describe() and "0.5 x 0.5 micrometer" in scale.describe()
    old = ModelFile(config, Preprocessing(), UNet(config).state_dict())
    assert load_model(save_model(old, tmp_path / "old.pt")).scale is None
    with pytest.raises(UserInputError, match="positive"):
        ObjectScale("objects", float("nan"), 1.0, 2.0, 3)


def test_bundled_models_know_their_scale():
    nuclei, retina = load_model("nuclei").scale, load_model("retina").scale
    assert nuclei.kind == "objects" and 10 < nuclei.size < 40 and nuclei.calibration
    assert retina.kind == "widths" and 1 <= retina.size < 6


def test_rescaled_blocks_equal_the_whole_rescaled_image():
    """The tiler reads the rescaled grid block by block (mirrored index arrays at borders
    included): every block is the same region of the whole rescaled image."""
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 61, 47)).astype(np.float32)
    for factor in (0.37, 0.5, 1.6, 3.0):
        source = RescaledSource(PreparedSource(image), factor)
        whole = rescale_image(image, factor)
        assert whole.shape[1:] == source.shape == tuple(round(n * factor) for n in (61, 47))
        h, w = source.shape
        block = source.read((slice(h // 3, h - 2), slice(1, w // 2)))
        np.testing.assert_allclose(block, whole[:, h // 3 : h - 2, 1 : w // 2], atol=1e-5)
        mirrored = (np.array([2, 1, 0, 1, 2]), np.arange(w - 3, w))
        np.testing.assert_allclose(
            source.read(mirrored), whole[:, [2, 1, 0, 1, 2]][:, :, w - 3 :], atol=1e-5
        )


def test_rescaled_prediction_equals_predicting_a_rescaled_image_by_hand():
    """Segmenter on "x0.6": the image normalised, rescaled, predicted, and the probabilities
    brought back linearly to the image's grid, where the labels come from them."""
    torch.manual_seed(0)
    config = UNetConfig(depth=2, base_features=4)
    model = ModelFile(config, Preprocessing(), UNet(config).state_dict())
    image, _ = blobs(14, shape=(100, 90))
    result = Segmenter(model, device="cpu", precision="float32").predict(
        image, output="probabilities", object_size="x0.6", tile_size=32
    )
    assert result.scale.factors == (0.6, 0.6) and "rescaled x0.6" in result.scale.describe()
    assert result.labels.shape == image.shape
    assert result.probabilities.shape == (2, *image.shape)

    normalised = ImageSource(image, 2, Preprocessing(), 1).read((slice(None), slice(None)))
    small = rescale_image(normalised, 0.6)
    prob = np.zeros((2, *small.shape[1:]), np.float32)
    net = model.build()
    for _ in predict_tiled(net, PreparedSource(small), prob, precision="float32"):
        pass
    by_hand = to_original_grid(prob, image.shape, labels=False, leading=1)
    np.testing.assert_allclose(result.probabilities, by_hand, atol=1e-4)
    np.testing.assert_array_equal(result.labels, probabilities_to_labels(by_hand))


def test_instances_come_back_on_the_image_grid_with_their_ids():
    labels_small = np.zeros((10, 12), np.uint32)
    labels_small[2:5, 3:7] = 4
    labels_small[6:9, 8:11] = 9
    back = to_original_grid(labels_small, (25, 30), labels=True)
    assert back.shape == (25, 30) and set(np.unique(back)) == {0, 4, 9}


def _model_with_scale(size=12.0, calibration=1.0, pixel_size=None):
    config = UNetConfig(depth=2, base_features=4)
    scale = ObjectScale("objects", size, size * 0.8, size * 1.2, 40, calibration, pixel_size, None)
    return ModelFile(config, Preprocessing(), UNet(config).state_dict(), scale=scale)


def test_overrides_native_factor_size_and_pixel_sizes():
    model = _model_with_scale(12.0, pixel_size=(0.5, 0.5))
    image, _ = blobs(24, shape=(128, 128))
    source = ImageSource(image, 2, Preprocessing(), 1)
    assert choose_scale(model.scale, source, "native").native
    assert choose_scale(model.scale, source, "x2").factors == (2.0, 2.0)
    by_size = choose_scale(model.scale, source, "36")  # 3x the model's size: shrink
    assert by_size.how == "given" and by_size.found == 36 and by_size.factor < 0.45
    assert choose_scale(model.scale, source, "12").native  # what the model knows
    # An image at 0.25 um per pixel for a model at 0.5: halve it.
    by_pixels = choose_scale(model.scale, source, "auto", pixel_size=(0.25, 0.25))
    assert by_pixels.how == "pixel sizes" and by_pixels.factors == (0.5, 0.5)
    anisotropic = choose_scale(
        ObjectScale("objects", 8, 6, 10, 9, None, (2.0, 0.5, 0.5), "micrometer"),
        ImageSource(np.zeros((8, 32, 32), np.float32), 3, Preprocessing(), 1),
        "auto",
        pixel_size=(1.0, 0.25, 0.25),
    )
    assert anisotropic.factors == (0.5, 0.5, 0.5)
    unknown = _model_with_scale()
    unknown.scale = None
    with pytest.raises(UserInputError, match="give a factor"):
        choose_scale(None, source, 30.0)
    assert choose_scale(None, source, "auto").native


@pytest.mark.parametrize("bad", ["big", "x0", "x100", "-4", "nan", "0"])
def test_object_size_typos_are_refused(bad):
    with pytest.raises(UserInputError, match="object size"):
        parse_object_size(bad)


def test_auto_rescales_large_objects_to_the_model_and_checks_on_the_prediction():
    image, _ = blobs(12)
    calibration = measure_labels([blobs(12)[1]], "objects", [image[None]]).calibration
    model = _model_with_scale(12.0, calibration)
    big, _ = blobs(36, shape=(384, 384))
    choice = choose_scale(model.scale, ImageSource(big, 2, Preprocessing(), 1), "auto")
    assert choice.how == "estimated" and choice.found == pytest.approx(36, rel=0.2)
    assert 0.25 < choice.factor < 0.5
    # The prediction found objects of 30 px on the model's grid: too large, once more.
    again = refined(choice, 30.0, model.scale)
    assert again is not None and again.factor < choice.factor
    assert refined(choice, 12.5, model.scale) is None  # confirmed


def test_fragments_are_removed_by_default_in_model_units():
    from napari_unet.core.predict.inference import default_min_size

    model = _model_with_scale(12.0)
    assert default_min_size(model.scale, 2) == round(0.1 * np.pi * 36)
    assert default_min_size(None, 2) == 0


def test_the_bundled_model_segments_nuclei_three_times_larger_than_it_learnt():
    """Auto: whole objects with outlines that follow them (IoU with the true discs), where
    the image's own grid gives fragments."""
    from napari_unet.core.predict.instances import InstanceAccumulator

    image, truth = blobs(60, shape=(480, 480))
    segmenter = Segmenter("nuclei", device="cpu", precision="float32")
    scores = {}
    for mode in ("native", "auto"):
        result = segmenter.predict(image, output="instances", object_size=mode)
        assert result.labels.shape == truth.shape
        scores[mode] = InstanceAccumulator((0.5, 0.8)).add(result.labels, truth)
    assert scores["auto"][0.8]["f1"] > 0.9  # outlines within a few pixels of the discs'
    assert scores["native"][0.5]["f1"] < scores["auto"][0.5]["f1"] - 0.2


def test_fine_tuning_brings_its_data_to_the_model_scale():
    """Labels of objects three times larger than the model learnt are rescaled before a
    fine-tune (and said so); data among the model's sizes are left alone."""
    from napari_unet.core import TrainConfig, Trainer

    config = UNetConfig(depth=2, base_features=4, out_channels=3)
    scale = ObjectScale("objects", 12.0, 10.0, 14.0, 40, 1.0)
    base = ModelFile(
        config, Preprocessing(), UNet(config).state_dict(),
        class_names=["background", "interior", "boundary"], task={"kind": "instances", "boundary_width": 2},
        scale=scale,
    )  # fmt: skip
    image, labels = blobs(36, shape=(192, 192))
    pair = _pair(image, labels, base.task)
    settings = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=1, patch_size=32, val_fraction=0)
    trainer = Trainer([pair], base, settings)
    assert 0.3 < trainer.rescaled_by < 0.5
    assert trainer.train_pairs[0].spatial_shape == tuple(
        round(192 * trainer.rescaled_by) for _ in range(2)
    )
    assert "rescaled x" in trainer.validation_summary
    for _ in trainer.train():
        pass
    saved = trainer.model_file()
    assert saved.history["runs"][-1]["rescaled_to_model"] == trainer.rescaled_by
    assert saved.scale.size < 20  # the data were seen at (about) the model's scale
    same = Trainer([_pair(*blobs(12, shape=(96, 96)), base.task)], base, settings)
    assert same.rescaled_by == 1.0


def test_the_estimate_of_a_stack_looks_at_its_middle_slice():
    from napari_unet.core.predict.scale import estimate_image_scale

    image, labels = blobs(12)
    model = _model_with_scale(12.0, measure_labels([labels], "objects", [image[None]]).calibration)
    large, _ = blobs(36, shape=(384, 384))
    stack = np.stack([np.zeros_like(large), large, np.zeros_like(large)])
    choice, shape = estimate_image_scale(stack, model)
    assert shape == large.shape and choice.found == pytest.approx(36, rel=0.2)
