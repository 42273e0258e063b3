"""OME-Zarr in and out: axes and pixel sizes from the metadata, labels as a new image or into
the input's labels/ group (NGFF labels), read back with the ome-zarr package."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from tests.conftest import disks_image

from napari_unet.core import UserInputError, io

pytest.importorskip("ome_zarr")

from napari_unet.core.data.ome_zarr import (
    is_ome_zarr,
    read_ome_zarr,
    write_labels_into,
    write_ome_zarr,
)

UNITS = {"z": "micrometer", "y": "micrometer", "x": "micrometer"}


@pytest.fixture
def nuclei_stack(tmp_path):
    """A (c, z, y, x) OME-Zarr of disks: 2 channels, 3 slices, anisotropic pixels."""
    planes = [disks_image(shape=(80, 96), seed=s)[0] for s in range(3)]
    data = np.stack([np.stack(planes), np.stack(planes[::-1])]).astype(np.uint16)
    path = write_ome_zarr(
        tmp_path / "cells.ome.zarr", data, ["c", "z", "y", "x"], [1.0, 2.5, 0.4, 0.4], UNITS
    )
    return path, data


def test_read_gives_level_zero_lazily_with_axes_and_scale(nuclei_stack):
    path, data = nuclei_stack
    assert is_ome_zarr(path) and io.is_image_file(path)
    image = read_ome_zarr(path)
    assert image.axes == ["c", "z", "y", "x"] and image.channel_axis == 0
    assert image.scale == [1.0, 2.5, 0.4, 0.4] and image.units == UNITS
    assert not isinstance(image.data, np.ndarray)  # lazy: read tile by tile
    np.testing.assert_array_equal(np.asarray(image.data), data)
    np.testing.assert_array_equal(np.asarray(io.read_image(path)), data)


def test_labels_into_the_input_follow_the_ngff_convention(nuclei_stack):
    path, data = nuclei_stack
    image = read_ome_zarr(path)
    labels = (data[0] > 400).astype(np.uint32)
    target = write_labels_into(image, labels)
    listing = json.loads((path / "labels" / "zarr.json").read_text())["attributes"]["ome"]
    assert listing["labels"] == ["napari-unet"]
    back = read_ome_zarr(target)
    assert back.axes == ["z", "y", "x"] and back.scale == [2.5, 0.4, 0.4]
    np.testing.assert_array_equal(np.asarray(back.data), labels)
    meta = json.loads((target / "zarr.json").read_text())["attributes"]["ome"]
    assert "image-label" in meta
    with pytest.raises(UserInputError, match="--overwrite"):
        write_labels_into(image, labels)  # the user's earlier labels are not replaced silently
    write_labels_into(image, labels * 2, overwrite=True)
    assert int(np.asarray(read_ome_zarr(target).data).max()) == 2


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "napari_unet.cli", *args], capture_output=True, text=True
    )


@pytest.mark.slow
@pytest.mark.numerics
def test_cli_predicts_ome_zarr_to_ome_zarr(nuclei_stack, tmp_path):
    path, data = nuclei_stack
    done = _cli(
        "predict", str(path), "--model", "nuclei", "--out", str(tmp_path / "out"),
        "--format", "ome-zarr", "--probabilities", "--device", "cpu", "--object-size", "native",
        "--min-size", "0",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "no parent" not in done.stderr
    labels = read_ome_zarr(tmp_path / "out" / "cells_labels.ome.zarr")
    assert labels.axes == ["z", "y", "x"] and labels.scale == [2.5, 0.4, 0.4]
    assert labels.units == UNITS and labels.data.shape == data.shape[1:]
    assert int(np.asarray(labels.data[0]).max()) >= 4  # nuclei found in each slice
    prob = read_ome_zarr(tmp_path / "out" / "cells_probabilities.ome.zarr")
    assert prob.axes == ["c", "z", "y", "x"] and prob.data.shape == (3, *data.shape[1:])
    total = np.asarray(prob.data).sum(axis=0)
    np.testing.assert_allclose(total, 1.0, atol=1e-4)  # softmax over the 3 classes
    # Into the input's labels/ group, refusing to replace it without --overwrite.
    into = ("predict", str(path), "--model", "nuclei", "--out", str(tmp_path / "o2"),
            "--into-input", "--device", "cpu")  # fmt: skip
    assert _cli(*into).returncode == 0
    again = _cli(*into)
    assert again.returncode != 0 and "--overwrite" in again.stderr
    assert read_ome_zarr(path / "labels" / "napari-unet").data.shape == data.shape[1:]


def test_into_input_refuses_plain_images(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "a.tif", disks_image()[0])
    done = _cli("predict", str(tmp_path / "a.tif"), "--model", "nuclei", "--out", str(tmp_path / "o"),
                "--into-input")  # fmt: skip
    assert done.returncode != 0 and "OME-Zarr" in done.stderr and "Traceback" not in done.stderr


def test_predict_reads_pixel_sizes_from_ome_zarr(tmp_path, capsys):
    """A model that knows its pixel size (0.5 um) on an OME-Zarr image at 0.25 um: the image
    is predicted at half its size, said as coming from the pixel sizes."""
    import torch

    from napari_unet.cli import main
    from napari_unet.core import ModelFile, Preprocessing, UNet, UNetConfig, save_model
    from napari_unet.core.data.object_size import ObjectScale

    config = UNetConfig(depth=2, base_features=4)
    torch.manual_seed(0)
    scale = ObjectScale("objects", 12, 10, 14, 30, 1.0, (0.5, 0.5), "micrometer")
    model = save_model(
        ModelFile(config, Preprocessing(), UNet(config).state_dict(), scale=scale),
        tmp_path / "m.pt",
    )
    image, _ = disks_image(shape=(96, 96))
    path = write_ome_zarr(tmp_path / "fine.ome.zarr", image, ["y", "x"], [0.25, 0.25])
    out = tmp_path / "out"
    assert main(["predict", "--model", str(model), "--out", str(out), str(path)]) == 0
    labels = io.read_labels(out / "fine_labels.tif")
    assert labels.shape == image.shape
    printed = capsys.readouterr().err
    assert "(pixel sizes)" in printed and "rescaled x0.5" in printed
