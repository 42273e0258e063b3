"""Hostile inputs of issue 24's sweep: commands that changed or deleted the user's files,
exited 0 with garbage, hung, or ended in "internal error". Each case failed on the code
before the fix. Shared by tests/test_bad_inputs.py (one test each, in this process) and
benchmarks/reliability.py (each as a real process).

A case may name what the command was asked to write (``writes``: paths relative to the case's
folder, the only files that may change) and what must not exist afterwards (``absent``), and
may ``check`` the outputs. Cases that need root for a tiny file system raise SkipTest
elsewhere.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from unittest import SkipTest

import numpy as np
import tifffile
import torch
from tests.bad_inputs import _predict, _train, disks, mangled_model, tiny_model


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], list[str]]
    expect: str  # "ok", or a regex for the one error line
    writes: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    check: Callable[[Path], None] | None = field(default=None)


# ------------------------------------------------------------------ OME-Zarr with labels


def _ome_with_labels(tmp: Path) -> Path:
    """An OME-Zarr image holding two labels images: ``napari-unet`` and the user's ``manual``."""
    from napari_unet.core.data.ome_zarr import read_ome_zarr, write_labels_into, write_ome_zarr

    path = write_ome_zarr(tmp / "img.ome.zarr", disks()[0], ["y", "x"], [0.5, 0.5])
    image = read_ome_zarr(path)
    write_labels_into(image, disks()[1], "napari-unet")
    write_labels_into(image, disks(seed=3)[1], "manual")
    return path


def _label_name(name_of: Callable[[Path], str]):
    def build(tmp: Path) -> list[str]:
        image = _ome_with_labels(tmp)
        model = tiny_model(tmp / "model.pt")
        return [
            "predict", str(image), "--model", str(model), "--out", str(tmp / "out"),
            "--into-input", "--overwrite", "--label-name", name_of(tmp),
        ]  # fmt: skip

    return build


def _someone_elses_labels(tmp: Path) -> list[str]:
    """``labels/manual`` holds a person's annotations (written by another tool)."""
    import json

    argv = _label_name(lambda t: "manual")(tmp)
    meta = tmp / "img.ome.zarr" / "labels" / "manual" / "zarr.json"
    data = json.loads(meta.read_text())
    data["attributes"].pop("napari_unet", None)
    meta.write_text(json.dumps(data))
    return argv


def _labels_entry_is_a_link(tmp: Path) -> list[str]:
    argv = _label_name(lambda t: "linked")(tmp)
    precious = tmp / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("four years of work")
    (tmp / "img.ome.zarr" / "labels" / "linked").symlink_to(precious)
    return argv


def _labels_entry_is_not_ours(tmp: Path) -> list[str]:
    argv = _label_name(lambda t: "notes")(tmp)
    notes = tmp / "img.ome.zarr" / "labels" / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("a folder that is not a labels image")
    return argv


# ------------------------------------------------------------------ evaluate reports


def _evaluate(tmp: Path, report_of: Callable[[Path], list[str]]) -> list[str]:
    pred, truth = tmp / "pred", tmp / "truth"
    pred.mkdir()
    truth.mkdir()
    tifffile.imwrite(pred / "a_labels.tif", disks()[1])
    tifffile.imwrite(truth / "a.tif", disks()[1])
    return ["evaluate", "--pred", str(pred), "--truth", str(truth), *report_of(tmp)]


def _existing_report(tmp: Path) -> list[str]:
    argv = _evaluate(tmp, lambda t: ["--json", str(t / "scores.json")])
    (tmp / "scores.json").write_text('{"my": "earlier results"}')
    return argv


# ------------------------------------------------------------------ predict folders


def _out_is_the_input_folder(tmp: Path) -> list[str]:
    folder = tmp / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", disks()[0])
    tifffile.imwrite(folder / "a_labels.tif", disks()[1])  # an earlier run's output
    model = tiny_model(tmp / "model.pt")
    return ["predict", str(folder), "--model", str(model), "--out", str(folder), "--overwrite"]


def _output_onto_input(tmp: Path) -> list[str]:
    """``b_labels.tif`` named explicitly, with ``b.tif`` elsewhere: b's output would land on it."""
    (tmp / "x").mkdir()
    tifffile.imwrite(tmp / "x" / "b.tif", disks()[0])
    tifffile.imwrite(tmp / "b_labels.tif", disks()[0])
    model = tiny_model(tmp / "model.pt")
    return [
        "predict", str(tmp / "x" / "b.tif"), str(tmp / "b_labels.tif"), "--model", str(model),
        "--out", str(tmp), "--overwrite",
    ]  # fmt: skip


def _tiny_disk(tmp: Path, size: str) -> Path:
    folder = tmp / "small-disk"
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
    )
    if done.returncode:
        raise SkipTest("needs root to mount a tiny file system")
    return folder


