"""bioimage.io packages both ways: export -> `bioimageio test` (the reference tool) -> import,
and packages made by others (a different network, format 0.4, other processing steps) run
through our tiler reproduce what bioimage.io's own runner computes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import disks_image
from torch import nn

from napari_unet.core import (
    ModelFile,
    Preprocessing,
    Segmenter,
    UNetConfig,
    UserInputError,
    load_model,
)

pytest.importorskip("bioimageio.core")
pytest.importorskip("onnxruntime")

from napari_unet.core.interop.bioimageio_export import export_package, package_sizes
from napari_unet.core.interop.bioimageio_import import PackageModel, describe_package, load_package
from napari_unet.core.interop.bioimageio_spec import is_package, open_package
from napari_unet.core.interop.open import load_any_model

pytestmark = pytest.mark.slow  # over 10 s on 2 cores: not in the inner loop

BIOIMAGEIO = Path(sys.executable).with_name("bioimageio")


def _bioimageio_test(path: Path) -> subprocess.CompletedProcess:
    """The reference tool, as a user runs it (offline: nothing here is downloaded)."""
    return subprocess.run(
        [str(BIOIMAGEIO), "test", str(path)], capture_output=True, text=True, timeout=600
    )


def _volume() -> tuple[np.ndarray, np.ndarray]:
    """Three bright balls in noise, and their labels."""
    from skimage.draw import ellipsoid

    rng = np.random.default_rng(1)
    volume = rng.normal(100, 10, (40, 48, 44))
    labels = np.zeros(volume.shape, np.uint8)
    ball = ellipsoid(5, 6, 6)
    for z, y, x in ((2, 3, 3), (20, 25, 28), (12, 30, 4)):
        sl = (slice(z, z + ball.shape[0]), slice(y, y + ball.shape[1]), slice(x, x + ball.shape[2]))
        volume[sl][ball] += 300
        labels[sl][ball] = 1
    return volume.astype(np.uint16), labels


@pytest.fixture(scope="module")
def trained_3d() -> ModelFile:
    """A 3D model freshly trained here (a few seconds), as a user's would be."""
    from napari_unet.core import TrainConfig, Trainer, prepare_pair

    volume, labels = _volume()
    pair = prepare_pair(volume, labels, spatial_dims=3, preprocessing=Preprocessing())
    torch.manual_seed(0)
    trainer = Trainer(
        [pair],
        UNetConfig(spatial_dims=3, depth=2, base_features=4),
        TrainConfig(epochs=3, steps_per_epoch=4, patch_size=24, val_fraction=0, learning_rate=1e-2),
    )
    for _ in trainer.train():
        pass
    return trainer.model_file()


