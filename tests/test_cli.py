"""The command line end to end on a temporary folder, and one clear line per bad input."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch
from tests.conftest import disks_image

from napari_unet.cli import main
from napari_unet.core import load_model

pytestmark = pytest.mark.numerics  # trains or predicts: run in both precisions

ONE_QUICK_EPOCH = ["--epochs", "1", "--steps-per-epoch", "2", "--val-fraction", "0"]
TINY = [
    "--depth",
    "2",
    "--base-features",
    "4",
    "--batch-size",
    "2",
    "--patch-size",
    "48",
    "--lr",
    "0.01",
]


@pytest.fixture
def dataset(tmp_path):
    for split, seeds in (("train", (0, 1, 2)), ("val", (3,))):
        (tmp_path / split / "images").mkdir(parents=True)
        (tmp_path / split / "labels").mkdir(parents=True)
        for seed in seeds:
            image, labels = disks_image(seed=seed)
            tifffile.imwrite(
                tmp_path / split / "images" / f"img{seed}.tif", image, compression="lzw"
            )
            tifffile.imwrite(tmp_path / split / "labels" / f"img{seed}.tif", labels)
    return tmp_path


@pytest.fixture
def model(dataset):
    path = dataset / "model.pt"
    assert (
        main(
            [
                "train",
                "--images",
                str(dataset / "train/images"),
                "--labels",
                str(dataset / "train/labels"),
                "--out",
                str(path),
                "--epochs",
                "2",
                "--steps-per-epoch",
                "3",
                *TINY,
            ]
        )
        == 0
    )
    return path


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "expected an error message"
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def test_train_predict_evaluate_info_end_to_end(dataset, model, capsys):
    capsys.readouterr()
    assert main(["info", str(model)]) == 0
    info = capsys.readouterr().out
    assert "2D U-Net, depth 2" in info and "resumable:      yes" in info

    out = dataset / "pred"
    assert (
        main(
            [
                "predict",
                "--model",
                str(model),
                str(dataset / "val/images"),
                "--out",
                str(out),
                "--probabilities",
            ]
        )
        == 0
    )
    labels = tifffile.imread(out / "img3_labels.tif")
    prob = tifffile.imread(out / "img3_probabilities.tif")
    assert labels.shape == (96, 96) and prob.shape == (2, 96, 96)
    np.testing.assert_allclose(prob.sum(0), 1, atol=1e-5)

    report = dataset / "report.json"
    assert (
        main(
            [
                "evaluate",
                "--pred",
                str(out),
                "--truth",
                str(dataset / "val/labels"),
                "--json",
                str(report),
                "--csv",
                str(dataset / "report.csv"),
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "POOLED" in table and "auc" in table
    pooled = json.loads(report.read_text())["pooled"]["1"]
    assert 0 <= pooled["dice"] <= 1 and 0 <= pooled["auc"] <= 1
    assert (dataset / "report.csv").read_text().startswith("image,class,dice")


def test_resume_and_fine_tune_from_the_command_line(dataset, model, capsys):
    args = ["--images", str(dataset / "train/images"), "--labels", str(dataset / "train/labels")]
    assert main(["train", *args, "--resume", str(model), "--out", str(model), "--epochs", "3"]) == 0
    from napari_unet.core import load_model

    assert load_model(model).training_state["step"] == 9  # 2 epochs of 3 steps, then one more
    tuned = dataset / "tuned.pt"
    assert (
        main(
            [
                "train",
                *args,
                "--from",
                str(model),
                "--out",
                str(tuned),
                "--epochs",
                "1",
                "--steps-per-epoch",
                "2",
                "--zoom",
                "1.5",
            ]
        )
        == 0
    )
    assert len(load_model(tuned).history["runs"]) == 2
    assert load_model(tuned).training_state["train_config"]["zoom"] == 1.5
    # The fine-tune scored the model it started from before its first step.
    printed = capsys.readouterr()
    assert "starting model: val Dice " in printed.err
    bad_zoom = [
        "train",
        *args,
        "--from",
        str(model),
        "--out",
        str(dataset / "z.pt"),
        "--zoom",
        "0.5",
    ]
    assert main(bad_zoom) == 2
    assert "--zoom must be a number from 1 to 4, got 0.5" in _error_line(capsys)


def test_fine_tuning_can_change_how_a_model_reads_intensities(dataset, model, capsys):
    """--invert with --from: the fine-tuned file inverts; a resumed run may not change it."""
    from napari_unet.core import load_model

    args = ["--images", str(dataset / "train/images"), "--labels", str(dataset / "train/labels")]
    short = ["--epochs", "1", "--steps-per-epoch", "1"]
    tuned = dataset / "tuned.pt"
    assert main(["train", *args, "--from", str(model), "--out", str(tuned), "--invert", "auto", *short]) == 0  # fmt: skip
    assert load_model(tuned).preprocessing.invert == "auto"
    assert load_model(model).preprocessing.invert == "no"  # the starting model is untouched
    capsys.readouterr()
    argv = ["train", *args, "--resume", str(tuned), "--out", str(tuned), "--invert", "no"]
    assert main(argv) == 2
    assert "--invert no contradicts the --resume model (invert auto)" in _error_line(capsys)
    fresh = dataset / "fresh.pt"
    assert main(["train", *args, "--out", str(fresh), "--invert", "yes", *short, *TINY]) == 0
    assert load_model(fresh).preprocessing.invert == "yes"


def test_predict_never_overwrites_without_asking(dataset, model, capsys):
    out = dataset / "pred"
    argv = [
        "predict",
        "--model",
        str(model),
        str(dataset / "val/images/img3.tif"),
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    before = (out / "img3_labels.tif").stat().st_mtime_ns
    assert main(argv) == 2
    assert "--overwrite" in _error_line(capsys)
    assert (out / "img3_labels.tif").stat().st_mtime_ns == before
    assert main([*argv, "--overwrite"]) == 0


def test_predict_warns_when_forced_bfloat16_is_emulated(dataset, model, capsys, monkeypatch):
    from napari_unet.core.network import devices

    monkeypatch.setattr(devices, "cpu_has_fast_bfloat16", lambda: False)
    monkeypatch.setenv(devices.PRECISION_ENV, "bfloat16")
    image = str(dataset / "val/images/img3.tif")
    assert main(["predict", "--model", str(model), image, "--out", str(dataset / "bf16")]) == 0
    assert "bfloat16 is emulated on this CPU" in capsys.readouterr().err
    monkeypatch.setenv(devices.PRECISION_ENV, "float32")
    assert main(["predict", "--model", str(model), image, "--out", str(dataset / "f32")]) == 0
    assert "emulated" not in capsys.readouterr().err


def test_predict_reads_zarr_arrays_like_tiffs(dataset, model, tmp_path):
    zarr = pytest.importorskip("zarr")
    image = tifffile.imread(dataset / "val/images/img3.tif")
    stored = zarr.open_array(
        tmp_path / "in" / "img3.zarr",
        mode="w",
        shape=image.shape,
        chunks=(32, 32),
        dtype=image.dtype,
    )
    stored[:] = image
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    argv = ["predict", "--model", str(model), "--out"]
    assert main([*argv, str(tmp_path / "from_tif"), str(dataset / "val/images/img3.tif")]) == 0
    assert main([*argv, str(tmp_path / "from_zarr"), str(tmp_path / "in")]) == 0
    expected = tifffile.imread(tmp_path / "from_tif" / "img3_labels.tif")
    np.testing.assert_array_equal(
        tifffile.imread(tmp_path / "from_zarr" / "img3_labels.tif"), expected
    )


def test_predict_segments_a_stack_slice_by_slice_with_a_2d_model(dataset, tmp_path):
    names = ["train/images/img0.tif", "train/images/img1.tif", "val/images/img3.tif"]
    slices = [tifffile.imread(dataset / name) for name in names]
    tifffile.imwrite(tmp_path / "stack.tif", np.stack(slices))  # (Z, Y, X), Z = 3
    # One grid for both runs (auto would choose one factor for the stack, one per file)
    argv = ["predict", "--model", "nuclei", "--output", "instances", "--object-size", "x1.5"]
    assert main([*argv, "--out", str(tmp_path / "stack_out"), str(tmp_path / "stack.tif")]) == 0
    assert main([*argv, "--out", str(tmp_path / "one"), *(str(dataset / n) for n in names)]) == 0
    stack = tifffile.imread(tmp_path / "stack_out" / "stack_labels.tif")
    assert stack.shape == (3, *slices[0].shape)
    seen: set[int] = set()
    for z, name in enumerate(names):
        alone = tifffile.imread(
            tmp_path / "one" / name.split("/")[-1].replace(".tif", "_labels.tif")
        )
        np.testing.assert_array_equal(stack[z] > 0, alone > 0)
        ids = set(np.unique(stack[z])) - {0}
        assert len(ids) == alone.max() and not ids & seen  # object ids unique in the stack
        seen |= ids
    assert len(seen) > 3


def test_a_model_on_one_channel_of_colour_images(tmp_path, capsys):
    for name, seed in (("a", 0), ("b", 1)):
        image, labels = disks_image(seed=seed)
        noise = np.random.default_rng(seed).integers(0, 999, (*image.shape, 3)).astype(np.uint16)
        noise[..., 1] = image  # the objects only show in the green channel
        _write(tmp_path / "images" / f"{name}.tif", noise)
        _write(tmp_path / "labels" / f"{name}.tif", labels)
    model = tmp_path / "green.pt"
    argv = ["train", "--images", str(tmp_path / "images"), "--labels", str(tmp_path / "labels")]
    assert main([*argv, "--out", str(model), "--input-channel", "1", *ONE_QUICK_EPOCH, *TINY]) == 0
    capsys.readouterr()
    assert main(["info", str(model)]) == 0
    assert "1 channel(s), only channel 1 of the image" in capsys.readouterr().out
    out = tmp_path / "out"
    assert (
        main(["predict", "--model", str(model), str(tmp_path / "images"), "--out", str(out)]) == 0
    )
    assert tifffile.imread(out / "a_labels.tif").shape == disks_image(seed=0)[0].shape
    gray = tmp_path / "gray.tif"
    _write(gray, disks_image(seed=2)[0])
    assert main(["predict", "--model", str(model), str(gray), "--out", str(out)]) == 2
    assert "uses channel 1" in _error_line(capsys)
    both = [*argv, "--out", str(tmp_path / "x.pt"), "--gray", "--input-channel", "1"]
    assert main(both) == 2
    assert "exclude each other" in _error_line(capsys)


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "does not exist"),
        ("shape", "must match pixel for pixel"),
        ("float_labels", "floating point"),
        ("negative_labels", "negative values"),
        ("nan_image", "NaN or infinite"),
        ("unmatched", "without a partner"),
    ],
)
def test_bad_training_input_ends_with_one_clear_line(tmp_path, capsys, case, expected):
    image, labels = disks_image()
    images, label_dir = tmp_path / "images", tmp_path / "labels"
    if case != "missing":
        _write(images / "a.tif", image)
        bad = {
            "shape": labels[:50],
            "float_labels": labels.astype(np.float32),
            "negative_labels": labels.astype(np.int16) - 1,
        }.get(case, labels)
        if case == "nan_image":
            broken = image.astype(np.float32)
            broken[0, 0] = np.nan
            _write(images / "a.tif", broken)
        _write(label_dir / ("b.tif" if case == "unmatched" else "a.tif"), bad)
    code = main(
        [
            "train",
            "--images",
            str(images),
            "--labels",
            str(label_dir),
            "--out",
            str(tmp_path / "m.pt"),
            "--epochs",
            "1",
            *TINY,
        ]
    )
    assert code == 2
    line = _error_line(capsys)
    assert line.startswith("napari-unet: error:") and expected in line


def test_wrong_channel_count_and_unreadable_model(dataset, model, tmp_path, capsys):
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.zeros((64, 64, 3), np.uint8))
    assert main(["predict", "--model", str(model), str(rgb), "--out", str(tmp_path / "o")]) == 2
    assert "expects 1 input channel" in _error_line(capsys)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(model.read_bytes()[:1000])
    assert main(["predict", "--model", str(broken), str(rgb), "--out", str(tmp_path / "o")]) == 2
    assert "truncated or corrupt" in _error_line(capsys)
    assert main(["info", str(tmp_path / "nothing.pt")]) == 2
    assert "neither a file nor a bundled model" in _error_line(capsys)


def test_console_script_exit_status_and_single_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "napari_unet.cli",
            "predict",
            "--model",
            "nuclei",
            str(tmp_path / "missing.tif"),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "does not exist" in result.stderr


def test_multiclass_model_fine_tunes_without_repeating_classes(tmp_path, capsys):
    for sub in ("images", "labels"):
        (tmp_path / sub).mkdir()
    image, labels = disks_image()
    tifffile.imwrite(tmp_path / "images" / "a.tif", image)
    tifffile.imwrite(
        tmp_path / "labels" / "a.tif", (labels % 3).astype(np.uint8)
    )  # classes 0, 1, 2
    data = ["--images", str(tmp_path / "images"), "--labels", str(tmp_path / "labels")]
    assert (
        main(
            [
                "train",
                *data,
                "--classes",
                "3",
                "--out",
                str(tmp_path / "m.pt"),
                *ONE_QUICK_EPOCH,
                *TINY,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                *data,
                "--from",
                str(tmp_path / "m.pt"),
                "--out",
                str(tmp_path / "t.pt"),
                *ONE_QUICK_EPOCH,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                *data,
                "--from",
                str(tmp_path / "m.pt"),
                "--classes",
                "2",
                "--out",
                str(tmp_path / "u.pt"),
                "--epochs",
                "1",
            ]
        )
        == 2
    )
    assert "the model has 3 classes but --classes 2" in _error_line(capsys)


def test_instance_model_from_the_command_line(dataset, capsys):
    out = dataset / "inst.pt"
    data = ["--images", str(dataset / "train/images"), "--labels", str(dataset / "train/labels")]
    assert (
        main(
            [
                "train",
                *data,
                "--instances",
                "--out",
                str(out),
                "--epochs",
                "2",
                "--steps-per-epoch",
                "3",
                *TINY,
            ]
        )
        == 0
    )
    assert "val F1@0.5" in capsys.readouterr().err  # progress on stderr, results on stdout
    assert main(["info", str(out)]) == 0
    assert "instances (boundary width 2" in capsys.readouterr().out
    pred = dataset / "objects"
    assert (
        main(
            [
                "predict",
                "--model",
                str(out),
                str(dataset / "val/images"),
                "--out",
                str(pred),
                "--output",
                "instances",
                "--seed-threshold",
                "0.4",
            ]
        )
        == 0
    )
    report = dataset / "objects.json"
    assert (
        main(
            [
                "evaluate",
                "--instances",
                "--pred",
                str(pred),
                "--truth",
                str(dataset / "val/labels"),
                "--json",
                str(report),
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "panoptic_quality" in table and "0.90" in table
    pooled = json.loads(report.read_text())["pooled"]["0.5"]
    assert pooled["tp"] + pooled["fn"] == 8  # the validation image holds 8 objects


def test_predict_output_follows_the_model_unless_told(dataset, model, capsys):
    image = str(dataset / "val/images/img3.tif")
    # The bundled instance model: one label per object, as the Segment widget gives.
    assert main(["predict", "--model", "nuclei", image, "--out", str(dataset / "nuc")]) == 0
    assert "output instances (suits the model" in capsys.readouterr().err
    objects = tifffile.imread(dataset / "nuc" / "img3_labels.tif")
    assert objects.max() >= 5 and len(np.unique(objects)) == objects.max() + 1
    # A one-class model: the mask and the probabilities, as the widget's probability output.
    assert main(["predict", "--model", str(model), image, "--out", str(dataset / "bin")]) == 0
    mask = tifffile.imread(dataset / "bin" / "img3_labels.tif")
    prob = tifffile.imread(dataset / "bin" / "img3_probabilities.tif")
    assert set(np.unique(mask)) <= {0, 1} and prob.shape == (2, *mask.shape)
    np.testing.assert_array_equal(mask, (prob[1] > 0.5).astype(mask.dtype))
    # An explicit choice wins: the class map only.
    argv = ["predict", "--model", "nuclei", image, "--out", str(dataset / "sem")]
    assert main([*argv, "--output", "semantic"]) == 0
    assert set(np.unique(tifffile.imread(dataset / "sem" / "img3_labels.tif"))) <= {0, 1, 2}
    assert not (dataset / "sem" / "img3_probabilities.tif").exists()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--gray"], "--gray contradicts the --from model, which reads the image's channels"),
        (["--input-channel", "1"], "--input-channel 1 contradicts the --from model"),
        (["--depth", "3"], "--depth 3 contradicts the --from model (depth 2)"),
        (["--norm", "group"], "--norm group contradicts the --from model (norm batch)"),
        (["--3d"], "--3d contradicts the --from model, which is 2D"),
    ],
)
def test_fine_tuning_refuses_options_that_contradict_the_model(
    dataset, model, capsys, option, message
):
    argv = ["train", "--images", str(dataset / "train/images"), "--labels"]
    argv += [str(dataset / "train/labels"), "--from", str(model), "--out", str(dataset / "t.pt")]
    capsys.readouterr()
    assert main([*argv, *option]) == 2
    assert message in _error_line(capsys)
    assert not (dataset / "t.pt").exists()
    # What agrees with the model is accepted.
    assert main([*argv, "--depth", "2", "--epochs", "1", "--steps-per-epoch", "1"]) == 0


def test_diverging_training_ends_with_one_line_and_saves_finite_weights(dataset, capsys):
    out = dataset / "diverged.pt"
    argv = ["train", "--images", str(dataset / "train/images"), "--labels"]
    argv += [str(dataset / "train/labels"), "--out", str(out), *TINY, "--norm", "none"]
    assert main([*argv, "--lr", "10000", "--epochs", "2", "--steps-per-epoch", "3"]) == 2
    line = _error_line(capsys)
    assert line.startswith("napari-unet: error: training diverged") and str(out) in line
    from napari_unet.core import load_model

    model = load_model(out)
    assert all(torch.isfinite(v).all() for v in model.weights.values() if v.is_floating_point())


@pytest.mark.slow
def test_a_time_budget_plans_what_was_left_open_and_info_shows_it(dataset, capsys):
    images, labels = str(dataset / "train/images"), str(dataset / "train/labels")
    out = dataset / "planned.pt"
    budget = ["--minutes", "0.1", "--val-fraction", "0"]
    common = ["train", "--images", images, "--labels", labels, *budget]
    assert main([*common, "--out", str(out), "--base-features", "4"]) == 0
    err = capsys.readouterr().err
    assert "plan for 0.1 min" in err and "base 4" in err
    run = load_model(out).history["runs"][-1]
    assert run["plan"]["fixed"] == {"base_features": 4}
    assert run["plan"]["patch_size"] == 96  # the images are 96 px: no larger patch
    assert run["config"]["max_minutes"] < 0.1  # planning came out of the budget
    assert main(["info", str(out)]) == 0
    assert "planned:" in capsys.readouterr().out

    for options in (TINY, ["--no-plan"]):  # everything given, or planning declined
        assert main([*common, "--out", str(out), "--overwrite", *options]) == 0
        assert "plan for" not in capsys.readouterr().err
        assert "plan" not in load_model(out).history["runs"][-1]


def test_the_papers_valid_unet_from_the_command_line(dataset, capsys, tmp_path):
    out = tmp_path / "valid.pt"
    command = ["train", "--images", str(dataset / "train/images"), "--labels",
               str(dataset / "train/labels"), "--out", str(out), "--padding", "valid",
               *ONE_QUICK_EPOCH, *TINY]  # fmt: skip
    assert main(command) == 0
    assert load_model(out).config.padding == "valid"
    assert main(["info", str(out)]) == 0
    assert "valid padding (the paper's geometry: 20 px margin)" in capsys.readouterr().out
    masks = tmp_path / "masks"
    assert main(["predict", "--model", str(out), str(dataset / "val/images"), "--out",
                 str(masks)]) == 0  # fmt: skip
    assert tifffile.imread(next(masks.iterdir())).shape == (96, 96)
    assert main(["export", str(out), str(tmp_path / "valid.onnx"), "--format", "onnx"]) != 0
    assert "cannot export a valid-padding" in _error_line(capsys)


def test_strokes_correcting_predictions_fine_tune_from_the_command_line(dataset, model, capsys):
    """predict, paint strokes on a few errors, train on the strokes with the rest accepted."""
    train = dataset / "train"
    predictions = dataset / "pred-train"
    assert main(["predict", "--model", str(model), str(train / "images"), "--out", str(predictions)]) == 0  # fmt: skip
    strokes_dir = dataset / "strokes"
    strokes_dir.mkdir()
    for seed in (0, 1, 2):
        strokes = np.zeros((96, 96), np.uint8)
        strokes[0, :8] = 1  # one background stroke: the rest of the prediction stands
        tifffile.imwrite(strokes_dir / f"img{seed}.tif", strokes)
    tuned = dataset / "corrected.pt"
    args = ["train", "--images", str(train / "images"), "--labels", str(strokes_dir)]
    short = ["--epochs", "1", "--steps-per-epoch", "2", "--out", str(tuned)]
    assert main([*args, "--label-mode", "corrections", "--predictions", str(predictions), "--from", str(model), *short]) == 0  # fmt: skip
    assert load_model(tuned).training_state["step"] == 2
    assert "strokes on a prediction are not held out" in capsys.readouterr().err
    # Validation images given apart are complete labels, read as dense.
    val = ["--val-images", str(dataset / "val/images"), "--val-labels", str(dataset / "val/labels")]
    assert main([*args, "--label-mode", "corrections", "--predictions", str(predictions), "--from", str(model), *short, *val, "--overwrite"]) == 0  # fmt: skip
    assert "starting model: val Dice " in capsys.readouterr().err

    capsys.readouterr()
    assert main([*args, "--label-mode", "corrections", "--from", str(model), *short, "--overwrite"]) == 2  # fmt: skip
    assert "--label-mode corrections needs --predictions FOLDER" in _error_line(capsys)
    (predictions / "img2_labels.tif").unlink()
    assert main([*args, "--label-mode", "corrections", "--predictions", str(predictions), "--from", str(model), *short, "--overwrite"]) == 2  # fmt: skip
    assert "no prediction for img2.tif" in _error_line(capsys)


def test_object_size_on_the_command_line(dataset, model, capsys):
    """Training stored the disks' size; info shows it; predict says what it found and did,
    writes labels on the image's grid, and refuses a size it cannot read."""
    capsys.readouterr()
    assert main(["info", str(model)]) == 0
    info = capsys.readouterr().out
    found = re.search(r"trained scale:  median object diameter ([\d.]+) px", info)
    assert found and 10 < float(found.group(1)) < 13  # disks of radius 6
    image = dataset / "val" / "images" / "img3.tif"
    out = dataset / "scaled"
    argv = ["predict", "--model", str(model), "--out", str(out), str(image)]
    assert main([*argv, "--object-size", "x0.5"]) == 0
    printed = capsys.readouterr().err
    assert "rescaled x0.5" in printed
    labels = tifffile.imread(out / "img3_labels.tif")
    assert labels.shape == tifffile.imread(image).shape
    assert main([*argv, "--overwrite", "--object-size", "native"]) == 0
    assert "native grid (as asked)" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--object-size", "huge"]) == 2
    assert "object size must be auto, native" in _error_line(capsys)