def _disk_full(tmp: Path) -> list[str]:
    """Room for the labels (compressed) but not for the float32 probabilities."""
    out = _tiny_disk(tmp, "48k")
    rng = np.random.default_rng(0)
    argv = _predict(tmp, rng.integers(0, 60000, (256, 512), dtype=np.uint16))
    return [*argv[:-2], "--out", str(out), "--probabilities"]


def _into_input_disk_full(tmp: Path) -> list[str]:
    """The OME-Zarr image on a nearly full disk: its labels cannot be written into it."""
    from napari_unet.core.data.ome_zarr import write_ome_zarr

    disk = _tiny_disk(tmp, "256k")
    image = write_ome_zarr(disk / "img.ome.zarr", disks()[0], ["y", "x"], [1.0, 1.0])
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / "filler.bin").write_bytes(b"\0" * max(0, free - 2048))
    model = tiny_model(tmp / "model.pt")
    return ["predict", str(image), "--model", str(model), "--out", str(tmp / "out"),
            "--into-input", "--probabilities"]  # fmt: skip


# ------------------------------------------------------------------ silent garbage


def _nan_weights(tmp: Path) -> list[str]:
    def poison(data: dict) -> None:
        name = next(iter(data["weights"]))
        data["weights"][name] = torch.full_like(data["weights"][name], float("nan"))

    return _predict(tmp, disks()[0], model=mangled_model(tmp / "nan.pt", poison))


def _huge_float64(tmp: Path) -> list[str]:
    """The same image twice: at its own scale and near float64's limit (1e308)."""
    base = disks()[0].astype(np.float64) / 600
    argv = _predict(tmp, base, name="plain.tif")
    tifffile.imwrite(tmp / "in" / "huge.tif", (base / base.max()) * 1.7e308)
    return [*argv, "--probabilities"]


def _same_as_plain(tmp: Path) -> None:
    plain = tifffile.imread(tmp / "out" / "plain_probabilities.tif")
    huge = tifffile.imread(tmp / "out" / "huge_probabilities.tif")
    assert np.isfinite(huge).all(), "non-finite probabilities"
    np.testing.assert_allclose(huge, plain, atol=1e-4)


def _flipped_bytes(tmp: Path) -> list[str]:
    model = tiny_model(tmp / "model.pt")
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the stored weights
    (tmp / "flipped.pt").write_bytes(bytes(data))
    return _predict(tmp, disks()[0], model=tmp / "flipped.pt")


def _train_with(*extra: str):
    return lambda tmp: _train(tmp, extra=extra)


def _train_for_minutes(minutes: str):
    def build(tmp: Path) -> list[str]:
        argv = _train(tmp)
        at = argv.index("--epochs")
        return [*argv[:at], *argv[at + 2 :], "--minutes", minutes]

    return build


def _predict_with(*extra: str):
    return lambda tmp: _predict(tmp, disks()[0], extra=extra)


# ------------------------------------------------------------------ hangs


_ALIAS_BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{b}: &{b} [{','.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)


def _package_folder(text: str):
    def build(tmp: Path) -> list[str]:
        folder = tmp / "package"
        folder.mkdir()
        (folder / "rdf.yaml").write_text(text)
        return ["info", str(folder)]

    return build


# ------------------------------------------------------------------ honest failures


def _long_name(tmp: Path) -> list[str]:
    return _predict(tmp, disks()[0], name="n" * 240 + ".tif")


def _out_under_a_file(tmp: Path) -> list[str]:
    argv = _predict(tmp, disks()[0])
    (tmp / "notes.txt").write_text("mine")
    return [*argv[:-2], "--out", str(tmp / "notes.txt" / "results")]


def _export_onto_a_file(tmp: Path) -> list[str]:
    model = tiny_model(tmp / "model.pt")
    (tmp / "package").write_text("a file where a package folder would go")
    return ["export", str(model), str(tmp / "package"), "--format", "bioimageio", "--overwrite"]


def _export_onto_a_folder(tmp: Path) -> list[str]:
    model = tiny_model(tmp / "model.pt")
    (tmp / "results").mkdir()
    (tmp / "results" / "keep.txt").write_text("mine")
    return ["export", str(model), str(tmp / "results"), "--format", "torchscript", "--overwrite"]


def read_only_folder(tmp: Path, name: str = "locked") -> Path:
    """A read-only folder: a read-only tmpfs as root, else a folder without write bits (which
    stops a user that is not root)."""
    folder = tmp / name
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                      capture_output=True).returncode:  # fmt: skip
        folder.chmod(0o555)
        if os.access(folder, os.W_OK):
            raise SkipTest("needs root, or a user that a read-only folder stops")
    return folder


