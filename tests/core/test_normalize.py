import numpy as np
import pytest

from napari_unet.core import ImageSource, Preprocessing, UserInputError
from napari_unet.core.data.normalize import channels_first, intensity_stats


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64])
def test_percentile_normalisation_maps_any_dtype_to_unit_range(dtype):
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 200, (64, 64)).astype(dtype) * (3 if dtype != np.uint8 else 1)
    source = ImageSource(raw, 2, Preprocessing(low=0, high=100), 1)
    block = source.read((slice(None), slice(None)))
    assert block.dtype == np.float32 and block.shape == (1, 64, 64)
    assert block.min() == pytest.approx(0) and block.max() == pytest.approx(1)


def test_channel_axis_guess_and_moves_are_views():
    rgb = np.zeros((40, 50, 3), np.uint8)
    view = channels_first(rgb, 2)
    assert view.shape == (3, 40, 50) and np.shares_memory(view, rgb)
    assert channels_first(np.zeros((2, 40, 50)), 2).shape == (2, 40, 50)
    assert channels_first(np.zeros((40, 50)), 2).shape == (1, 40, 50)
    assert channels_first(np.zeros((40, 3, 50)), 2, channel_axis=1).shape == (3, 40, 50)
    with pytest.raises(UserInputError, match="cannot tell which axis"):
        channels_first(np.zeros((40, 50, 60)), 2)
    with pytest.raises(UserInputError, match="expected a 2D image"):
        channels_first(np.zeros((2, 3, 40, 50)), 2)


def test_gray_mode_turns_colour_into_one_channel_and_rgba_loses_alpha():
    rgb = np.random.default_rng(0).integers(0, 255, (32, 32, 3)).astype(np.uint8)
    gray = ImageSource(rgb, 2, Preprocessing(channel_mode="gray"), 1).read(
        (slice(None), slice(None))
    )
    assert gray.shape == (1, 32, 32)
    rgba = np.concatenate([rgb, np.full((32, 32, 1), 255, np.uint8)], axis=-1)
    three = ImageSource(rgba, 2, Preprocessing(), 3).read((slice(None), slice(None)))
    assert three.shape == (3, 32, 32)


def test_single_mode_keeps_one_channel_and_says_when_it_is_missing():
    rgb = np.random.default_rng(0).integers(0, 255, (32, 32, 3)).astype(np.uint8)
    green = Preprocessing(channel_mode="single", channel=1)
    whole = (slice(None), slice(None))
    kept = ImageSource(rgb, 2, green, 1).read(whole)
    alone = ImageSource(rgb[..., 1], 2, Preprocessing(), 1).read(whole)
    np.testing.assert_array_equal(kept, alone)  # the green channel, normalised on its own
    assert Preprocessing.from_dict(green.to_dict()) == green  # stored in model files
    with pytest.raises(UserInputError, match=r"uses channel 1 .* has 1 channel"):
        ImageSource(rgb[..., 0], 2, green, 1)


def test_channel_mismatch_is_reported_before_any_work():
    with pytest.raises(UserInputError, match=r"expects 1 input channel.*has 3"):
        ImageSource(np.zeros((32, 32, 3), np.uint8), 2, Preprocessing(), 1)


def test_nan_or_inf_in_the_image_is_refused():
    image = np.ones((32, 32), np.float32)
    image[3, 4] = np.nan
    with pytest.raises(UserInputError, match="NaN or infinite"):
        ImageSource(image, 2, Preprocessing(), 1)


def test_statistics_of_a_large_image_come_from_a_subsample_and_agree():
    rng = np.random.default_rng(0)
    big = rng.normal(1000, 100, (2200, 2100)).astype(np.float32)
    offset, scale = intensity_stats(big[None], Preprocessing())
    exact = np.percentile(big, [1, 99.8])
    assert offset[0] == pytest.approx(exact[0], rel=0.01)
    assert offset[0] + scale[0] == pytest.approx(exact[1], rel=0.01)


