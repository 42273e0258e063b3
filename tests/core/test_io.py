import numpy as np
import pytest
import tifffile
from tests.conftest import SHARED_DATA

from napari_unet.core import UserInputError, io


def test_reads_lzw_tiff_png_gif_and_jpeg(tmp_path):
    import imageio.v3 as iio

    rgb = np.random.default_rng(0).integers(0, 255, (30, 40, 3)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", rgb, compression="lzw")
    iio.imwrite(tmp_path / "b.png", rgb)
    iio.imwrite(tmp_path / "c.gif", rgb[..., 0])
    iio.imwrite(tmp_path / "d.jpg", rgb)
    np.testing.assert_array_equal(io.read_image(tmp_path / "a.tif"), rgb)
    np.testing.assert_array_equal(io.read_image(tmp_path / "b.png"), rgb)
    gif = io.read_labels(tmp_path / "c.gif")
    assert gif.shape == (30, 40)
    np.testing.assert_array_equal(gif, rgb[..., 0])
    assert io.read_image(tmp_path / "d.jpg").shape == (30, 40, 3)


def test_unreadable_and_missing_files(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(UserInputError, match="cannot read"):
        io.read_image(tmp_path / "bad.png")
    with pytest.raises(UserInputError, match="does not exist"):
        io.read_image(tmp_path / "none.tif")


def test_write_refuses_to_overwrite(tmp_path):
    io.write_image(tmp_path / "x.tif", np.zeros((4, 4), np.uint8))
    with pytest.raises(UserInputError, match="already exists"):
        io.write_image(tmp_path / "x.tif", np.ones((4, 4), np.uint8))
    io.write_image(tmp_path / "x.tif", np.ones((4, 4), np.uint8), overwrite=True)
    assert io.read_image(tmp_path / "x.tif").max() == 1


def _touch_images(folder, names):
    folder.mkdir()
    for name in names:
        tifffile.imwrite(folder / name, np.zeros((2, 2), np.uint8))


def test_pairs_by_stem_and_by_pattern(tmp_path):
    _touch_images(tmp_path / "img", ["a.tif", "b.tif"])
    _touch_images(tmp_path / "lab", ["a.tif", "b.tif"])
    assert [p.key for p in io.find_pairs(tmp_path / "img", tmp_path / "lab")] == ["a", "b"]
    _touch_images(tmp_path / "drive_img", ["21_training.tif", "22_training.tif"])
    _touch_images(tmp_path / "drive_lab", ["21_manual1.tif", "22_manual1.tif"])
    pairs = io.find_pairs(tmp_path / "drive_img", tmp_path / "drive_lab", pattern=r"^(\d+)_")
    assert [(p.image.name, p.labels.name) for p in pairs] == [
        ("21_training.tif", "21_manual1.tif"),
        ("22_training.tif", "22_manual1.tif"),
    ]


def test_unmatched_files_are_listed(tmp_path):
    _touch_images(tmp_path / "img", ["a.tif", "b.tif", "c.tif"])
    _touch_images(tmp_path / "lab", ["a.tif", "z.tif"])
    with pytest.raises(
        UserInputError,
        match=r"3 file\(s\) without a partner: image b.tif, image c.tif, labels z.tif",
    ):
        io.find_pairs(tmp_path / "img", tmp_path / "lab")


@pytest.mark.skipif(not (SHARED_DATA / "drive").is_dir(), reason="shared DRIVE data not available")
def test_reads_the_real_drive_files():
    training = SHARED_DATA / "drive" / "training"
    image = io.read_image(training / "images" / "21_training.tif")
    vessels = io.read_labels(training / "1st_manual" / "21_manual1.gif")
    fov = io.read_labels(training / "mask" / "21_training_mask.gif")
    assert image.shape == (584, 565, 3) and image.dtype == np.uint8
    assert vessels.shape == fov.shape == (584, 565)
    assert set(np.unique(vessels)) <= {0, 255} and set(np.unique(fov)) <= {0, 255}
    pairs = io.find_pairs(training / "images", training / "1st_manual", pattern=r"^(\d+)_")
    assert len(pairs) == 20