def _demo_read_only(tmp: Path) -> list[str]:
    return ["demo", "--out", str(read_only_folder(tmp) / "demo")]


def _malformed_ome_zarr(change: Callable[[dict], None]):
    def build(tmp: Path) -> list[str]:
        import json

        from napari_unet.core.data.ome_zarr import write_ome_zarr

        path = write_ome_zarr(tmp / "img.ome.zarr", disks()[0], ["y", "x"], [1.0, 1.0])
        meta_file = path / "zarr.json"
        meta = json.loads(meta_file.read_text())
        attrs = meta["attributes"].get("ome", meta["attributes"])
        change(attrs)
        meta_file.write_text(json.dumps(meta))
        model = tiny_model(tmp / "model.pt")
        return ["predict", str(path), "--model", str(model), "--out", str(tmp / "out")]

    return build


def _drop_level0(attrs: dict) -> None:
    attrs["multiscales"][0]["datasets"][0]["path"] = "missing-level"


def _grey_gif(tmp: Path) -> list[str]:
    import imageio.v3 as iio

    argv = _predict(tmp)
    grey = (disks()[0] // 4).clip(0, 255).astype(np.uint8)
    iio.imwrite(tmp / "in" / "grey.gif", grey)
    return argv


def _bad_tiff_offset(tmp: Path) -> list[str]:
    argv = _predict(tmp)
    (tmp / "in" / "offset.tif").write_bytes(b"II*\x00" + (2**31).to_bytes(4, "little") + bytes(64))
    return argv


def _existing_model_out(tmp: Path) -> list[str]:
    argv = _train(tmp)
    tiny_model(tmp / "new.pt")
    return argv


def _labels_written(tmp: Path) -> None:
    assert (tmp / "in" / "a_labels.tif").is_file()


# fmt: off
CASES = [
    # 1. a label name is one plain name; --overwrite replaces only our labels image
    Case("--label-name '' (would empty labels/)", _label_name(lambda t: ""), r"label name must not be empty"),
    Case("--label-name ..", _label_name(lambda t: ".."), r"label name '\.\.' is a path"),
    Case("--label-name ../..", _label_name(lambda t: "../.."), r"label name '\.\./\.\.' is a path"),
    Case("--label-name an absolute folder", _label_name(lambda t: str(t / "precious")), r"label name '.*precious' is a path"),
    Case("--label-name with a newline", _label_name(lambda t: "a\nb"), r"label name .* is not a plain name"),
    Case("--overwrite onto a person's labels", _someone_elses_labels, r"refusing to replace .*labels/manual: those labels were not written by napari-unet"),
    Case("--overwrite onto our own labels", _label_name(lambda t: "napari-unet"), "ok", writes=("img.ome.zarr/labels/napari-unet/*", "img.ome.zarr/labels/zarr.json", "out/*")),
    Case("labels/NAME is a link out of the image", _labels_entry_is_a_link, r"refusing to replace .*linked: it is a link"),
    Case("labels/NAME is not a labels image", _labels_entry_is_not_ours, r"refusing to replace .*notes: it is not an OME-Zarr labels image"),
    # 2. reports never overwrite inputs or earlier reports
    Case("evaluate --csv onto the ground truth", lambda t: _evaluate(t, lambda u: ["--csv", str(u / "truth" / "a.tif")]), r"--csv .*a\.tif would write onto the input"),
    Case("evaluate --json onto a prediction", lambda t: _evaluate(t, lambda u: ["--json", str(u / "pred" / "a_labels.tif")]), r"--json .*would write onto the input"),
    Case("evaluate --json onto an earlier report", _existing_report, r"--json .*scores\.json already exists; pass --overwrite"),
    Case("evaluate --json names a folder", lambda t: _evaluate(t, lambda u: ["--json", str(u / "pred")]), r"--json .*pred is a folder; give a file name"),
    Case("evaluate --csv and --json the same file", lambda t: _evaluate(t, lambda u: ["--csv", str(u / "s"), "--json", str(u / "s")]), r"--csv and --json name the same file"),
    # 3. an earlier run's outputs are never inputs
    Case("predict DIR --out DIR --overwrite", _out_is_the_input_folder, "ok", writes=("in/a_labels.tif", "in/a_probabilities.tif"), absent=("in/a_labels_labels.tif",), check=_labels_written),
    Case("an output would land on an input", _output_onto_input, r"would write onto the input .*b_labels\.tif"),
    # 4. one image's outputs are written all or none
    Case("disk full between labels and probabilities", _disk_full, r"the disk is full; nothing was written; none of the 2 outputs of img\.tif", absent=("small-disk/img_labels.tif",)),
    Case("--into-input on a full disk", _into_input_disk_full, r"cannot write the labels into .*labels/napari-unet: the disk is full; removed what this run had written for img\.ome\.zarr", absent=("small-disk/img.ome.zarr/labels/napari-unet", "out/img_probabilities.tif")),
    # 5-9. silent garbage
    Case("model weights holding NaN", _nan_weights, r"holds NaN or infinite weights"),
    Case("float64 image near 1e308", _huge_float64, "ok", writes=("out/*",), check=_same_as_plain),
    Case("--threshold nan", _predict_with("--threshold", "nan"), r"--threshold must be a number from 0 to 1, got nan"),
    Case("--seed-threshold 1.5", _predict_with("--seed-threshold", "1.5"), r"--seed-threshold must be a number from 0 to 1"),
    Case("--minutes nan", _train_for_minutes("nan"), r"--minutes must be a number above 0 .*got nan"),
    Case("--lr nan", _train_with("--lr", "nan"), r"--lr must be a number above 0 .*got nan"),
    Case("--lr inf", _train_with("--lr", "inf"), r"--lr must be .*got inf"),
    Case("--val-fraction nan", _train_with("--val-fraction", "nan"), r"--val-fraction must be a number from 0 below 1"),
    Case("model file with flipped bytes", _flipped_bytes, r"is damaged: its checksum fails"),
    Case("--classes 0", _train_with("--classes", "0"), r"--classes must be a whole number from 2 to"),
    Case("--classes 1", _train_with("--classes", "1"), r"--classes must be a whole number from 2 to"),
    Case("--boundary-width -1", _train_with("--instances", "--boundary-width", "-1"), r"--boundary-width must be a whole number from 1 to 64"),
    Case("--tile-size 0", _predict_with("--tile-size", "0"), r"--tile-size must be a whole number from 1"),
    Case("--tile-size -5", _predict_with("--tile-size", "-5"), r"--tile-size must be a whole number from 1"),
    Case("predict --batch-size 0", _predict_with("--batch-size", "0"), r"--batch-size must be a whole number from 1"),
    Case("train --batch-size 0", _train_with("--batch-size", "0"), r"--batch-size must be a whole number from 1"),
    Case("evaluate --classes -1", lambda t: _evaluate(t, lambda u: ["--classes", "-1"]), r"--classes must be a whole number from 2"),
    # 10. hangs
    Case("rdf.yaml alias bomb", _package_folder(_ALIAS_BOMB), r"rdf\.yaml expands through YAML aliases to [0-9,]+ values"),
    Case("rdf.yaml nested 1000 deep", _package_folder("a: " + "[" * 1000 + "]" * 1000 + "\n"), r"rdf\.yaml nests more than 64 levels deep"),
    # 11. honest one-line failures
    Case("250-character file name", _long_name, r"the file name is too long for this file system"),
    Case("--out under a file", _out_under_a_file, r"cannot use .*notes\.txt.*: a part of the path is a file, not a folder"),
    Case("export a package onto a file", _export_onto_a_file, r"package is a file, and a package without \.zip is a folder"),
    Case("export a network onto a folder", _export_onto_a_folder, r"cannot write .*results: .*[Ii]s a directory"),
    Case("demo in a read-only folder", _demo_read_only, r"cannot use .*locked/demo: (the file system is read-only|permission denied)"),
    Case("OME-Zarr: multiscales a string", _malformed_ome_zarr(lambda a: a.update(multiscales="image")), r"malformed OME-Zarr image: 'multiscales' must be a list"),
    Case("OME-Zarr: datasets a string", _malformed_ome_zarr(lambda a: a["multiscales"][0].update(datasets="0")), r"malformed OME-Zarr image: 'datasets' must be a list"),
    Case("OME-Zarr: level 0 missing", _malformed_ome_zarr(_drop_level0), r"malformed OME-Zarr image: level 0 \('missing-level'\) is missing"),
    Case("--seed -1", _train_with("--seed", "-1"), r"--seed must be a whole number from 0 to 2\*\*32 - 1, got -1"),
    Case("--seed 2**70", _train_with("--seed", str(2**70)), r"--seed must be a whole number from 0 to 2\*\*32 - 1"),
    Case("rdf.yaml with a python tag", _package_folder("type: model\nx: !!python/object/apply:os.system ['echo run']\n"), r"rdf\.yaml is not valid YAML: could not determine a constructor for the tag .*python/object"),
    # 12. palette and grey GIFs read as grey
    Case("grey GIF to a 1-channel model", _grey_gif, "ok"),
    # 14. the decoder's log stays out of the one error line's way
    Case("TIFF with an invalid first-page offset", _bad_tiff_offset, r"cannot read .*offset\.tif"),
    # 15. the refusal says how to continue
    Case("train --out exists: mentions --resume", _existing_model_out, r"already exists; pass --overwrite .* or continue .* with --resume"),
]
# fmt: on
