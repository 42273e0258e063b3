"""Strokes that correct a prediction: the uncorrected rest counts as labelled."""

import numpy as np
import pytest
from skimage.draw import disk

from napari_unet.core import Preprocessing, UserInputError, prepare_pair
from napari_unet.core.predict.instances import BOUNDARY, INTERIOR, instance_targets
from napari_unet.core.train.corrections import correction_targets
from napari_unet.core.train.losses import IGNORE

TASK = {"kind": "instances", "boundary_width": 2}


def _prediction() -> np.ndarray:
    """Two predicted nuclei (1, 2) and a small false detection (3)."""
    labels = np.zeros((48, 64), np.uint16)
    for value, (r, c), radius in [(1, (12, 14), 6), (2, (12, 40), 6), (3, (36, 12), 3)]:
        rr, cc = disk((r, c), radius, shape=labels.shape)
        labels[rr, cc] = value
    return labels


def test_without_strokes_the_prediction_is_accepted_as_dense_instance_labels():
    prediction = _prediction()
    targets = correction_targets(prediction, np.zeros_like(prediction), task=TASK)
    np.testing.assert_array_equal(targets, instance_targets(prediction, 2))
    assert (targets == BOUNDARY).any() and not (targets == IGNORE).any()


def test_a_background_stroke_deletes_the_whole_object_it_touches():
    prediction = _prediction()
    strokes = np.zeros_like(prediction)
    strokes[36, 11:14] = 1  # across the middle of the false detection only
    targets = correction_targets(prediction, strokes, task=TASK)
    assert (targets[prediction == 3] == 0).all()  # every pixel of it, not just the stroke
    # The other objects are untouched.
    keep = (prediction == 1) | (prediction == 2)
    np.testing.assert_array_equal(targets[keep], instance_targets(prediction, 2)[keep])


def test_a_stroke_on_a_missed_object_trains_it_and_leaves_its_unseen_outline_unannotated():
    prediction = _prediction()
    strokes = np.zeros_like(prediction)
    strokes[36, 40:50] = 2  # a missed nucleus around (36, 45), 10 px across
    targets = correction_targets(prediction, strokes, task=TASK)
    assert (targets[36, 40:50] == INTERIOR).all()
    # Within half the stroke's length (5 px, plus a pixel) nothing is taught...
    assert (targets[31:42, 40:50][strokes[31:42, 40:50] == 0] == IGNORE).all()
    assert targets[36, 37] == IGNORE and targets[36, 52] == IGNORE
    # ...beyond it the accepted background is taught as it was.
    assert targets[36, 30] == 0 and targets[46, 45] == 0 and targets[24, 45] == 0
    assert targets[36, 55] == IGNORE and targets[36, 56] == 0  # 6 and 7 px from its end
    # Accepted objects are never blanked by a nearby stroke's margin.
    assert not (targets[prediction > 0] == IGNORE).any()


def test_an_object_stroke_inside_an_accepted_object_changes_nothing_around_it():
    prediction = _prediction()
    strokes = np.zeros_like(prediction)
    strokes[12, 10:18] = 2
    targets = correction_targets(prediction, strokes, task=TASK)
    assert not (targets == IGNORE).any()


def test_corrections_in_3d():
    prediction = np.zeros((12, 24, 24), np.uint16)
    prediction[3:8, 4:10, 4:10] = 1
    strokes = np.zeros_like(prediction)
    strokes[5, 6, 5:8] = 1  # deletes object 1
    strokes[6, 18, 14:20] = 2  # a missed object
    targets = correction_targets(prediction, strokes, task=TASK)
    assert (targets[prediction == 1] == 0).all()
    assert (targets[6, 18, 14:20] == INTERIOR).all()
    assert targets[6, 18, 12] == IGNORE and targets[6, 15, 17] == IGNORE
    assert targets[0, 0, 0] == 0


def test_semantic_corrections_delete_connected_regions_and_paint_classes():
    prediction = np.zeros((30, 30), np.uint8)
    prediction[2:10, 2:10] = 1
    prediction[20:28, 20:28] = 2
    strokes = np.zeros_like(prediction)
    strokes[5, 3:6] = 1  # the class-1 square is wrong
    strokes[15, 2:6] = 3  # a missed class-2 region
    targets = correction_targets(prediction, strokes, num_classes=3)
    assert (targets[2:10, 2:10] == 0).all()
    assert (targets[20:28, 20:28] == 2).all()
    assert (targets[15, 2:6] == 2).all() and targets[13, 4] == IGNORE
    with pytest.raises(UserInputError, match="stroke value 4"):
        correction_targets(prediction, strokes + (strokes > 0), num_classes=3)


