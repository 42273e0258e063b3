import numpy as np
import pytest
import torch
from tests.conftest import randomise_batchnorm

from napari_unet.core import (
    ImageSource,
    Preprocessing,
    UNet,
    UNetConfig,
    UserInputError,
    predict_tiled,
)
from napari_unet.core.data.normalize import apply_stats
from napari_unet.core.predict.tiling import activation, plan_tiles, probabilities_to_labels

pytestmark = pytest.mark.numerics  # trains or predicts: run in both precisions


def _whole_image(net, source):
    x = torch.from_numpy(apply_stats(np.asarray(source.view), source.offset, source.scale))
    from napari_unet.core.data.normalize import select_channels

    x = torch.from_numpy(select_channels(x.numpy(), source.preprocessing, source.in_channels))[None]
    with torch.no_grad():
        return activation(net(x)).numpy()[0]


CASES = [
    # config, image shape, tile size
    (UNetConfig(depth=3, base_features=4), (301, 277), 64),
    (
        UNetConfig(depth=2, base_features=4, upsample="interpolate", in_channels=3, out_channels=3),
        (150, 99, 3),
        32,
    ),
    (UNetConfig(depth=2, base_features=4, norm="none", out_channels=1), (170, 145), 16),
    (UNetConfig(spatial_dims=3, depth=2, base_features=2), (37, 150, 41), 16),
    # The paper's geometry: overlap-tile with mirrored borders covers every pixel.
    (UNetConfig(depth=2, base_features=4, padding="valid"), (150, 123), 32),
    (UNetConfig(spatial_dims=3, depth=2, base_features=2, padding="valid"), (30, 70, 45), 16),
]


@pytest.mark.parametrize(("config", "shape", "tile"), CASES)
def test_tiled_prediction_equals_whole_image_prediction(config, shape, tile):
    net = randomise_batchnorm(UNet(config))
    image = (np.random.default_rng(0).random(shape) * 1000).astype(np.float32)
    source = ImageSource(image, config.spatial_dims, Preprocessing(), config.in_channels)
    reference = _whole_image(net, source)
    tiled = np.zeros_like(reference)
    progress = list(
        predict_tiled(net, source, tiled, tile_size=tile, batch_size=3, precision="float32")
    )
    assert progress[-1].done == progress[-1].total > 1, "the case must really be tiled"
    assert [p.done for p in progress] == sorted(p.done for p in progress)
    assert np.abs(tiled - reference).max() < 1e-4


@pytest.mark.parametrize(
    ("config", "shape", "region", "tile"),
    [
        (CASES[0][0], (301, 277), (slice(64, 200), slice(128, 277)), 64),
        (CASES[0][0], (301, 277), (slice(0, 40), slice(8, 30)), None),
        (CASES[3][0], (37, 150, 41), (slice(8, 37), slice(36, 100), slice(0, 41)), 16),
    ],
)
def test_region_prediction_equals_that_part_of_the_whole_image(config, shape, region, tile):
    net = randomise_batchnorm(UNet(config))
    image = (np.random.default_rng(3).random(shape) * 1000).astype(np.float32)
    source = ImageSource(image, config.spatial_dims, Preprocessing(), config.in_channels)
    reference = _whole_image(net, source)[(slice(None), *region)]
    part = np.zeros_like(reference)
    list(predict_tiled(net, source, part, tile_size=tile, region=region, precision="float32"))
    assert np.abs(part - reference).max() < 1e-4


def test_region_must_start_on_the_pooling_grid():
    net = UNet(UNetConfig(depth=3, base_features=4))
    source = ImageSource(np.zeros((64, 64), np.float32), 2, Preprocessing(), 1)
    with pytest.raises(ValueError, match="multiples of 8"):
        list(predict_tiled(net, source, np.zeros((2, 30, 64)), region=(slice(3, 33), slice(0, 64))))


def test_small_halo_with_blending_stays_close_and_covers_everything():
    config = UNetConfig(depth=3, base_features=4)
    net = randomise_batchnorm(UNet(config))
    image = np.random.default_rng(1).random((200, 180)).astype(np.float32)
    source = ImageSource(image, 2, Preprocessing(), 1)
    reference = _whole_image(net, source)
    blended = np.zeros_like(reference)
    list(predict_tiled(net, source, blended, tile_size=48, halo=16, blend=True))
    assert np.allclose(blended.sum(0), 1, atol=1e-5)  # still probabilities everywhere
    assert np.abs(blended - reference).max() < 0.05


def test_labels_output_matches_thresholded_probabilities():
    config = UNetConfig(depth=2, base_features=4)
    net = randomise_batchnorm(UNet(config))
    image = np.random.default_rng(2).random((90, 130)).astype(np.float32)
    source = ImageSource(image, 2, Preprocessing(), 1)
    prob = np.zeros((2, 90, 130), np.float32)
    list(predict_tiled(net, source, prob, tile_size=32))
    labels = np.zeros((90, 130), np.uint8)
    list(predict_tiled(net, source, labels, tile_size=32, output="labels"))
    np.testing.assert_array_equal(labels, probabilities_to_labels(prob))


