"""Our own hostile sweep beyond issue 24's cases: every numeric option's range, and paths,
names, links, sizes, encodings, signals, permissions and concurrent runs. Same shape as
tests/hostile_inputs.py (run by tests/test_bad_inputs.py in process and by
benchmarks/reliability.py as real processes).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
from tests.bad_inputs import _predict, _train, disks, tiny_model
from tests.hostile_inputs import Case, _evaluate, read_only_folder

# ------------------------------------------------------------------ every option's range

# (command, flag, limit name); the bases below give each command a working command line.
NUMERIC_OPTIONS = [
    *(("train", f, n) for f, n in (
        ("--epochs", "epochs"), ("--minutes", "max_minutes"), ("--steps-per-epoch", "steps_per_epoch"),
        ("--classes", "classes"), ("--ignore-value", "ignore_value"), ("--boundary-width", "boundary_width"),
        ("--channel-axis", "channel_axis"), ("--input-channel", "input_channel"), ("--depth", "depth"),
        ("--base-features", "base_features"), ("--dropout", "dropout"), ("--patch-size", "patch_size"),
        ("--batch-size", "batch_size"), ("--lr", "learning_rate"), ("--val-fraction", "val_fraction"),
        ("--zoom", "zoom"), ("--low-resolution", "low_resolution"), ("--seed", "seed"),
    )),
    *(("predict", f, n) for f, n in (
        ("--threshold", "threshold"), ("--min-size", "min_size"), ("--seed-threshold", "seed_threshold"),
        ("--channel-axis", "channel_axis"), ("--tile-size", "tile_size"), ("--batch-size", "predict_batch_size"),
        ("--block-size", "block_size"), ("--threads", "threads"),
    )),
    ("evaluate", "--classes", "evaluate_classes"),
    ("evaluate", "--threshold", "threshold"),
]  # fmt: skip

# Issue 24's own cases (tests/hostile_inputs.py) are not repeated here.
_ISSUE_CASES = {
    ("predict", "--threshold", "nan"), ("train", "--minutes", "nan"), ("train", "--lr", "nan"),
    ("train", "--lr", "inf"), ("train", "--classes", "0"), ("train", "--boundary-width", "-1"),
    ("predict", "--tile-size", "0"), ("predict", "--batch-size", "0"), ("train", "--batch-size", "0"),
    ("evaluate", "--classes", "-1"), ("train", "--seed", "-1"), ("train", "--val-fraction", "nan"),
}  # fmt: skip


def _base(command: str, flag: str):
    if command == "train" and flag == "--minutes":

        def build(tmp: Path) -> list[str]:
            argv = _train(tmp)
            at = argv.index("--epochs")
            return [*argv[:at], *argv[at + 2 :]]

        return build
    if command == "train":
        return lambda tmp: _train(tmp)
    if command == "predict":
        return lambda tmp: _predict(tmp, disks()[0])
    return lambda tmp: _evaluate(tmp, lambda _: [])


def _bad_values(limit) -> list[str]:
    """Values outside ``limit``: not finite, just below and just above, not a number, and a
    fraction for whole numbers."""

    def number(value: float) -> str:
        return str(int(value)) if limit.integer else repr(float(value))

    values = ["nan", "inf", "-inf"]
    if limit.low is not None:
        below = limit.low if limit.low_open else limit.low - (1 if limit.integer else 0.5)
        values.append(number(below))
    if limit.high is not None:
        above = limit.high if limit.high_open else limit.high + (1 if limit.integer else 0.5)
        values.append(number(above))
    values.append("abc")
    if limit.integer:
        values.append("1.5")
    return values


def _range_cases() -> list[Case]:
    from napari_unet.core.limits import LIMITS

    cases = []
    for command, flag, name in NUMERIC_OPTIONS:
        limit = LIMITS[name]
        for value in _bad_values(limit):
            if (command, flag, value) in _ISSUE_CASES:
                continue
            base = _base(command, flag)
            kind = "int" if limit.integer else "float"
            if value == "abc" or (limit.integer and value in ("1.5", "nan", "inf", "-inf")):
                expect = rf"argument {flag}: invalid {kind} value: '{value}'"
            else:
                expect = rf"{flag} must be (a whole number|a number) .*got {value}"
            cases.append(
                Case(
                    f"{command} {flag}={value}",
                    lambda tmp, base=base, flag=flag, value=value: [*base(tmp), f"{flag}={value}"],
                    expect,
                )
            )
    return cases


# ------------------------------------------------------------------ paths and names


def _dash_name(tmp: Path) -> list[str]:
    argv = _predict(tmp)
    tifffile.imwrite(tmp / "in" / "-x.tif", disks()[0])
    return argv


def _empty_folder(tmp: Path) -> list[str]:
    argv = _predict(tmp)
    return argv


def _symlinked_image(tmp: Path) -> list[str]:
    argv = _predict(tmp)
    tifffile.imwrite(tmp / "elsewhere.tif", disks()[0])
    (tmp / "in" / "linked.tif").symlink_to(tmp / "elsewhere.tif")
    return argv


def _broken_link_only(tmp: Path) -> list[str]:
    argv = _predict(tmp)
    (tmp / "in" / "gone.tif").symlink_to(tmp / "nowhere.tif")
    return argv


def _link_loop(tmp: Path) -> list[str]:
    argv = _predict(tmp, disks()[0])
    (tmp / "in" / "loop.tif").symlink_to(tmp / "in" / "loop.tif")
    return argv


def _output_is_a_link(tmp: Path) -> list[str]:
    """An existing output that is a link to the user's file: --overwrite replaces the link,
    never the file it points to."""
    argv = _predict(tmp, disks()[0])
    (tmp / "out").mkdir()
    (tmp / "mine.tif").write_bytes(b"the user's own file")
    (tmp / "out" / "img_labels.tif").symlink_to(tmp / "mine.tif")
    (tmp / "out" / "img_probabilities.tif").symlink_to(tmp / "mine.tif")
    return [*argv, "--overwrite"]


def _output_is_a_folder(tmp: Path) -> list[str]:
    argv = _predict(tmp, disks()[0])
    (tmp / "out" / "img_labels.tif").mkdir(parents=True)
    (tmp / "out" / "img_labels.tif" / "keep.txt").write_text("mine")
    return [*argv, "--overwrite"]


def _model_is_a_folder(tmp: Path) -> list[str]:
    (tmp / "folder.pt").mkdir()
    return _predict(tmp, disks()[0], model=tmp / "folder.pt")


def _model_is_a_device(tmp: Path) -> list[str]:
    return _predict(tmp, disks()[0], model=Path("/dev/null"))


def _model_is_a_fifo(tmp: Path) -> list[str]:
    os.mkfifo(tmp / "pipe.pt")
    return _predict(tmp, disks()[0], model=tmp / "pipe.pt")


def _input_is_a_device(tmp: Path) -> list[str]:
    model = tiny_model(tmp / "model.pt")
    return ["predict", "/dev/zero", "--model", str(model), "--out", str(tmp / "out")]


def _train_out_onto_an_image(tmp: Path) -> list[str]:
    argv = _train(tmp)
    at = argv.index("--out")
    return [*argv[:at], "--out", str(tmp / "images" / "0.tif"), *argv[at + 2 :], "--overwrite"]


def _train_out_is_a_folder(tmp: Path) -> list[str]:
    argv = _train(tmp)
    at = argv.index("--out")
    (tmp / "models").mkdir()
    return [*argv[:at], "--out", str(tmp / "models"), *argv[at + 2 :]]


def _train_out_in_missing_folder(tmp: Path) -> list[str]:
    argv = _train(tmp)
    at = argv.index("--out")
    return [*argv[:at], "--out", str(tmp / "no" / "such" / "m.pt"), *argv[at + 2 :]]


def _export_onto_its_model(tmp: Path) -> list[str]:
    model = tiny_model(tmp / "model.pt")
    return ["export", str(model), str(model), "--format", "torchscript", "--overwrite"]


def _import_onto_its_weights(tmp: Path) -> list[str]:
    import json

    import torch

    from napari_unet.core import UNet, UNetConfig

    torch.save(UNet(UNetConfig(depth=2, base_features=4)).state_dict(), tmp / "w.pt")
    (tmp / "c.json").write_text(json.dumps({"depth": 2, "base_features": 4}))
    return ["import", "--weights", str(tmp / "w.pt"), "--config", str(tmp / "c.json"),
            "--out", str(tmp / "w.pt"), "--overwrite"]  # fmt: skip


def _same_images_and_labels(tmp: Path) -> list[str]:
    argv = _train(tmp)
    at = argv.index("--labels")
    return [*argv[:at], "--labels", argv[argv.index("--images") + 1], *argv[at + 2 :]]


def _evaluate_report_in_missing_folder(tmp: Path) -> list[str]:
    return _evaluate(tmp, lambda t: ["--csv", str(t / "no" / "such" / "r.csv")])


def _label_name_unicode(tmp: Path) -> list[str]:
    from tests.hostile_inputs import _label_name

    return _label_name(lambda t: "Zellkerne-ü")(tmp)


def _label_name_too_long(tmp: Path) -> list[str]:
    from tests.hostile_inputs import _label_name

    return _label_name(lambda t: "n" * 65)(tmp)


def _label_name_hidden(tmp: Path) -> list[str]:
    from tests.hostile_inputs import _label_name

    return _label_name(lambda t: ".zattrs")(tmp)


# ------------------------------------------------------------------ sizes


def _empty_model(tmp: Path) -> list[str]:
    (tmp / "empty.pt").write_bytes(b"")
    return _predict(tmp, disks()[0], model=tmp / "empty.pt")


def _zero_size_image(tmp: Path) -> list[str]:
    return _predict(tmp, np.zeros((0, 0), np.uint8))


def _tiff_claiming_a_huge_image(tmp: Path) -> list[str]:
    """A 200-byte TIFF whose header claims 100000 x 100000 pixels."""
    import io as _io

    buffer = _io.BytesIO()
    tifffile.imwrite(buffer, np.zeros((8, 8), np.uint8))
    data = bytearray(buffer.getvalue())
    offset = int.from_bytes(data[4:8], "little")
    count = int.from_bytes(data[offset : offset + 2], "little")
    for i in range(count):
        entry = offset + 2 + 12 * i
        tag = int.from_bytes(data[entry : entry + 2], "little")
        if tag in (256, 257):  # ImageWidth, ImageLength
            kind = int.from_bytes(data[entry + 2 : entry + 4], "little")
            width = 2 if kind == 3 else 4
            value = 60000 if kind == 3 else 100000
            data[entry + 8 : entry + 8 + width] = value.to_bytes(width, "little")
    argv = _predict(tmp)
    (tmp / "in" / "claims.tif").write_bytes(bytes(data))
    return argv


def _large_description(tmp: Path) -> list[str]:
    folder = tmp / "package"
    folder.mkdir()
    (folder / "rdf.yaml").write_text("# " + "x" * 2_000_000 + "\ntype: model\n")
    return ["info", str(folder)]


def _stack_of_one_pixel_slices(tmp: Path) -> list[str]:
    return _predict(tmp, np.zeros((5, 1, 1), np.uint16))


# ------------------------------------------------------------------ encodings


def _undecodable_file_name(tmp: Path) -> list[str]:
    argv = _predict(tmp)
    name = os.fsdecode(b"n\xff\xfe.tif")
    tifffile.imwrite(tmp / "in" / name, disks()[0])
    return argv


def _undecodable_names_in_evaluate(tmp: Path) -> list[str]:
    pred, truth = tmp / "pred", tmp / "truth"
    pred.mkdir()
    truth.mkdir()
    name = os.fsdecode(b"k\xff")
    tifffile.imwrite(pred / f"{name}_labels.tif", disks()[1])
    tifffile.imwrite(truth / f"{name}.tif", disks()[1])
    return ["evaluate", "--pred", str(pred), "--truth", str(truth)]


def _utf16_config(tmp: Path) -> list[str]:
    import torch

    from napari_unet.core import UNet, UNetConfig

    torch.save(UNet(UNetConfig(depth=2, base_features=4)).state_dict(), tmp / "w.pt")
    (tmp / "c.json").write_text('{"depth": 2, "base_features": 4}', encoding="utf-16")
    return ["import", "--weights", str(tmp / "w.pt"), "--config", str(tmp / "c.json"),
            "--out", str(tmp / "m.pt")]  # fmt: skip


def _latin1_description(tmp: Path) -> list[str]:
    folder = tmp / "package"
    folder.mkdir()
    (folder / "rdf.yaml").write_bytes("name: Zellkern \xfc\ntype: model\n".encode("latin-1"))
    return ["info", str(folder)]


def _description_with_newlines(tmp: Path) -> list[str]:
    argv = _train(tmp)
    return [*argv, "--description", "line one\nline two ü ✓"]


def _unicode_pattern(tmp: Path) -> list[str]:
    return _train(tmp, extra=("--pattern", "^(\\d)ü?"))


# ------------------------------------------------------------------ permissions


_read_only = read_only_folder


def _train_into_read_only(tmp: Path) -> list[str]:
    argv = _train(tmp)
    at = argv.index("--out")
    return [*argv[:at], "--out", str(_read_only(tmp) / "m.pt"), *argv[at + 2 :]]


def _export_into_read_only(tmp: Path) -> list[str]:
    model = tiny_model(tmp / "model.pt")
    return ["export", str(model), str(_read_only(tmp) / "m.onnx"), "--format", "torchscript"]


def _report_into_read_only(tmp: Path) -> list[str]:
    return _evaluate(tmp, lambda t: ["--json", str(_read_only(t) / "r.json")])


def _import_into_read_only(tmp: Path) -> list[str]:
    argv = _import_onto_its_weights(tmp)
    at = argv.index("--out")
    return [*argv[:at], "--out", str(_read_only(tmp) / "m.pt")]


# ------------------------------------------------------------------ signals and concurrency


def _signal_soon(sig: int, after: float):
    """Send ``sig`` to the command ``after`` seconds into its run (a real process only)."""

    def build(tmp: Path) -> list[str]:
        rng = np.random.default_rng(0)
        argv = _predict(tmp, rng.integers(0, 60000, (2048, 2048), dtype=np.uint16))
        (tmp / "signal.txt").write_text(f"{int(sig)} {after}")
        return [*argv, "--tile-size", "32", "--batch-size", "1"]

    return build


def _racing_predict(tmp: Path) -> list[str]:
    """A second predict into the same --out at the same time: both finish, every output is a
    complete file (written whole, renamed into place)."""
    argv = _predict(tmp, disks()[0])
    for i in range(4):
        tifffile.imwrite(tmp / "in" / f"more{i}.tif", disks(seed=i)[0])
    rival = subprocess.Popen(
        [sys.executable, "-m", "napari_unet.cli", *argv, "--overwrite"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    (tmp / "rival.pid").write_text(str(rival.pid))
    _RIVALS[str(tmp)] = rival
    time.sleep(0.5)
    return [*argv, "--overwrite"]


_RIVALS: dict[str, subprocess.Popen] = {}


def _rival_finished_and_outputs_whole(tmp: Path) -> None:
    rival = _RIVALS.pop(str(tmp))
    _, err = rival.communicate(timeout=300)
    assert rival.returncode == 0, err
    for path in (tmp / "out").glob("*.tif"):
        tifffile.imread(path)  # complete, readable
    assert not list((tmp / "out").glob(".*")), "temporary files left behind"


def _racing_train(tmp: Path) -> list[str]:
    argv = _train(tmp)
    rival = subprocess.Popen(
        [sys.executable, "-m", "napari_unet.cli", *argv, "--overwrite"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _RIVALS[str(tmp)] = rival
    time.sleep(0.5)
    return [*argv, "--overwrite"]


def _rival_trained_and_model_loads(tmp: Path) -> None:
    from napari_unet.core import load_model

    rival = _RIVALS.pop(str(tmp))
    _, err = rival.communicate(timeout=300)
    assert rival.returncode == 0, err
    load_model(tmp / "new.pt")


def _no_outputs_left(tmp: Path) -> None:
    assert not list((tmp / "out").glob(".*")), "temporary files left behind"


# fmt: off
OTHER_CASES = [
    # paths and names
    Case("image named -x.tif in a folder", _dash_name, "ok", writes=("out/*",)),
    Case("empty input folder", _empty_folder, r"no image files .* found in .*in"),
    Case("input folder with a link to an image", _symlinked_image, "ok", writes=("out/*",)),
    Case("input folder with only a broken link", _broken_link_only, r"no image files"),
    Case("a link that points to itself", _link_loop, "ok", writes=("out/*",)),
    Case("existing outputs are links to the user's file", _output_is_a_link, "ok", writes=("out/*",)),
    Case("existing output is a folder", _output_is_a_folder, r"refusing to replace .*img_labels\.tif: it is a folder or link"),
    Case("--model is a folder", _model_is_a_folder, r"folder\.pt"),
    Case("--model /dev/null", _model_is_a_device, r"neither a file nor a bundled model"),
    Case("--model is a named pipe", _model_is_a_fifo, r"pipe\.pt.* is neither a file nor a bundled model"),
    Case("input /dev/zero", _input_is_a_device, r"/dev/zero is not a regular file or folder"),
    Case("train --out onto a training image", _train_out_onto_an_image, r"--out .*0\.tif would write onto the input"),
    Case("train --out is a folder", _train_out_is_a_folder, r"--out .*models is a folder"),
    Case("train --out in a missing folder", _train_out_in_missing_folder, r"--out .*m\.pt: folder .*such does not exist"),
    Case("export onto its own model file", _export_onto_its_model, r"OUT .*model\.pt would write onto the input"),
    Case("import onto its own weights", _import_onto_its_weights, r"--out .*w\.pt would write onto the input"),
    Case("train with --labels the images folder", _same_images_and_labels, r"labels|classes|floating"),
    Case("evaluate report in a missing folder", _evaluate_report_in_missing_folder, r"--csv .*r\.csv: folder .* does not exist"),
    Case("--label-name with an umlaut", _label_name_unicode, r"label name 'Zellkerne-ü' is not a plain name"),
    Case("--label-name of 65 characters", _label_name_too_long, r"label name 'n+' is not a plain name: use up to 64"),
    Case("--label-name .zattrs", _label_name_hidden, r"label name '\.zattrs' is not a plain name"),
    # sizes
    Case("empty model file", _empty_model, r"not a PyTorch model file"),
    Case("0 x 0 image", _zero_size_image, r"img\.tif"),
    Case("TIFF header claiming 100000 x 100000", _tiff_claiming_a_huge_image, r"claims\.tif"),
    Case("2 MB rdf.yaml", _large_description, r"rdf\.yaml is 2,000,\d+ bytes"),
    Case("stack of 1 x 1 slices", _stack_of_one_pixel_slices, "ok", writes=("out/*",)),
    # encodings
    Case("file name that is not UTF-8", _undecodable_file_name, "ok", writes=("out/*",)),
    Case("evaluate prints names that are not UTF-8", _undecodable_names_in_evaluate, "ok"),
    Case("import config in UTF-16", _utf16_config, r"cannot read config .*c\.json"),
    Case("rdf.yaml in Latin-1", _latin1_description, r"rdf\.yaml is not UTF-8 text"),
    Case("--description with a newline and symbols", _description_with_newlines, "ok", writes=("new.pt",)),
    Case("--pattern with an umlaut", _unicode_pattern, "ok", writes=("new.pt",)),
    # permissions
    Case("train --out in a read-only folder", _train_into_read_only, r"cannot write in .*locked \(read-only, or no permission\)"),
    Case("export into a read-only folder", _export_into_read_only, r"cannot write .*m\.onnx: (no permission|.*read-only)"),
    Case("evaluate --json into a read-only folder", _report_into_read_only, r"cannot write .*r\.json"),
    Case("import into a read-only folder", _import_into_read_only, r"cannot write in .*locked"),
    # concurrency
    Case("two predicts into one folder at once", _racing_predict, "ok", writes=("out/*",), check=_rival_finished_and_outputs_whole),
    Case("two trainings onto one model file at once", _racing_train, "ok", writes=("new.pt",), check=_rival_trained_and_model_loads),
]
# fmt: on

# Signals need a real process to deliver them to: benchmarks/reliability.py sends them (the
# case writes signal.txt); tests/test_bad_inputs.py has its own real-process signal tests.
SIGNAL_CASES = [
    Case("SIGTERM during predict", _signal_soon(signal.SIGTERM, 1.0), "terminated", absent=("out/img_labels.tif",), check=_no_outputs_left),
    Case("SIGINT during predict", _signal_soon(signal.SIGINT, 1.0), "interrupted", absent=("out/img_labels.tif",), check=_no_outputs_left),
]  # fmt: skip

CASES = [*_range_cases(), *OTHER_CASES]
