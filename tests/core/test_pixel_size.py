"""Pixel sizes from image files (ImageJ and OME TIFF, resolution tags) and napari layers,
in micrometres: recorded by training when its images share one, used by prediction."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from tests.conftest import disks_image
from tests.test_cli import TINY

from napari_unet.cli import main
from napari_unet.core import ModelFile, Preprocessing, UNet, UNetConfig, load_model, save_model
from napari_unet.core.data.object_size import ObjectScale
from napari_unet.core.data.pixel_size import common_pixel_size, file_pixel_size, in_micrometres


def _imagej(path, image, um, spacing=None):
    metadata = {"unit": "um", **({"spacing": spacing, "axes": "ZYX"} if spacing else {})}
    tifffile.imwrite(path, image, imagej=True, resolution=(1 / um, 1 / um), metadata=metadata)
    return path


def test_pixel_sizes_are_read_from_tiff_metadata_in_micrometres(tmp_path):
    volume = np.zeros((4, 16, 16), np.uint8)
    assert file_pixel_size(_imagej(tmp_path / "ij.tif", volume, 0.25, 2.0), 3) == (2.0, 0.25, 0.25)
    ome = {"axes": "ZYX", **{f"PhysicalSize{a}": 500 for a in "XYZ"}}
    ome |= {f"PhysicalSize{a}Unit": "nm" for a in "XYZ"}
    tifffile.imwrite(tmp_path / "ome.tif", volume, ome=True, metadata=ome)
    assert file_pixel_size(tmp_path / "ome.tif", 3) == (0.5, 0.5, 0.5)
    assert file_pixel_size(tmp_path / "ome.tif", 2) == (0.5, 0.5)
    cm = 1e4 / 0.65  # pixels per centimetre of a camera behind a 10x objective
    tifffile.imwrite(
        tmp_path / "cm.tif", volume[0], resolution=(cm, cm), resolutionunit="CENTIMETER"
    )
    assert file_pixel_size(tmp_path / "cm.tif", 2) == (0.65, 0.65)
    # What paint programs write into every file is a print setting, not a pixel size.
    tifffile.imwrite(tmp_path / "dpi.tif", volume[0], resolution=(72, 72), resolutionunit="INCH")
    tifffile.imwrite(tmp_path / "plain.tif", volume[0])
    (tmp_path / "a.png").write_bytes(b"not read")
    for unknown in ("dpi.tif", "plain.tif", "a.png", "missing.tif"):
        assert file_pixel_size(tmp_path / unknown, 2) is None
    assert file_pixel_size(tmp_path / "ij.tif", 3) is not None
    assert file_pixel_size(_imagej(tmp_path / "flat.tif", volume[0], 0.25), 3) is None  # no z


def test_units_and_shared_pixel_sizes():
    assert in_micrometres([250, 250], "nm") == (0.25, 0.25)
    assert in_micrometres([1, 1], "pixel") is None
    assert common_pixel_size([(0.5, 0.5), (0.501, 0.5)]) == (0.5005, 0.5)
    assert common_pixel_size([(0.5, 0.5), (0.25, 0.25)]) is None  # several scales: none
    assert common_pixel_size([(0.5, 0.5), None]) is None


def test_training_records_the_pixel_size_its_images_share(tmp_path):
    for folder in ("images", "labels", "mixed"):
        (tmp_path / folder).mkdir()
    for seed in (0, 1):
        image, labels = disks_image(seed=seed)
        _imagej(tmp_path / "images" / f"im{seed}.tif", image, 0.5)
        _imagej(tmp_path / "mixed" / f"im{seed}.tif", image, 0.5 + 0.5 * seed)
        tifffile.imwrite(tmp_path / "labels" / f"im{seed}.tif", labels)
    for images, expected in (("images", (0.5, 0.5)), ("mixed", None)):
        out = tmp_path / f"{images}.pt"
        args = ["train", "--images", str(tmp_path / images), "--labels", str(tmp_path / "labels")]
        assert (
            main([*args, "--out", str(out), "--epochs", "1", "--steps-per-epoch", "1", *TINY]) == 0
        )
        scale = load_model(out).scale
        assert scale is not None and scale.pixel_size == expected
        assert scale.unit == ("micrometer" if expected else None)


def test_prediction_rescales_a_tiff_by_the_pixel_sizes(tmp_path, capsys):
    """A model at 0.5 um per pixel, an ImageJ TIFF at 0.25: predicted at half its size."""
    config = UNetConfig(depth=2, base_features=4)
    torch.manual_seed(0)
    scale = ObjectScale("objects", 12, 10, 14, 30, 1.0, (0.5, 0.5), "micrometer")
    model = ModelFile(config, Preprocessing(), UNet(config).state_dict(), scale=scale)
    save_model(model, tmp_path / "m.pt")
    image, _ = disks_image(shape=(96, 96))
    path = _imagej(tmp_path / "fine.tif", image, 0.25)
    out = tmp_path / "out"
    assert main(["predict", "--model", str(tmp_path / "m.pt"), "--out", str(out), str(path)]) == 0
    printed = capsys.readouterr().err
    assert "(pixel sizes)" in printed and "rescaled x0.5" in printed


@pytest.mark.parametrize(
    ("scale", "units", "expected"),
    [
        ((0.2, 0.2), ("um", "um"), (0.2, 0.2)),
        ((200, 200), ("nm", "nm"), (0.2, 0.2)),
        ((0.3, 0.3), None, (0.3, 0.3)),  # a reader set the scale alone: micrometres
        ((1, 1), None, None),  # napari's default: nothing known
    ],
)
def test_a_layer_pixel_size_is_its_scale_in_its_units(scale, units, expected):
    from napari.layers import Image

    from napari_unet.core.data.pixel_size import layer_pixel_size

    layer = Image(np.zeros((4, 4)), scale=scale, **({"units": units} if units else {}))
    assert layer_pixel_size(layer, 2) == expected