@pytest.fixture(scope="module")
def nuclei_package(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pkg") / "nuclei.zip"
    return export_package(load_model("nuclei"), out, name="nuclei")


@pytest.fixture(scope="module")
def package_3d(tmp_path_factory, trained_3d) -> Path:
    out = tmp_path_factory.mktemp("pkg3d") / "tiny3d"
    return export_package(trained_3d, out, sample=_volume()[0])


@pytest.fixture(scope="module")
def retina_package(tmp_path_factory) -> Path:
    # A colour sample for the RGB model: the nuclei image in three channels.
    from napari_unet.core.data.io import read_image

    sample = read_image(Path(__file__).parents[2] / "src/napari_unet/samples/nuclei.png")
    rgb = np.stack([sample, sample[::-1], sample[:, ::-1]], axis=-1)
    out = tmp_path_factory.mktemp("pkgretina") / "retina.zip"
    return export_package(load_model("retina"), out, name="retina", sample=rgb)


@pytest.mark.parametrize("which", ["nuclei_package", "retina_package", "package_3d"])
def test_reference_tool_passes_our_packages(request, which):
    path = request.getfixturevalue(which)
    done = _bioimageio_test(path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "passed" in done.stdout


def test_auto_inverting_model_is_packaged_for_images_like_its_sample(tmp_path):
    """The spec cannot invert image by image: a model that does is written for its sample's
    kind of image, says so, and reproduces napari-unet on it."""
    from dataclasses import replace

    from napari_unet.core.data.io import read_image

    model = load_model("nuclei")
    model = replace(model, preprocessing=replace(model.preprocessing, invert="auto"))
    dark = read_image(Path(__file__).parents[2] / "src/napari_unet/samples/nuclei.png")
    bright = (dark.max() - dark).astype(dark.dtype)  # brightfield-like: dark nuclei
    for sample, inverts in ((bright, True), (dark, False)):
        out = export_package(model, tmp_path / f"{inverts}.zip", sample=sample)
        package = open_package(out)
        steps = [
            (str(s.id), getattr(s.kwargs, "gain", None))
            for s in package.descr.inputs[0].preprocessing
        ]
        assert (("scale_linear", -1.0) in steps) is inverts
        readme = (package.root / "README.md").read_text()
        assert ("it inverts every image" if inverts else "it inverts none") in readme
        x, y = (np.load(package.root / f"test_{io}put.npy") for io in ("in", "out"))
        ours = Segmenter(model, device="cpu", precision="float32").predict(
            x[0, 0], output="probabilities"
        )
        assert np.abs(ours.probabilities - y[0]).max() < 1e-4
        if inverts:
            done = _bioimageio_test(out)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_bundled_package_round_trip_is_the_same_model(nuclei_package):
    original = load_model("nuclei")
    back = load_model(nuclei_package)  # what `train --from` and the widget do
    assert back.config == original.config
    assert back.preprocessing == original.preprocessing
    assert back.class_names == original.class_names and back.task == original.task
    for name, tensor in original.weights.items():
        assert torch.equal(back.weights[name].to(tensor.dtype), tensor), name
    assert back.history["imported_from"] == "nuclei.zip"


def test_package_test_output_reproduced_by_our_tiler(nuclei_package):
    package = open_package(nuclei_package)
    x = np.load(package.root / "test_input.npy")
    y = np.load(package.root / "test_output.npy")
    # Run as someone else's package would be: torchscript weights, the package's own steps.
    foreign = PackageModel(package)
    assert foreign.weights_format == "torchscript"
    minimum, step, halo = package_sizes(load_model("nuclei"))
    assert (foreign.minimum, foreign.step, foreign.halo) == (minimum, step, (halo, halo))
    got = Segmenter(foreign, device="cpu").predict(x[0, 0], output="probabilities")
    assert np.abs(got.probabilities - y[0]).max() < 1e-4
    # Tiled over a larger image, with the package's halo, equals our own model's output.
    big = np.tile(x[0, 0], (2, 3))
    ours = Segmenter("nuclei", device="cpu", precision="float32")
    expected = ours.predict(big, output="probabilities").probabilities
    tiled = Segmenter(foreign, device="cpu").predict(big, output="probabilities", tile_size=160)
    assert np.abs(tiled.probabilities - expected).max() < 1e-4


@pytest.mark.parametrize("weights", ["torchscript", "onnx"])
def test_reference_runner_on_a_larger_image_equals_ours(nuclei_package, weights):
    """bioimage.io's runner pads a whole image by the halo on each side before one pass; the
    halo (a multiple of the step) keeps that size valid and the pooling grid ours, so away from
    the borders its output is our whole-image output. Preprocessing is skipped because the
    runner normalises the padded image (its percentiles see the mirrored border)."""
    from bioimageio.core import create_prediction_pipeline, predict
    from bioimageio.spec import load_model_description

    from napari_unet.core.data.normalize import apply_stats, intensity_stats

    package = open_package(nuclei_package)  # kept: its extracted folder lives as long as it
    x = np.load(package.root / "test_input.npy")[0, 0]
    big = np.tile(x, (2, 2))[:320, :400]  # valid sizes (272 + n * 16), not the test tensor's
    model = load_model("nuclei")
    offset, scale = intensity_stats(big[None], model.preprocessing)
    normalised = apply_stats(big[None], offset, scale)[None]
    pipeline = create_prediction_pipeline(
        load_model_description(nuclei_package), weight_format=weights
    )
    result = predict(model=pipeline, inputs={"raw": normalised}, skip_preprocessing=True)
    (theirs,) = result.members.values()
    theirs = np.asarray(theirs.data)[0]
    with torch.no_grad():
        logits = model.build("cpu").eval()(torch.from_numpy(normalised))
    ours = torch.softmax(logits, 1)[0].numpy()
    assert theirs.shape == ours.shape
    _, _, halo = package_sizes(model)
    inner = (slice(None), slice(halo, -halo), slice(halo, -halo))
    assert np.abs(theirs[inner] - ours[inner]).max() < 1e-4


def test_3d_round_trip(package_3d, trained_3d):
    package = open_package(package_3d)
    x = np.load(package.root / "test_input.npy")
    y = np.load(package.root / "test_output.npy")
    assert x.ndim == 5 and y.shape == (1, trained_3d.config.out_channels, *x.shape[2:])
    back = load_model(package_3d)
    assert back.config == trained_3d.config and back.history["runs"]
    prob = Segmenter(back, device="cpu", precision="float32").predict(
        x[0, 0], output="probabilities"
    )
    assert np.abs(prob.probabilities - y[0]).max() < 1e-4
    foreign = Segmenter(PackageModel(package), device="cpu").predict(
        x[0, 0], output="probabilities"
    )
    assert np.abs(foreign.probabilities - y[0]).max() < 1e-4


def test_info_describes_a_package(nuclei_package):
    text = "\n".join(describe_package(nuclei_package))
    for expected in ("y(272+n*16)", "halo 128", "torchscript, onnx, pytorch_state_dict",
                     "CC-BY-4.0", "background, interior, boundary", "fine-tunable"):  # fmt: skip
        assert expected in text, expected


def test_3d_export_needs_a_sample(tmp_path, trained_3d):
    with pytest.raises(UserInputError, match="--sample"):
        export_package(trained_3d, tmp_path / "x.zip")


def test_export_refuses_to_overwrite(nuclei_package):
    with pytest.raises(UserInputError, match="already exists"):
        export_package(load_model("nuclei"), nuclei_package)


def test_overwrite_never_empties_a_folder_that_is_not_a_package(tmp_path):
    (tmp_path / "thesis.docx").write_text("years of work")
    with pytest.raises(UserInputError, match=r"not a bioimage\.io package"):
        export_package(load_model("nuclei"), tmp_path, overwrite=True)
    assert (tmp_path / "thesis.docx").read_text() == "years of work"


# ------------------------------------------------------------ packages made by others


class _Smoother(nn.Module):
    """Not a U-Net: two convolutions, 2 output channels, no activation (the package adds it)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 4, 5, padding=2)
        self.b = nn.Conv2d(4, 2, 3, padding=1)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


ARCH_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Smoother(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 4, 5, padding=2)
            self.b = nn.Conv2d(4, 2, 3, padding=1)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))
    """
)


def _foreign_package(folder: Path, weights: str) -> Path:
    """A format-0.4 package in the style of the spec's examples (unet2d_nuclei_broad): string
    axes, per-sample zero-mean-unit-variance, softmax-free sigmoid output, its own halo. Its
    test output is computed by bioimage.io's reference runner."""
    folder.mkdir()
    torch.manual_seed(3)
    net = _Smoother().eval()
    x = disks_image(shape=(96, 80))[0].astype(np.float32)[None, None]
    np.save(folder / "test_input.npy", x)
    np.save(folder / "test_output.npy", np.zeros((1, 2, 96, 80), np.float32))
    example = torch.zeros(1, 1, 64, 64)
    if weights == "torchscript":
        torch.jit.save(torch.jit.trace(net, example), folder / "weights.pt")
        entry = "torchscript:\n    source: weights.pt\n    pytorch_version: '2.1'"
    elif weights == "onnx":
        torch.onnx.export(
            net, (example,), str(folder / "weights.onnx"), input_names=["input0"],
            dynamic_axes={"input0": {0: "b", 2: "y", 3: "x"}}, opset_version=17, dynamo=False,
        )  # fmt: skip
        entry = "onnx:\n    source: weights.onnx\n    opset_version: 17"
    else:
        torch.save(net.state_dict(), folder / "weights_state.pt")
        (folder / "smoother.py").write_text(ARCH_SOURCE)
        entry = (
            "pytorch_state_dict:\n    source: weights_state.pt\n"
            "    architecture: smoother.py:Smoother\n"
            f"    architecture_sha256: {hashlib.sha256(ARCH_SOURCE.encode()).hexdigest()}\n"
            "    pytorch_version: '2.1'"
        )
    (folder / "README.md").write_text("# Smoother\n\nA test network.\n")
    (folder / "rdf.yaml").write_text(
        textwrap.dedent(
            """\
            format_version: 0.4.10
            type: model
            name: Smoother test model
            description: two convolutions, made by someone else
            authors: [{name: Someone Else}]
            cite: [{text: a paper, doi: 10.1007/978-3-319-24574-4_28}]
            license: MIT
            documentation: README.md
            tags: [test]
            timestamp: 2026-01-01T00:00:00
            inputs:
              - name: input0
                axes: bcyx
                data_type: float32
                data_range: [-.inf, .inf]
                shape: {min: [1, 1, 32, 32], step: [0, 0, 8, 8]}
                preprocessing:
                  - name: zero_mean_unit_variance
                    kwargs: {mode: per_sample, axes: yx}
            outputs:
              - name: output0
                axes: bcyx
                data_type: float32
                data_range: [0, 1]
                halo: [0, 0, 6, 6]
                shape: {reference_tensor: input0, scale: [1, 1, 1, 1], offset: [0, 0.5, 0, 0]}
                postprocessing:
                  - name: sigmoid
            test_inputs: [test_input.npy]
            test_outputs: [test_output.npy]
            weights:
            """
        )
        + "  "
        + entry
        + "\n"
    )
    return folder / "rdf.yaml"


def _reference_output(rdf: Path, x: np.ndarray) -> np.ndarray:
    """What bioimage.io's own runner gives for ``x`` (the judge for packages not ours)."""
    import bioimageio.core

    sample = bioimageio.core.predict(model=rdf, inputs={"input0": x})
    (tensor,) = sample.members.values()
    return np.asarray(tensor.data)


@pytest.mark.parametrize("weights", ["torchscript", "onnx"])
def test_package_made_by_others_runs_through_our_tiler(tmp_path, weights):
    rdf = _foreign_package(tmp_path / "smoother", weights)
    x = np.load(rdf.parent / "test_input.npy")
    reference = _reference_output(rdf, x)
    np.save(rdf.parent / "test_output.npy", reference)
    assert is_package(rdf.parent)
    model = load_any_model(rdf.parent)
    assert isinstance(model, PackageModel) and model.weights_format == weights
    assert model.halo == (6, 6) and (model.minimum, model.step) == (32, 8)
    got = Segmenter(model, device="cpu").predict(x[0, 0], output="probabilities")
    assert np.abs(got.probabilities - reference[0]).max() < 1e-4
    # Tiled: windows of the package's sizes, its halo covers the network's reach (3 pixels).
    tiled = Segmenter(model, device="cpu").predict(x[0, 0], output="probabilities", tile_size=24)
    assert np.abs(tiled.probabilities - reference[0]).max() < 1e-4
    # Smaller than the package's minimum size: padded for the network, cropped back.
    small = Segmenter(model, device="cpu").predict(x[0, 0, :20, :30], output="semantic")
    assert small.labels.shape == (20, 30)
    # Someone else's network segments, but is not napari-unet's to fine-tune.
    with pytest.raises(UserInputError, match="not be fine-tuned"):
        load_model(rdf.parent)


def test_foreign_code_needs_trust(tmp_path):
    rdf = _foreign_package(tmp_path / "smoother", "state_dict")
    x = np.load(rdf.parent / "test_input.npy")
    reference = _reference_output(rdf, x)
    np.save(rdf.parent / "test_output.npy", reference)
    with pytest.raises(UserInputError, match="--trust-code"):
        load_any_model(rdf.parent)
    model = load_package(rdf.parent, trust_code=True)
    assert model.weights_format == "pytorch_state_dict"
    got = Segmenter(model, device="cpu").predict(x[0, 0], output="probabilities")
    assert np.abs(got.probabilities - reference[0]).max() < 1e-4


def test_unreadable_packages_get_one_clear_line(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "rdf.yaml").write_text("type: model\nformat_version: 0.5.4\nname: x\n")
    with pytest.raises(UserInputError, match=r"not a valid bioimage\.io model package"):
        load_any_model(bad)
    evil = tmp_path / "evil.zip"
    import zipfile

    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("rdf.yaml", "type: model\n")
        z.writestr("../outside.txt", "x")
    with pytest.raises(UserInputError, match="outside the package"):
        load_any_model(evil)
    assert not (tmp_path / "outside.txt").exists()


# ------------------------------------------------------------------------ the command line


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "napari_unet.cli", *args], capture_output=True, text=True
    )