def test_memory_mapped_input_is_read_tile_by_tile(tmp_path):
    config = UNetConfig(depth=2, base_features=4)
    net = randomise_batchnorm(UNet(config))
    data = np.random.default_rng(3).integers(0, 4000, (120, 140)).astype(np.uint16)
    mm = np.lib.format.open_memmap(
        tmp_path / "big.npy", mode="w+", dtype=np.uint16, shape=data.shape
    )
    mm[:] = data
    mm.flush()
    mapped = np.load(tmp_path / "big.npy", mmap_mode="r")
    out_mm = np.zeros((2, 120, 140), np.float32)
    out_ram = np.zeros_like(out_mm)
    list(predict_tiled(net, ImageSource(mapped, 2, Preprocessing(), 1), out_mm, tile_size=32))
    list(predict_tiled(net, ImageSource(data, 2, Preprocessing(), 1), out_ram, tile_size=32))
    np.testing.assert_array_equal(out_mm, out_ram)


def test_every_pixel_is_in_exactly_one_core():
    tiles, window = plan_tiles((100, 37), (32, 16), (16, 16), 16)
    cover = np.zeros((100, 37), int)
    for t in tiles:
        cover[t.core] += 1
        assert tuple(s.stop - s.start for s in t.window) == window
        assert all(w.start % 16 == 0 for w in t.window)
    assert (cover == 1).all()


def test_default_tiles_take_the_whole_image_when_it_fits_and_bound_the_window_otherwise():
    from napari_unet.core.predict.tiling import WINDOW_BUDGET, default_tile_size

    assert default_tile_size((1000, 700), (122, 122), 16) == (1008, 704)  # one window, no halo
    cores = default_tile_size((20000, 3000), (122, 122), 16)
    tiles, window = plan_tiles((20000, 3000), cores, (122, 122), 16)
    assert np.prod(window) <= WINDOW_BUDGET[2]
    # Windows of 1024^2 (memory) with 128-pixel halos: under twice the work of the image.
    assert len(tiles) * np.prod(window) < 2.0 * 20000 * 3000
    net = randomise_batchnorm(UNet(UNetConfig(depth=2, base_features=4)))
    source = ImageSource(np.random.default_rng(0).random((300, 200)), 2, Preprocessing(), 1)
    out = np.zeros((2, 300, 200), np.float32)
    progress = list(predict_tiled(net, source, out, batch_size=64))
    assert progress[-1].total == 1


def test_default_3d_tiles_take_short_axes_whole_and_cap_the_halo():
    from napari_unet.core.predict.tiling import WINDOW_BUDGET, default_tile_size, resolve_halo

    config3 = UNetConfig(spatial_dims=3, depth=3, base_features=16)
    assert resolve_halo("exact", config3) == (58,) * 3
    halo = resolve_halo("auto", config3)
    assert halo[0] <= 16  # exact 3D halos would leave tiny cores in budget-sized windows
    assert resolve_halo("auto", UNetConfig(depth=4)) == (122, 122)  # 2D stays exact
    for shape in [(128, 1024, 1024), (40, 2048, 2048), (300, 300, 300)]:
        cores = default_tile_size(shape, halo, 8)
        tiles, window = plan_tiles(shape, cores, halo, 8)
        assert np.prod(window) <= WINDOW_BUDGET[3]
        assert len(tiles) * np.prod(window) < 3.5 * np.prod(shape)  # MONAI's default: 2.4-4x
        if shape[0] <= 128:
            assert cores[0] == shape[0] == window[0]  # a short axis in one piece: no seams
    with pytest.raises(UserInputError, match="halo"):
        resolve_halo("big", config3)


class _RunsOutOfMemory(torch.nn.Module):
    """A real network that fails like a full GPU when given more than ``fits`` windows."""

    def __init__(self, net, fits):
        super().__init__()
        self.net, self.config, self.fits, self.batches = net, net.config, fits, []

    def forward(self, x):
        self.batches.append(x.shape[0])
        if x.shape[0] > self.fits:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.net(x)


def test_out_of_memory_halves_the_tile_batch_and_finishes():
    net = randomise_batchnorm(UNet(UNetConfig(depth=2, base_features=4)))
    source = ImageSource(np.random.default_rng(2).random((128, 96)), 2, Preprocessing(), 1)
    reference = np.zeros((2, 128, 96), np.float32)
    list(predict_tiled(net, source, reference, tile_size=32, precision="float32"))
    flaky = _RunsOutOfMemory(net, fits=1)
    out = np.zeros_like(reference)
    progress = list(
        predict_tiled(flaky, source, out, tile_size=32, batch_size=4, precision="float32")
    )
    assert flaky.batches[:3] == [4, 2, 1] and set(flaky.batches[3:]) == {1}
    assert progress[-1].done == progress[-1].total
    np.testing.assert_allclose(out, reference, atol=1e-6)
    with pytest.raises(UserInputError, match=r"out of memory .* smaller tile size"):
        list(predict_tiled(_RunsOutOfMemory(net, fits=0), source, out, tile_size=32))