def test_constant_channel_does_not_divide_by_zero():
    source = ImageSource(np.full((16, 16), 7, np.uint8), 2, Preprocessing(), 1)
    assert np.isfinite(source.read((slice(None), slice(None)))).all()


def test_checking_an_image_never_reads_it():
    from napari_unet.core.data.normalize import check_image_array

    class Lazy:  # as a zarr or dask array: shape and dtype known, reading is expensive
        shape, dtype, ndim = (16384, 16384), np.dtype(np.uint16), 2

        def __array__(self, *args, **kwargs):
            raise AssertionError("the whole image was read")

    check_image_array(Lazy())


def _dark_and_bright_nuclei():
    """The same disks as bright-on-dark (fluorescence) and dark-on-bright (brightfield)."""
    yy, xx = np.mgrid[:64, :64]
    disks = ((yy - 20) ** 2 + (xx - 20) ** 2 < 64) | ((yy - 44) ** 2 + (xx - 40) ** 2 < 64)
    noise = np.random.default_rng(0).normal(0, 3, (64, 64))
    dark = (20 + 180 * disks + noise).clip(0, 255).astype(np.uint8)
    return dark, (255 - dark.astype(np.int16)).astype(np.uint8)


def _read(image, prep):
    return ImageSource(image, 2, prep, 1).read((slice(None), slice(None)))[0]


def test_invert_turns_intensities_upside_down_and_auto_only_bright_backgrounds():
    dark, bright = _dark_and_bright_nuclei()
    plain = _read(dark, Preprocessing())
    assert np.allclose(_read(dark, Preprocessing(invert="yes")), 1 - plain, atol=1e-6)
    # "auto": the bright-background image reads as the dark one does, the dark one unchanged.
    auto = Preprocessing(invert="auto")
    assert np.array_equal(_read(dark, auto), plain)
    assert np.abs(_read(bright, auto) - plain).max() < 0.03  # percentiles of 1 and 99.8
    assert np.abs(_read(bright, Preprocessing()) - (1 - plain)).max() < 0.03


def test_auto_inversion_decides_once_per_image_on_all_channels():
    dark, bright = _dark_and_bright_nuclei()
    rgb = np.stack([bright, bright, bright // 2], axis=-1)  # H&E-like: bright background
    _, scale = intensity_stats(channels_first(rgb, 2), Preprocessing(invert="auto"))
    assert (scale < 0).all()
    gray = ImageSource(rgb, 2, Preprocessing(channel_mode="gray", invert="auto"), 1)
    block = gray.read((slice(None), slice(None)))[0]
    disks = dark > 100
    assert block[disks].mean() > block[~disks].mean() + 0.5  # nuclei now bright


def test_invert_settings_are_checked_and_old_files_read_as_not_inverted():
    with pytest.raises(UserInputError, match="invert must be one of"):
        Preprocessing(invert="maybe")
    with pytest.raises(UserInputError, match="needs a normalisation"):
        Preprocessing(invert="yes", norm="none")
    old = Preprocessing().to_dict()
    del old["invert"]
    assert Preprocessing.from_dict(old).invert == "no"
    assert Preprocessing.from_dict(Preprocessing(invert="auto").to_dict()).invert == "auto"


def test_auto_inversion_ignores_an_opaque_alpha_channel():
    _, bright = _dark_and_bright_nuclei()
    rgba = np.stack([bright, bright, bright, np.full_like(bright, 255)], axis=-1)
    _, scale = intensity_stats(channels_first(rgba, 2), Preprocessing(invert="auto"))
    assert (scale < 0).all()
    flat = np.zeros((32, 32), np.uint8)
    _, scale = intensity_stats(channels_first(flat, 2), Preprocessing(invert="auto"))
    assert (scale > 0).all()  # nothing to judge: left as it is
