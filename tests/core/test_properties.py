"""Property-based tests: invariants that must hold for any shape, dtype and tiling.

Bounded (a few dozen examples each, tiny networks) so the file runs in well under a minute.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tests.conftest import randomise_batchnorm
from tests.core.test_tiling import _whole_image

from napari_unet.core import (
    ImageSource,
    InstanceAccumulator,
    MetricAccumulator,
    ModelFile,
    Preprocessing,
    Segmenter,
    UNet,
    UNetConfig,
    UserInputError,
    io,
    predict_tiled,
    prepare_pair,
)
from napari_unet.core.data.normalize import intensity_stats

pytestmark = pytest.mark.numerics
FAST = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

_NETS: dict[tuple, UNet] = {}


def _net(config: UNetConfig) -> UNet:
    key = tuple(sorted(config.to_dict().items()))
    if key not in _NETS:
        torch.manual_seed(0)
        _NETS[key] = randomise_batchnorm(UNet(config))
    return _NETS[key]


@FAST
@given(
    depth=st.integers(1, 3),
    upsample=st.sampled_from(["transpose", "interpolate"]),
    height=st.integers(9, 90),
    width=st.integers(9, 90),
    tile=st.integers(8, 48),
    batch=st.integers(1, 3),
)
def test_exact_tiling_equals_the_whole_image_in_2d(depth, upsample, height, width, tile, batch):
    config = UNetConfig(depth=depth, base_features=4, upsample=upsample)
    net = _net(config)
    image = np.random.default_rng(height * width).random((height, width)).astype(np.float32)
    source = ImageSource(image, 2, Preprocessing(), 1)
    reference = _whole_image(net, source)
    tiled = np.zeros_like(reference)
    list(predict_tiled(net, source, tiled, tile_size=tile, halo="exact", batch_size=batch,
                       precision="float32"))  # fmt: skip
    assert np.abs(tiled - reference).max() < 1e-4


@settings(max_examples=10, deadline=None)
@given(shape=st.tuples(st.integers(5, 24), st.integers(5, 30), st.integers(5, 30)),
       tile=st.integers(4, 16))  # fmt: skip
def test_exact_tiling_equals_the_whole_image_in_3d(shape, tile):
    config = UNetConfig(spatial_dims=3, depth=2, base_features=2)
    net = _net(config)
    image = np.random.default_rng(sum(shape)).random(shape).astype(np.float32)
    source = ImageSource(image, 3, Preprocessing(), 1)
    reference = _whole_image(net, source)
    tiled = np.zeros_like(reference)
    list(predict_tiled(net, source, tiled, tile_size=tile, halo="exact", precision="float32"))
    assert np.abs(tiled - reference).max() < 1e-4


REAL_DTYPES = st.sampled_from(
    [np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64,
     np.float16, np.float32, np.float64]
)  # fmt: skip


@FAST
@given(
    dtype=REAL_DTYPES,
    shape=st.tuples(st.integers(2, 40), st.integers(2, 40)),
    scale=st.floats(0.5, 4.0),
    shift=st.integers(0, 20),
)
def test_percentile_normalisation_ignores_gain_and_offset(dtype, shape, scale, shift):
    rng = np.random.default_rng(shape[0] * 41 + shape[1])
    base = rng.integers(0, 50, shape).astype(np.float64)
    info = np.finfo(dtype) if np.dtype(dtype).kind == "f" else np.iinfo(dtype)
    brighter = base * scale + shift
    if brighter.max() > info.max:
        return
    a = ImageSource(base.astype(dtype), 2, Preprocessing(), 1).read((slice(None), slice(None)))
    b = ImageSource(brighter.astype(dtype), 2, Preprocessing(), 1).read((slice(None), slice(None)))
    assert a.dtype == np.float32 and np.isfinite(a).all() and np.isfinite(b).all()
    tolerance = 0.02 if np.dtype(dtype).itemsize <= 2 else 1e-3  # float16 rounding
    if np.dtype(dtype).kind in "iu":
        tolerance = 1.0 / max(1.0, scale)  # brighter values were rounded to integers
    assert np.abs(a - b).max() <= tolerance


@FAST
@given(
    data=hnp.arrays(
        dtype=REAL_DTYPES,
        shape=st.sampled_from([(7, 9), (1, 1), (3, 16, 12), (2, 5, 6, 4)]),
        elements={"allow_nan": False, "allow_infinity": False, "allow_subnormal": False},
    )
)
def test_tiff_round_trip_keeps_dtype_shape_and_values(tmp_path, data):
    path = io.write_image(tmp_path / "x.tif", data, overwrite=True)
    back = io.read_image(path)
    assert back.dtype == data.dtype and back.shape == data.shape
    np.testing.assert_array_equal(back, data)


@FAST
@given(
    truth=hnp.arrays(np.uint8, (12, 12), elements=st.integers(0, 2)),
    pred=hnp.arrays(np.uint8, (12, 12), elements=st.integers(0, 2)),
)
def test_pixel_metrics_are_symmetric_bounded_and_perfect_on_identity(truth, pred):
    forward = MetricAccumulator(3).add(pred, truth)
    backward = MetricAccumulator(3).add(truth, pred)
    for cls in ("1", "2"):
        dice = forward[cls]["dice"]
        assert np.isnan(dice) or 0 <= dice <= 1
        assert dice == pytest.approx(backward[cls]["dice"], nan_ok=True)
        assert forward[cls]["precision"] == pytest.approx(backward[cls]["sensitivity"], nan_ok=True)
    same = MetricAccumulator(3).add(truth, truth)
    for cls in ("1", "2"):
        if (truth == int(cls)).any():
            assert same[cls]["dice"] == 1.0


@FAST
@given(
    labels=hnp.arrays(np.uint16, (10, 10), elements=st.integers(0, 6)),
    seed=st.integers(0, 1000),
)
def test_object_matching_ignores_how_objects_are_numbered(labels, seed):
    ids = np.unique(labels)
    ids = ids[ids > 0]
    mapping = np.zeros(int(labels.max()) + 1, np.uint16)
    mapping[ids] = np.random.default_rng(seed).permutation(ids) + 100
    renumbered = mapping[labels]
    scores = InstanceAccumulator((0.5,)).add(renumbered, labels)[0.5]
    if len(ids):
        assert scores["f1"] == 1.0 and scores["mean_matched_iou"] == 1.0
    flipped = InstanceAccumulator((0.5,)).add(labels[::-1], labels)[0.5]["f1"]
    assert 0 <= flipped <= 1 if len(ids) else np.isnan(flipped)  # no objects: undefined


ANY_ARRAY = hnp.arrays(
    dtype=st.one_of(REAL_DTYPES, st.just(np.bool_), st.just(np.complex64), st.just(np.dtype("U1"))),
    shape=hnp.array_shapes(min_dims=0, max_dims=6, min_side=0, max_side=6),
)


@pytest.fixture(scope="module")
def tiny_segmenter():
    config = UNetConfig(depth=1, base_features=2)
    return Segmenter(ModelFile(config, Preprocessing(), UNet(config).state_dict()), device="cpu")


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(image=ANY_ARRAY, output=st.sampled_from(["semantic", "instances", "probabilities"]))
def test_any_array_is_segmented_or_refused_with_a_clear_error(tiny_segmenter, image, output):
    from napari_unet.core.predict.inference import iter_predict_stack, run_to_end

    for attempt in (
        lambda: tiny_segmenter.predict(image, output=output),
        lambda: run_to_end(iter_predict_stack(tiny_segmenter, image, output=output)),
        lambda: prepare_pair(
            image,
            np.zeros(np.shape(image)[:2], np.uint8),
            spatial_dims=2,
            preprocessing=Preprocessing(),
        ),
    ):
        try:
            attempt()
        except UserInputError as err:
            assert str(err) and "\n" not in str(err)


def test_flat_images_normalise_without_dividing_by_zero():
    for value in (0, 7, 65535):
        offset, scale = intensity_stats(np.full((1, 9, 9), value, np.uint16), Preprocessing())
        assert np.isfinite(offset).all() and (scale > 0).all()