def test_predict_matches_objects_across_the_slices_of_a_stack(tmp_path, capsys):
    from skimage.draw import disk

    # Six slices of bright disks drifting 1 px per slice: each disk is one object in 3D.
    stack = np.full((6, 128, 128), 200, np.uint16)
    for z in range(6):
        for y, x in ((30, 30), (30, 90), (90, 40), (90, 95)):
            rr, cc = disk((y + z, x + z), 10, shape=stack.shape[1:])
            stack[z, rr, cc] = 2000
    tifffile.imwrite(tmp_path / "drift.tif", stack)
    argv = ["predict", "--model", "nuclei", "--output", "instances", "--object-size", "native"]
    assert main([*argv, "--out", str(tmp_path / "apart"), str(tmp_path / "drift.tif")]) == 0
    assert main([*argv, "--match-slices", "--out", str(tmp_path / "matched"),
                 str(tmp_path / "drift.tif")]) == 0  # fmt: skip
    apart = tifffile.imread(tmp_path / "apart" / "drift_labels.tif")
    matched = tifffile.imread(tmp_path / "matched" / "drift_labels.tif")
    np.testing.assert_array_equal(apart > 0, matched > 0)
    assert len(np.unique(apart)) - 1 == 4 * 6  # ids per slice
    assert len(np.unique(matched)) - 1 == 4  # one id per disk through the stack
    assert main([*argv, "--match-slices", "0", "--out", str(tmp_path / "x"),
                 str(tmp_path / "drift.tif")]) == 2  # fmt: skip
    assert "overlap for matching objects across slices" in capsys.readouterr().err


def test_predict_warns_when_an_image_is_unlike_the_models_training_images(tmp_path, capsys):
    from skimage import data

    tifffile.imwrite(tmp_path / "fundus.tif", data.retina()[::4, ::4])
    assert main(["predict", "--model", "nuclei", "--out", str(tmp_path / "out"),
                 str(tmp_path / "fundus.tif")]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "fundus.tif: this looks like a fundus image, but the model learnt from" in err
