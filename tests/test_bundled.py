"""The bundled models and sample: what the README's first command runs."""

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_unet.cli import main
from napari_unet.core import Segmenter, bundled_models, load_model

pytestmark = pytest.mark.numerics  # trains or predicts: run in both precisions


def test_nuclei_model_is_bundled_small_and_safe():
    models = bundled_models()
    assert "nuclei" in models
    assert models["nuclei"].stat().st_size < 8e6
    model = load_model("nuclei")
    assert model.training_state is None and model.config.in_channels == 1
    assert model.preprocessing.channel_mode == "gray"  # colour images work too
    assert model.preprocessing.invert == "auto"  # dark nuclei on bright backgrounds too
    assert models["nuclei"].with_suffix(".md").is_file(), "every bundled model has a model card"


def test_demo_segments_the_sample_well(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "found" in out and "Dice" in out
    labels = tifffile.imread(tmp_path / "nuclei_labels.tif")
    assert labels.shape == (520, 696) and labels.max() > 100  # 168 nuclei in the ground truth
    dice = float(re.search(r"foreground Dice ([0-9.]+)", out).group(1))
    f1 = float(re.search(r"F1 ([0-9.]+)", out).group(1))
    assert dice > 0.85 and f1 > 0.5


def test_colour_input_runs_through_the_gray_model():
    rgb = np.random.default_rng(0).integers(0, 255, (64, 80, 3)).astype(np.uint8)
    assert Segmenter("nuclei", device="cpu").predict(rgb).labels.shape == (64, 80)


def test_info_lists_bundled_models(capsys):
    assert main(["info"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert "nuclei" in names and "retina" in names


DRIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "drive" / "training"


def test_retina_model_is_bundled_small_and_takes_colour():
    path = bundled_models()["retina"]
    assert path.stat().st_size < 8e6 and path.with_suffix(".md").is_file()
    model = load_model("retina")
    assert model.training_state is None and not model.is_instance_model
    assert model.config.in_channels == 3 and model.class_names[0] == "background"
    assert "research use" in path.with_suffix(".md").read_text()


@pytest.mark.skipif(not DRIVE.is_dir(), reason="needs ../shared/data/drive")
def test_retina_model_finds_vessels_on_a_drive_image(tmp_path, capsys):
    from napari_unet.core import MetricAccumulator, io

    image = DRIVE / "images" / "21_training.tif"
    assert main(["predict", "--model", "retina", str(image), "--out", str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())  # its default: mask + probability
    assert written == ["21_training_labels.tif", "21_training_probabilities.tif"]
    vessels = tifffile.imread(tmp_path / written[0])
    truth = (io.read_labels(DRIVE / "1st_manual" / "21_manual1.gif") > 0).astype(int)
    fov = io.read_labels(DRIVE / "mask" / "21_training_mask.gif") > 0
    scores = MetricAccumulator(2).add((vessels > 0).astype(int), truth, mask=fov)["1"]
    assert scores["dice"] > 0.75  # its training image: a sanity check, not a benchmark


DSB2018 = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018"


@pytest.mark.slow
@pytest.mark.skipif(not DSB2018.is_dir(), reason="needs ../shared/data/dsb2018")
def test_nuclei_model_finds_nuclei_in_h_and_e_and_brightfield_images():
    """The previous model found nothing in them (F1 0.000); the benchmark measures 0.60-0.65."""
    import json

    from napari_unet.core import io
    from napari_unet.core.predict.instances import InstanceAccumulator

    segmenter = Segmenter("nuclei", device="cpu")
    for kind in ("color", "bright_gray"):
        found = InstanceAccumulator((0.5,))
        for entry in json.loads((DSB2018 / "val" / "meta.json").read_text()):
            if entry["kind"] == kind:
                image = io.read_image(DSB2018 / "val" / "images" / f"{entry['id']}.png")
                truth = io.read_labels(DSB2018 / "val" / "labels" / f"{entry['id']}.png")
                labels = segmenter.predict(image, output="instances", min_size=10).labels
                found.add(labels, truth)
        assert found.pooled()[0.5]["f1"] > 0.5, kind
