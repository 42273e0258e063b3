"""What users throw at the command line: damaged files, odd shapes and dtypes, odd names,
unwritable outputs, mangled model files. Shared by tests/test_bad_inputs.py (each case a test)
and benchmarks/reliability.py (totals: inputs tried, tracebacks, files lost).

A case builds its files in a folder and returns the argv to run and what must happen: "ok"
(exit 0) or a regular expression the one error line must match (exit 2).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
import torch


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], list[str]]
    expect: str  # "ok", or a regex for the error line


def disks(shape=(64, 64), seed=0):
    """A small fluorescence-like image with bright disks and its binary labels."""
    from skimage.draw import disk

    rng = np.random.default_rng(seed)
    image = rng.normal(200, 20, shape)
    labels = np.zeros(shape, np.uint8)
    for _ in range(4):
        rr, cc = disk(tuple(rng.integers(6, min(shape) - 6, 2)), 5, shape=shape)
        image[rr, cc] += 300
        labels[rr, cc] = 1
    return np.clip(image, 0, None).astype(np.uint16), labels


def tiny_model(path: Path, **config) -> Path:
    from napari_unet.core import ModelFile, Preprocessing, UNet, UNetConfig, save_model

    net_config = UNetConfig(depth=2, base_features=4, **config)
    torch.manual_seed(0)
    model = ModelFile(net_config, Preprocessing(), UNet(net_config).state_dict())
    return save_model(model, path)


def mangled_model(path: Path, change: Callable[[dict], None]) -> Path:
    """A model file whose stored data was edited (as a damaged or hand-made file would be)."""
    tiny_model(path)
    data = torch.load(path, weights_only=True)
    change(data)
    torch.save(data, path)
    return path


def _predict(tmp: Path, image: np.ndarray | None = None, name="img.tif", model=None, extra=()):
    inputs = tmp / "in"
    inputs.mkdir(exist_ok=True)
    if image is not None:
        tifffile.imwrite(inputs / name, image)
    model = model or tiny_model(tmp / "model.pt")
    return ["predict", "--model", str(model), str(inputs), "--out", str(tmp / "out"), *extra]


def _with_file(name: str, content: bytes):
    def build(tmp: Path) -> list[str]:
        argv = _predict(tmp)
        (tmp / "in" / name).write_bytes(content)
        return argv

    return build


def _image_of(dtype, shape=(40, 48)):
    def build(tmp: Path) -> list[str]:
        base = disks((40, 48))[0].astype(np.float64) / 600
        image = np.resize(base, shape)
        if np.dtype(dtype).kind == "b":
            data = image > 0.5
        elif np.dtype(dtype).kind == "c":
            data = (image + 1j * image).astype(dtype)
        elif np.dtype(dtype).kind == "f":
            data = image.astype(dtype)
        else:
            info = np.iinfo(dtype)
            data = (image * min(info.max, 2**40)).clip(info.min, info.max).astype(dtype)
        return _predict(tmp, data)

    return build


def _train(tmp: Path, labels: np.ndarray | bytes | None = None, extra=()):
    images, label_dir = tmp / "images", tmp / "labels"
    images.mkdir()
    label_dir.mkdir()
    for i in range(2):
        image, truth = disks(seed=i)
        tifffile.imwrite(images / f"{i}.tif", image)
        target = label_dir / f"{i}.tif"
        data = truth if labels is None else labels
        target.write_bytes(data) if isinstance(data, bytes) else tifffile.imwrite(target, data)
    return [
        "train", "--images", str(images), "--labels", str(label_dir), "--out",
        str(tmp / "new.pt"), "--epochs", "1", "--steps-per-epoch", "1", "--depth", "2",
        "--base-features", "4", "--patch-size", "32", "--batch-size", "2", *extra,
    ]  # fmt: skip


def _read_only_out(tmp: Path) -> list[str]:
    import subprocess

    out = tmp / "locked"
    out.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(out)],
                      capture_output=True).returncode:  # fmt: skip
        out.chmod(0o555)  # not root: an ordinary read-only folder does the same
    argv = _predict(tmp, disks()[0])
    return [*argv[:-2], "--out", str(out)]


def _output_is_a_file(tmp: Path) -> list[str]:
    argv = _predict(tmp, disks()[0])
    (tmp / "out").write_text("my notes: do not lose me")
    return argv


def _pickled_module(tmp: Path) -> list[str]:
    from napari_unet.core import UNet, UNetConfig

    torch.save(UNet(UNetConfig(depth=1, base_features=2)), tmp / "module.pt")  # full pickle
    return _predict(tmp, disks()[0], model=tmp / "module.pt")


def _pickle_with_code(tmp: Path) -> list[str]:
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    (tmp / "evil.pt").write_bytes(pickle.dumps(Payload()))
    return _predict(tmp, disks()[0], model=tmp / "evil.pt")


def _config_change(**changes):
    def build(tmp: Path) -> list[str]:
        model = mangled_model(tmp / "mangled.pt", lambda d: d["config"].update(changes))
        return _predict(tmp, disks()[0], model=model)

    return build


def _data_change(change):
    def build(tmp: Path) -> list[str]:
        return _predict(tmp, disks()[0], model=mangled_model(tmp / "mangled.pt", change))

    return build


def _truncated_model(tmp: Path) -> list[str]:
    model = tiny_model(tmp / "m.pt")
    model.write_bytes(model.read_bytes()[:3000])
    return _predict(tmp, disks()[0], model=model)


def _unicode_names(tmp: Path) -> list[str]:
    return _predict(tmp, disks()[0], name="Zellkern ü 1 (copy).tif")


def _bad_pattern(tmp: Path) -> list[str]:
    return _train(tmp, extra=("--pattern", "(["))


def _truncated_tiff_labels(tmp: Path) -> list[str]:
    import io as _io

    buffer = _io.BytesIO()
    tifffile.imwrite(buffer, disks()[1])
    return _train(tmp, labels=buffer.getvalue()[:60])


# fmt: off
CASES = [
    # damaged or foreign files with image suffixes
    Case("truncated TIFF", _with_file("broken.tif", tifffile.__doc__.encode()[:10]), r"cannot read .*broken\.tif"),
    Case("text file named .png", _with_file("notes.png", b"not a picture at all"), r"cannot read .*notes\.png"),
    Case("empty .tif", _with_file("empty.tif", b""), r"cannot read .*empty\.tif"),
    Case("half a TIFF", lambda tmp: _half_tiff(tmp), r"cannot read .*half\.tif"),
    # shapes
    Case("1 x 1 image", _image_of(np.uint16, (1, 1)), "ok"),
    Case("1 x N image", _image_of(np.uint16, (1, 37)), "ok"),
    Case("N x 1 image", _image_of(np.uint16, (29, 1)), "ok"),
    Case("5D image", _image_of(np.uint16, (2, 2, 2, 20, 24)), "ok"),
    Case("6D image", _image_of(np.uint16, (2, 1, 2, 2, 20, 24)), "ok"),
    # dtypes
    *(Case(f"{np.dtype(t).name} image", _image_of(t), "ok")
      for t in (np.uint64, np.int8, np.bool_, np.float16, np.uint32, np.int64, np.float64)),
    Case("complex64 image", _image_of(np.complex64), r"complex numbers .*expected real intensities"),
    # names and outputs
    Case("unicode and spaces in file names", _unicode_names, "ok"),
    Case("output folder is a file", _output_is_a_file, r"--out .*out exists and is not a folder"),
    Case("read-only output folder", _read_only_out, r"cannot write .*: no permission to write in .*locked"),
    # model files
    Case("model: negative depth", _config_change(depth=-2), r"damaged napari-unet model file .*depth must be between 1 and 7"),
    Case("model: absurd width", _config_change(base_features=10**7), r"damaged napari-unet model file .*base_features"),
    Case("model: absurd channels", _config_change(in_channels=10**6), r"damaged napari-unet model file .*in_channels"),
    Case("model: unknown key", _config_change(colour="blue"), r"unknown U-Net config keys \['colour'\]"),
    Case("model: wrong type", _config_change(depth="four"), r"damaged napari-unet model file .*depth must be a whole number"),
    Case("model: boolean width", _config_change(base_features=True), r"damaged napari-unet model file .*base_features must be a whole number"),
    Case("model: weights of another shape", _config_change(base_features=8), r"weights do not match the architecture"),
    Case("model: class names not a list", _data_change(lambda d: d.update(class_names=7)), r"damaged napari-unet model file .*class_names"),
    Case("model: preprocessing mangled", _data_change(lambda d: d["preprocessing"].update(low="one")), r"damaged napari-unet model file .*low"),
    Case("model: config not a mapping", _data_change(lambda d: d.update(config=[1, 2])), r"damaged napari-unet model file"),
    Case("model: pickled module", _pickled_module, r"refused to load .*Python objects"),
    Case("model: pickle that runs code", _pickle_with_code, r"not a PyTorch model file"),
    Case("model: truncated", _truncated_model, r"truncated or corrupt"),
    # training inputs
    Case("invalid --pattern", _bad_pattern, r"pattern '\(\[' is not a valid regular expression"),
    Case("labels: one class only (all background)", lambda tmp: _train(tmp, labels=np.zeros((64, 64), np.uint8)), r"only one class \(background\) in every image"),
    Case("labels: 0/255 mask", lambda tmp: _train(tmp, labels=disks()[1] * 255), "ok"),
    Case("labels: 0/65535 mask", lambda tmp: _train(tmp, labels=disks()[1].astype(np.uint16) * 65535), "ok"),
    Case("labels: 255 with --classes 3", lambda tmp: _train(tmp, labels=disks()[1] * 255, extra=("--classes", "3")), r"contain value 255, but the model has 3 classes"),
    Case("labels: float values", lambda tmp: _train(tmp, labels=disks()[1].astype(np.float32) * 0.5), r"floating point"),
    Case("labels: truncated file", _truncated_tiff_labels, r"cannot read .*0\.tif"),
]
# fmt: on


def _half_tiff(tmp: Path) -> list[str]:
    argv = _predict(tmp)
    tifffile.imwrite(tmp / "in" / "half.tif", disks((256, 256))[0])
    data = (tmp / "in" / "half.tif").read_bytes()
    (tmp / "in" / "half.tif").write_bytes(data[: len(data) // 2])
    return argv