def test_cli_export_info_predict_and_fine_tune_a_package(tmp_path):
    import tifffile

    out = tmp_path / "nuclei_pkg"
    done = _cli("export", "nuclei", str(out), "--format", "bioimageio", "--author", "A. Person")
    assert done.returncode == 0, done.stderr
    assert "bioimageio test" in done.stdout and (out / "rdf.yaml").is_file()
    assert done.stderr.strip() == ""  # no exporter chatter
    info = _cli("info", str(out))
    assert info.returncode == 0 and "halo 128" in info.stdout and "A. Person" in info.stdout
    image, labels = disks_image(shape=(96, 96))
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    tifffile.imwrite(tmp_path / "images" / "img.tif", image)
    tifffile.imwrite(tmp_path / "labels" / "img.tif", labels)
    pred = _cli(
        "predict", str(tmp_path / "images"), "--model", str(out), "--out", str(tmp_path / "o")
    )
    assert pred.returncode == 0, pred.stderr
    found = tifffile.imread(tmp_path / "o" / "img_labels.tif")
    assert found.max() >= 4  # instances, as the bundled model gives: the package is that model
    train = _cli(
        "train", "--images", str(tmp_path / "images"), "--labels", str(tmp_path / "labels"),
        "--from", str(out), "--epochs", "1", "--steps-per-epoch", "1", "--patch-size", "64",
        "--batch-size", "1", "--out", str(tmp_path / "tuned.pt"), "--device", "cpu",
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-2000:]
    assert load_model(tmp_path / "tuned.pt").config == load_model("nuclei").config


