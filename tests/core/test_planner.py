"""Self-configuring training: the data's fingerprint, the choice of settings for a time budget,
and the plan stored in the model file."""

import numpy as np
import pytest
from tests.conftest import disks_image

from napari_unet.core import (
    Preprocessing,
    TrainConfig,
    Trainer,
    UNetConfig,
    load_model,
    prepare_pair,
    save_model,
)
from napari_unet.core.train.planner import (
    CANDIDATES,
    MIN_STEPS,
    describe_plan,
    fingerprint,
    plan_training,
    step_timer,
)


def _pair(image, labels, **kw):
    return prepare_pair(image, labels, spatial_dims=2, preprocessing=Preprocessing(), **kw)


def _disks(shape=(256, 256), radius=6, seed=0, n=8):
    image, labels = disks_image(shape=shape, radius=radius, seed=seed, n=n)
    return _pair(image, (labels > 0).astype(np.uint8))


class CostModel:
    """Step seconds proportional to width^2 x pixels: a device of a chosen speed, so that the
    choice itself can be checked exactly. (The real timer is tested below.)"""

    def __init__(self, seconds_for_base16_patch128: float):
        self.unit = seconds_for_base16_patch128
        self.calls = []

    def __call__(self, net, patch, batch):
        self.calls.append((net.base_features, patch, batch))
        return self.unit * (net.base_features / 16) ** 2 * (patch / 128) ** 2 * batch / 8


def test_fingerprint_measures_object_width_sparsity_and_foreground():
    image, labels = disks_image(shape=(128, 128), radius=6, n=5, seed=1)
    dense = _pair(image, (labels > 0).astype(np.uint8))
    data = fingerprint([dense])
    assert data.images == 1 and data.median_shape == (128, 128)
    assert data.objects == len(np.unique(labels)) - 1  # disks may overlap, never vanish
    assert 10 <= data.object_width <= 14  # radius 6: about 12 px across
    assert data.labelled_fraction == 1.0
    assert data.foreground_fraction == pytest.approx((labels > 0).mean(), rel=1e-6)

    half = (labels > 0).astype(np.int64)
    half[:, 64:] = 255  # the right half is not annotated
    sparse = fingerprint([_pair(image, half, ignore_value=255)])
    assert sparse.labelled_fraction == pytest.approx(0.5)


def test_fingerprint_keeps_touching_instances_apart():
    """Two touching squares are two objects of their own width, not one wider blob."""
    labels = np.zeros((64, 64), np.uint16)
    labels[10:30, 10:30] = 1
    labels[10:30, 30:50] = 2
    image = (labels > 0).astype(np.float32) * 100
    pair = prepare_pair(
        image,
        labels,
        spatial_dims=2,
        preprocessing=Preprocessing(),
        num_classes=3,
        task={"kind": "instances", "boundary_width": 1},
    )
    data = fingerprint([pair])
    assert data.objects == 2
    assert 16 <= data.object_width <= 21  # 20 px squares, not the 20 x 40 pair


def test_fingerprint_reports_3d_anisotropy():
    labels = np.zeros((12, 64, 64), np.uint8)
    labels[4:7, 10:30, 10:30] = 1  # 3 slices deep, 20 px across: a flat object
    image = labels.astype(np.float32) * 100
    pair = prepare_pair(image, labels, spatial_dims=3, preprocessing=Preprocessing())
    data = fingerprint([pair])
    assert data.extent == (3, 20, 20)
    assert data.anisotropy == pytest.approx(20 / 3)
    assert "anisotropy" in data.summary()


def test_a_fast_device_gets_the_most_capable_setting():
    pairs = [_disks(seed=s) for s in range(3)]
    plan = plan_training(pairs, UNetConfig(), 3, CostModel(0.001))
    assert (plan.base_features, plan.patch_size, plan.batch_size) == CANDIDATES[2][-1]
    assert plan.reason == "the most capable setting fits the budget"


