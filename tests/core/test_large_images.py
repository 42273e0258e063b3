"""Large images: lazy reading of indexing-only arrays, and block-wise instance segmentation."""

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from napari_unet.core import InstanceAccumulator, Segmenter, io
from napari_unet.core.data.arrays import AxesView, add_leading_axis, moveaxis
from napari_unet.core.data.normalize import ImageSource
from napari_unet.core.data.object_size import VIEW_EDGE
from napari_unet.core.predict.inference import instances_from_foreground
from napari_unet.core.predict.scale import choose_scale

pytestmark = pytest.mark.numerics  # trains or predicts: run in both precisions

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "napari_unet" / "samples"


class IndexOnly:
    """An array that can only be indexed, like zarr or h5py, and records what was read."""

    def __init__(self, data: np.ndarray):
        self.data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.ndim = data.ndim
        self.largest_read = 0

    def __getitem__(self, key):
        block = self.data[key]
        self.largest_read = max(self.largest_read, block.size)
        return block.copy()


@pytest.mark.parametrize(
    "key",
    [
        (slice(None),),
        (1, slice(2, 5)),
        (slice(None), slice(1, 7, 2), 3),
        (Ellipsis, slice(0, 2)),
        (slice(0, 2), Ellipsis, 1),
        2,
    ],
)
def test_axes_view_indexes_like_numpy(key):
    data = np.arange(4 * 5 * 6 * 3).reshape(4, 5, 6, 3)
    view = moveaxis(IndexOnly(data), -1, 0)
    assert isinstance(view, AxesView)
    reference = np.moveaxis(data, -1, 0)
    assert view.shape == reference.shape
    np.testing.assert_array_equal(view[key], reference[key])
    expanded = add_leading_axis(IndexOnly(data))
    key = (slice(None), *(key if isinstance(key, tuple) else (key,)))
    np.testing.assert_array_equal(expanded[key], data[np.newaxis][key])
    np.testing.assert_array_equal(expanded[0, 1], data[1])


def test_axes_view_refuses_fancy_indexing():
    view = moveaxis(IndexOnly(np.zeros((3, 4))), 1, 0)
    with pytest.raises(IndexError, match="integers and slices"):
        view[np.array([0, 1])]


@pytest.fixture(scope="module")
def nuclei():
    image = io.read_image(SAMPLES / "nuclei.png")
    segmenter = Segmenter("nuclei", precision="float32")
    whole = segmenter.predict(image, output="instances", keep_probabilities=True)
    return image, segmenter, whole.labels


@pytest.mark.slow
def test_indexing_only_arrays_are_read_block_by_block(nuclei, monkeypatch):
    from napari_unet.core.data import normalize

    # As for a large image: intensity percentiles from a strided sample, not a whole read.
    monkeypatch.setattr(normalize, "_STATS_SAMPLE", 2**14)
    image, segmenter, _ = nuclei
    lazy = IndexOnly(image)
    native = {"tile_size": 128, "object_size": "native"}
    reference = segmenter.predict(image, **native).labels
    labels = segmenter.predict(lazy, **native).labels
    np.testing.assert_array_equal(labels, reference)
    assert lazy.largest_read < image.size / 2
    # The object size estimate reads one centre view, bounded whatever the image's size.
    auto = IndexOnly(image)
    segmenter.predict(auto, tile_size=128)
    assert auto.largest_read <= VIEW_EDGE[2] ** 2


@pytest.mark.slow
def test_zarr_and_dask_arrays_give_the_same_labels(nuclei, tmp_path):
    da = pytest.importorskip("dask.array")
    zarr = pytest.importorskip("zarr")
    image, segmenter, _ = nuclei
    reference = segmenter.predict(image, tile_size=256).labels
    stored = zarr.open_array(
        tmp_path / "image.zarr", mode="w", shape=image.shape, chunks=(128, 128), dtype=image.dtype
    )
    stored[:] = image
    for array in (stored, da.from_array(image, chunks=128)):
        np.testing.assert_array_equal(segmenter.predict(array, tile_size=256).labels, reference)


@pytest.mark.parametrize("block", [128, 200])
def test_block_wise_instances_equal_whole_image_instances(nuclei, block):
    image, segmenter, whole = nuclei
    assert whole.max() > 100
    blocks = segmenter.predict(image, output="instances", tile_size=block).labels
    assert blocks.dtype == np.uint32
    # Same objects, numbered 1..N, each found once though many straddle block edges.
    assert blocks.max() == whole.max() == len(np.unique(blocks)) - 1
    scores = InstanceAccumulator((0.5, 0.9)).add(blocks, whole)
    assert scores[0.9]["f1"] > 0.99
    assert ((blocks > 0) != (whole > 0)).mean() < 1e-3


def _numpy_peak(run):
    """Peak of numpy's allocations (torch's are not traced) while ``run()`` runs, and its result."""
    tracemalloc.start()
    try:
        result = run()
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_block_wise_instances_never_hold_whole_image_probabilities(nuclei):
    image, segmenter, _ = nuclei
    large = np.tile(image, (2, 2))  # 1040 x 1392
    # On the image's own grid (the estimate's own bounded memory is measured below).
    options = {"output": "instances", "tile_size": 256, "min_size": 10, "object_size": "native"}
    peak, labels = _numpy_peak(lambda: segmenter.predict(large, **options).labels)
    whole_peak, _ = _numpy_peak(
        lambda: segmenter.predict(large, keep_probabilities=True, **options).labels
    )
    assert labels.max() > 400
    assert np.bincount(labels.ravel())[1:].min() >= 10
    assert peak < 3 * large.size * 4  # less than the (3, H, W) float32 probabilities alone
    assert peak < 0.4 * whole_peak, (peak / 2**20, whole_peak / 2**20)
    source = ImageSource(large, 2, segmenter.model_file.preprocessing, 1)
    estimate_peak, _ = _numpy_peak(lambda: choose_scale(segmenter.scale, source, "auto"))
    assert estimate_peak < 48 * 2**20  # a few responses of one 512 x 512 view


def test_connected_components_are_numbered_in_place_with_min_size():
    foreground = np.zeros((600, 40), bool)
    foreground[10:12, 5:7] = True  # 4 pixels
    foreground[100:110, 5:15] = True  # 100 pixels
    foreground[500:520, 20:22] = True  # 40 pixels
    foreground[110, 15] = True  # touches the second diagonally: same object
    labels = instances_from_foreground(foreground, min_size=5)
    assert labels.dtype == np.uint32
    assert labels.max() == 2
    assert (labels == 1).sum() == 101 and (labels == 2).sum() == 40
    assert labels[10, 5] == 0
