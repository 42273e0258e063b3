"""Thin structures (vessels) sized by a fundus photograph's round field of view: the diameter
found at any magnification, the calibration a vessel model stores, and prediction rescaled by it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_unet.core import ModelFile, Preprocessing, Segmenter, UNet, UNetConfig, io
from napari_unet.core.data.field_of_view import field_of_view_diameter, source_field_of_view
from napari_unet.core.data.normalize import ImageSource
from napari_unet.core.data.object_size import ObjectScale
from napari_unet.core.predict.scale import choose_scale
from napari_unet.core.train.data import prepare_pair
from napari_unet.core.train.scale import measure_training_scale, to_model_scale

DRIVE = Path(__file__).resolve().parents[3] / "shared" / "data" / "drive" / "training"


def fundus(diameter: float, shape: tuple[int, int], width: float = 3, seed: int = 0):
    """An RGB picture of a lit disc of ``diameter`` (clipped by the picture's edges when larger)
    in a black frame, crossed by dark straight vessels ``width`` wide, and the vessels' mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.indices(shape, dtype=np.float32)
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= (diameter / 2) ** 2
    vessels = np.zeros(shape, bool)
    for angle in rng.uniform(0, np.pi, 6):
        distance = np.abs((yy - cy) * np.cos(angle) - (xx - cx) * np.sin(angle))
        vessels |= distance < width / 2
    vessels &= disc
    red = np.where(disc, 180.0, 4.0) - 70 * vessels
    image = np.stack([red, red * 0.5, red * 0.2], axis=-1)
    image = ndi.gaussian_filter(image, (0.7, 0.7, 0)) + rng.normal(0, 3, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), vessels.astype(np.uint8)


def test_the_field_of_view_is_measured_whole_clipped_and_never_made_up():
    image, _ = fundus(200, (256, 256))
    assert field_of_view_diameter(image.mean(axis=-1)) == pytest.approx(200, abs=3)
    clipped, _ = fundus(300, (220, 320))  # cut at the top and bottom, as HRF's pictures are
    assert field_of_view_diameter(clipped.mean(axis=-1)) == pytest.approx(300, abs=3)
    square = np.zeros((128, 128), np.float32)
    square[20:108, 20:108] = 1
    rng = np.random.default_rng(0)
    cells = ndi.gaussian_filter(rng.random((128, 128)) > 0.97, 2).astype(np.float32)
    for not_fundus in (square, cells, np.ones((64, 64)), rng.random((64, 64))):
        assert field_of_view_diameter(not_fundus) is None


def test_a_large_picture_is_measured_on_a_strided_view():
    image, _ = fundus(1900, (2000, 2100))
    source = ImageSource(image, 2, Preprocessing(), 3, channel_axis=-1)
    assert source_field_of_view(source) == pytest.approx(1900, rel=0.01)


def _pair(image, vessels):
    return prepare_pair(
        image, vessels, spatial_dims=2, preprocessing=Preprocessing(), in_channels=3,
        num_classes=2, task={"kind": "semantic"}, name="fundus",
    )  # fmt: skip


def test_a_vessel_model_stores_its_width_against_the_field_of_view():
    pairs = [_pair(*fundus(200, (240, 240), width=3, seed=s)) for s in range(2)]
    scale = measure_training_scale(pairs, {"kind": "semantic"})
    assert scale is not None and scale.kind == "widths"
    assert scale.calibration == pytest.approx(scale.size / 200, rel=0.03)


def _vessel_model(calibration: float | None) -> ModelFile:
    config = UNetConfig(depth=2, base_features=4, in_channels=3, out_channels=2)
    scale = ObjectScale("widths", 3.0, 2.0, 4.0, 500, calibration)
    return ModelFile(config, Preprocessing(), UNet(config).state_dict(), scale=scale)


def test_auto_rescales_by_the_field_of_view_and_says_when_there_is_none():
    model = _vessel_model(3.0 / 200)
    big, _ = fundus(600, (640, 640), width=9)
    choice = choose_scale(model.scale, ImageSource(big, 2, Preprocessing(), 3, -1), "auto")
    assert choice.how == "from the field of view"
    assert choice.found == pytest.approx(9, rel=0.03) and choice.factor == pytest.approx(
        1 / 3, rel=0.03
    )
    assert "structure width ~9" in choice.describe()
    same, _ = fundus(210, (240, 240))  # within 1.2x of the training pictures: no resampling
    assert choose_scale(model.scale, ImageSource(same, 2, Preprocessing(), 3, -1), "auto").native
    no_frame = np.full((128, 128, 3), 120, np.uint8)
    plain = choose_scale(model.scale, ImageSource(no_frame, 2, Preprocessing(), 3, -1), "auto")
    assert plain.native and "no round field of view" in plain.describe()
    uncalibrated = choose_scale(
        _vessel_model(None).scale, ImageSource(big, 2, Preprocessing(), 3, -1), "auto"
    )
    assert uncalibrated.native and "no size calibration" in uncalibrated.describe()


def test_fine_tuning_keeps_vessels_among_the_model_widths_on_their_grid():
    """A vessel tree's median width comes in skeleton steps: widths within the model's
    quartiles are not taken for another scale; three times the model's are."""
    model = _vessel_model(3.0 / 200)
    task = {"kind": "semantic"}
    same = [_pair(*fundus(200, (240, 240), width=4))]
    assert to_model_scale(same, task, model.scale)[1] == 1.0
    large = [_pair(*fundus(600, (640, 640), width=9))]
    pairs, factor = to_model_scale(large, task, model.scale)
    assert factor == pytest.approx(1 / 3, rel=0.15) and pairs[0].image.shape[-1] < 250


@pytest.mark.skipif(not DRIVE.is_dir(), reason="shared DRIVE data not present")
def test_the_bundled_retina_model_segments_a_fundus_photograph_twice_as_large():
    image = io.read_image(DRIVE / "images" / "21_training.tif")
    truth = io.read_labels(DRIVE / "1st_manual" / "21_manual1.gif") > 0
    fov = io.read_labels(DRIVE / "mask" / "21_training_mask.gif") > 0
    large = ndi.zoom(image, (2, 2, 1), order=1)
    segmenter = Segmenter("retina", device="cpu", precision="float32")
    scores = {}
    for mode in ("native", "auto"):
        result = segmenter.predict(large, object_size=mode)
        assert result.labels.shape == large.shape[:2]
        found = result.labels[::2, ::2] > 0
        scores[mode] = 2 * (found & truth & fov).sum() / ((found & fov).sum() + (truth & fov).sum())
        if mode == "auto":
            assert result.scale.how == "from the field of view"
            assert result.scale.factor == pytest.approx(0.5, rel=0.03)
    assert scores["auto"] > 0.78 and scores["native"] < scores["auto"] - 0.1