def test_instance_strokes_above_object_are_refused():
    prediction = _prediction()
    strokes = np.zeros_like(prediction)
    strokes[0, 0] = 3
    with pytest.raises(UserInputError, match="1 = background, 2 = object"):
        correction_targets(prediction, strokes, task=TASK)


def test_mismatched_shapes_and_a_missing_prediction_are_clear_errors():
    prediction = _prediction()
    with pytest.raises(UserInputError, match=r"shape .* prediction they correct"):
        correction_targets(prediction, np.zeros((10, 10), np.uint8), task=TASK)
    image = np.random.default_rng(0).random(prediction.shape).astype(np.float32)
    with pytest.raises(UserInputError, match="no prediction was given"):
        prepare_pair(
            image,
            np.zeros_like(prediction),
            spatial_dims=2,
            preprocessing=Preprocessing(),
            label_mode="corrections",
            task=TASK,
        )


def test_prepare_pair_takes_corrections_of_a_prediction():
    prediction = _prediction()
    strokes = np.zeros_like(prediction)
    strokes[36, 11:14] = 1
    strokes[36, 40:50] = 2
    image = (prediction > 0).astype(np.float32)
    pair = prepare_pair(
        image,
        strokes,
        spatial_dims=2,
        preprocessing=Preprocessing(),
        label_mode="corrections",
        prediction=prediction,
        task=TASK,
    )
    np.testing.assert_array_equal(pair.targets, correction_targets(prediction, strokes, task=TASK))
    assert pair.instances is None  # the prediction is not ground truth to score against


def test_strokes_on_a_prediction_are_never_held_out_for_validation():
    """Their accepted rest would grade the model that predicted it on its own output."""
    from napari_unet.core import TrainConfig, Trainer, UNetConfig
    from napari_unet.core.train.data import split_for_validation

    prediction = _prediction()
    image = (prediction > 0).astype(np.float32)
    strokes = np.zeros_like(prediction)
    strokes[36, 11:14] = 1
    common = {"spatial_dims": 2, "preprocessing": Preprocessing(), "task": TASK}
    corrected = prepare_pair(
        image, strokes, label_mode="corrections", prediction=prediction, **common
    )
    dense = prepare_pair(image, prediction, **common)
    assert corrected.corrections and not dense.corrections

    train, val = split_for_validation([corrected, dense], 0.2)
    assert train[0] is corrected and len(val) == 1 and val[0].name.endswith("(validation part)")
    train, val = split_for_validation([corrected] * 5, 0.2)
    assert len(train) == 5 and val == []

    trainer = Trainer(
        [corrected],
        UNetConfig(depth=2, base_features=4, out_channels=3),
        TrainConfig(epochs=1, steps_per_epoch=1, batch_size=2, patch_size=32),
        task=TASK,
    )
    assert trainer.val_pairs == []
    assert "strokes on a prediction are not held out" in trainer.validation_summary


def test_blocks_of_a_stack_are_its_slices_with_strokes_and_one_image_is_always_one():
    from napari_unet.core.train.corrections import correction_blocks

    stack = np.random.default_rng(0).random((3, 16, 16)).astype(np.float32)
    prediction = np.zeros(stack.shape, np.uint16)
    prediction[:, 4:8, 4:8] = 1
    strokes = np.zeros_like(prediction)
    strokes[1, 0, :4] = 1
    blocks = correction_blocks(stack, strokes, prediction, spatial_dims=2)
    assert [index for index, *_ in blocks] == [(1,)]
    _, image, block_strokes, block_prediction = blocks[0]
    np.testing.assert_array_equal(image, stack[1])
    np.testing.assert_array_equal(block_strokes, strokes[1])
    np.testing.assert_array_equal(block_prediction, prediction[1])

    # A single image without a stroke: its prediction is accepted whole.
    (single,) = correction_blocks(stack[0], strokes[0], prediction[0], spatial_dims=2)
    assert single[0] == () and not single[2].any() and single[3].any()
    with pytest.raises(UserInputError, match="must match pixel for pixel"):
        correction_blocks(stack, strokes, prediction[:2], spatial_dims=2)