def test_cli_refuses_foreign_code_in_one_line(tmp_path):
    rdf = _foreign_package(tmp_path / "smoother", "state_dict")
    np.save(
        rdf.parent / "test_output.npy",
        _reference_output(rdf, np.load(rdf.parent / "test_input.npy")),
    )
    image = disks_image(shape=(64, 64))[0]
    import tifffile

    tifffile.imwrite(tmp_path / "img.tif", image)
    args = (
        "predict",
        str(tmp_path / "img.tif"),
        "--model",
        str(rdf.parent),
        "--out",
        str(tmp_path / "o"),
    )
    refused = _cli(*args)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "--trust-code" in refused.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    trusted = _cli(*args, "--trust-code", "--output", "probabilities")
    assert trusted.returncode == 0, trusted.stderr
    assert (tmp_path / "o" / "img_probabilities.tif").is_file()


def test_reference_tool_passes_our_package_where_napari_unet_is_not_installed(
    nuclei_package, tmp_path
):
    """A user of bioimage.io's tools has torch and bioimageio.core, not napari-unet: the
    package's pytorch_state_dict weights must run from the architecture file it carries. A
    throwaway environment sees this one's packages but not napari-unet (its editable install
    is a .pth hook, not read there)."""
    import site
    import venv

    env = tmp_path / "env"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    inner = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    ours = [p for p in site.getsitepackages() if p.endswith("site-packages")]
    # A plain path line: its folder is on sys.path, but the .pth hooks inside it are not run.
    (Path(inner) / "borrowed.pth").write_text("\n".join(ours) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    missing = subprocess.run(
        [str(python), "-c", "import napari_unet"], capture_output=True, env=env, cwd=tmp_path
    )
    assert missing.returncode != 0, "napari-unet is importable in the throwaway environment"
    done = subprocess.run(
        [str(python), "-m", "bioimageio.core", "test", str(nuclei_package),
         "--weight-format", "pytorch_state_dict"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "napari_unet" not in done.stderr