def test_a_slow_device_gets_the_most_capable_setting_with_enough_steps():
    pairs = [_disks(seed=s) for s in range(3)]
    timer = CostModel(0.4)  # a 2-core CPU: base 16, 128 px patches, about 0.4 s a step
    plan = plan_training(pairs, UNetConfig(), 3, timer)
    assert (plan.base_features, plan.patch_size) == (16, 128)
    assert plan.expected_steps >= MIN_STEPS[2]
    # The next candidate costs 4 times as much: even twice as efficient per operation it would
    # take 0.8 s a step where 0.6 s is affordable, so it is not even timed.
    assert timer.calls == [(8, 128, 8), (16, 128, 8)]
    assert [m.base_features for m in plan.measured] == [8, 16]


def test_a_candidate_that_might_pass_is_measured_before_being_refused():
    pairs = [_disks(seed=s) for s in range(3)]
    timer = CostModel(0.25)  # the next one may take 0.5 s (affordable 0.6 s): it is timed (1 s)
    plan = plan_training(pairs, UNetConfig(), 3, timer)
    assert (plan.base_features, plan.patch_size) == (16, 128)
    assert timer.calls == [(8, 128, 8), (16, 128, 8), (16, 256, 8)]
    assert plan.reason.startswith("the most capable setting with at least")


def test_too_little_time_takes_the_cheapest_setting_and_says_so():
    pairs = [_disks()]
    plan = plan_training(pairs, UNetConfig(), 1, CostModel(5.0))
    assert (plan.base_features, plan.patch_size) == (8, 128)
    assert "give more time" in plan.reason


def test_explicit_settings_win_and_the_rest_is_planned():
    pairs = [_disks()]
    plan = plan_training(pairs, UNetConfig(), 3, CostModel(0.001), fixed={"base_features": 12})
    assert plan.base_features == 12 and plan.patch_size == 256
    assert plan.fixed == {"base_features": 12}
    everything = {"depth": 3, "base_features": 8, "patch_size": 64, "batch_size": 4}
    timer = CostModel(0.001)
    plan = plan_training(pairs, UNetConfig(), 3, timer, fixed=everything)
    assert (plan.depth, plan.base_features, plan.patch_size, plan.batch_size) == (3, 8, 64, 4)
    assert timer.calls == []  # one setting left: nothing to measure


def test_patches_fit_the_images_and_hold_large_objects():
    small = [_disks(shape=(96, 96))]
    plan = plan_training(small, UNetConfig(), 3, CostModel(0.001))
    assert plan.patch_size == 96  # the images are smaller than any candidate patch
    # Objects 50 px wide need patches of 4 widths: the 128 px candidates are not even timed.
    big = [_disks(shape=(400, 400), radius=25, n=4)]
    timer = CostModel(0.001)
    plan = plan_training(big, UNetConfig(), 3, timer)
    assert all(patch >= 200 for _, patch, _ in timer.calls)


def test_the_real_step_timer_trains_and_a_plan_is_stored_with_the_run(tmp_path):
    pairs = [_disks(shape=(96, 96))]
    config = TrainConfig(epochs=1, steps_per_epoch=2, val_fraction=0, device="cpu")
    timer = step_timer(pairs, config)
    seconds = timer(UNetConfig(depth=2, base_features=4), 48, 2)
    assert 0 < seconds < 10
    plan = plan_training(pairs, UNetConfig(depth=2), 0.2, timer)
    assert plan.measured and all(m.step_seconds > 0 for m in plan.measured)
    assert plan.planning_seconds < 0.2 * 60

    net = UNetConfig(depth=plan.depth, base_features=plan.base_features)
    trainer = Trainer(pairs, net, config, plan=plan.to_dict())
    for _ in trainer.train():
        pass
    path = save_model(trainer.model_file(), tmp_path / "m.pt")
    stored = load_model(path).history["runs"][-1]["plan"]  # plain data, loads without pickle
    assert stored["base_features"] == plan.base_features
    assert stored["fingerprint"]["objects"] == plan.fingerprint.objects
    text = describe_plan(stored)
    assert f"base {plan.base_features}" in text and "step times measured" in text

    # A resumed run keeps the plan of the run it continues.
    resumed = Trainer(pairs, load_model(path), resume=True)
    assert resumed.model_file().history["runs"][-1]["plan"] == stored
