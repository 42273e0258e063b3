"""Write a model as a bioimage.io model package (format 0.5), for deepImageJ, ilastik, QuPath,
bioimage.io's own tools and anyone with ``onnxruntime``.

The package holds the network three times, each checked by ``bioimageio test``:

- ``pytorch_state_dict``: our U-Net's weights, with ``napari_unet.core.network.unet.build_unet`` and
  the architecture's settings as the way to rebuild it (the parent of the other two);
- ``torchscript`` and ``onnx``: the same network traced, batch norm folded in.

All three map the normalised image to logits; the package's preprocessing (our percentile
normalisation as the spec's ``scale_range``) and postprocessing (``sigmoid`` / ``softmax``)
surround them. Spatial sizes are ``min + n * step`` with ``step = 2**depth`` and ``min`` the
smallest such size larger than twice the halo, the receptive radius (rounded up to a step) that
makes tiled output exact. napari-unet's own settings (preprocessing, classes, task) travel in
``config.napari_unet``, so importing the package back gives the same model, fine-tunable.
"""

from __future__ import annotations

import datetime as _dt
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ... import __version__
from ..data.normalize import (
    BRIGHT_BACKGROUND,
    Preprocessing,
    channels_first,
    intensity_stats,
    select_channels,
)
from ..errors import UserInputError
from ..models.model_file import ModelFile, bundled_models
from ..network.unet import receptive_radius
from .architecture_source import ARCHITECTURE_CALLABLE, write_standalone_source
from .bioimageio_spec import needs_bioimageio
from .network_export import check_exportable, export_network
from .package_ops import operations, run

UNET_PAPER = {
    "text": "Ronneberger, O., Fischer, P. and Brox, T. U-Net: Convolutional Networks for "
    "Biomedical Image Segmentation. MICCAI 2015.",
    "doi": "10.1007/978-3-319-24574-4_28",
}
_SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "nuclei.png"


def _identifier(text: str) -> str:
    """A channel name the spec accepts (letters, digits, underscores)."""
    cleaned = "".join(c if c.isalnum() else "_" for c in text.strip()) or "channel"
    return cleaned if not cleaned[0].isdigit() else f"c{cleaned}"


def package_sizes(model: ModelFile) -> tuple[int, int, int]:
    """(min, step, halo) of the package's spatial axes.

    The halo is the receptive radius rounded up to a multiple of the step: bioimage.io's runner
    pads a whole image by the halo on each side before one pass, and only a multiple of the step
    keeps that padded size valid and the network's pooling grid where ours is (a U-Net is not
    shift-invariant, so a grid moved by a few pixels changes every probability a little).
    """
    step = model.config.size_multiple
    halo = -(-receptive_radius(model.config) // step) * step
    minimum = (2 * halo // step + 1) * step
    return minimum, step, halo


def input_channel_names(model: ModelFile) -> list[str]:
    prep = model.preprocessing
    if prep.channel_mode == "gray":
        return ["gray"]
    if prep.channel_mode == "single":
        return [f"channel_{prep.channel}"]
    if model.config.in_channels == 3:
        return ["red", "green", "blue"]
    return [f"channel_{i}" for i in range(model.config.in_channels)]


def preprocessing_steps(
    prep: Preprocessing, space: list[str], inverted: bool = False
) -> list[dict[str, Any]]:
    """Our normalisation as the spec's operations, on a (batch, channel, *space) tensor;
    ``inverted``: then 1 - x (see :func:`package_inverts`)."""
    steps: list[dict[str, Any]] = [{"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}]
    if prep.norm == "percentile":
        axes = space if prep.per_channel else ["channel", *space]
        steps.append(
            {
                "id": "scale_range",
                "kwargs": {
                    "axes": axes,
                    "min_percentile": float(prep.low),
                    "max_percentile": float(prep.high),
                    # Our flat-image guard (scale 1) and the spec's eps differ only for images
                    # with no contrast at all.
                    "eps": 1e-6,
                },
            }
        )
    elif prep.norm == "fixed":
        span = float(prep.fixed_max - prep.fixed_min)
        steps.append(
            {
                "id": "scale_linear",
                "kwargs": {"gain": 1.0 / span, "offset": -float(prep.fixed_min) / span},
            }
        )
    if inverted:
        steps.append({"id": "scale_linear", "kwargs": {"gain": -1.0, "offset": 1.0}})
    return steps


def package_inverts(model: ModelFile, sample: np.ndarray) -> bool:
    """Whether the package turns intensities upside down. With ``invert="auto"`` napari-unet
    decides per image (bright background or not); the spec's operations cannot, so the package
    is written for images like its test ``sample`` (raw), and its documentation says so."""
    prep = model.preprocessing
    if prep.invert != "auto":
        return prep.invert == "yes"
    view = channels_first(np.asarray(sample), model.config.spatial_dims)
    _, scale = intensity_stats(view, prep)
    return bool(scale[0] < 0)


def output_channel_names(model: ModelFile) -> list[str]:
    """One name per output channel: a one-channel (sigmoid) model names its foreground."""
    names = [_identifier(c) for c in model.class_names]
    return names[-model.config.out_channels :]


def postprocessing_steps(out_channels: int) -> list[dict[str, Any]]:
    if out_channels == 1:
        return [{"id": "sigmoid"}]
    return [{"id": "softmax", "kwargs": {"axis": "channel"}}]


def package_sample(model: ModelFile, sample: np.ndarray | None) -> np.ndarray:
    """``sample``, or the bundled nuclei image for a 2D model given none."""
    if sample is not None:
        return sample
    if model.config.spatial_dims == 3:
        raise UserInputError(
            "a 3D model's package needs a test volume: pass --sample with one of your images"
        )
    from ..data.io import read_image

    return read_image(_SAMPLE)


def test_input(model: ModelFile, sample: np.ndarray | None) -> np.ndarray:
    """A (1, C, *spatial) float32 tensor of valid size cut from ``sample`` (raw intensities,
    with the channels the package's input takes), or from the bundled nuclei image for 2D
    models given no sample."""
    config = model.config
    sample = package_sample(model, sample)
    view = np.asarray(channels_first(np.asarray(sample), config.spatial_dims))
    if view.dtype.kind not in "iuf":
        view = view.astype(np.float32)
    prep = model.preprocessing
    # The package takes the channels our network sees, before intensity scaling: apply our
    # channel handling (gray, one channel) with an identity normalisation.
    if prep.channel_mode == "as_is" and view.shape[0] == 1 and config.in_channels > 1:
        view = np.repeat(view, config.in_channels, axis=0)  # grayscale sample, colour model
    view = select_channels(view.astype(np.float32), prep, config.in_channels)
    minimum, step, _ = package_sizes(model)
    shape = view.shape[1:]
    sizes = []
    for n in shape:
        size = minimum + max(0, (n - minimum) // step) * step
        sizes.append(min(size, minimum + 2 * step))  # a small test: cheap to check
    pads = [(0, 0)] + [(0, max(0, s - n)) for s, n in zip(sizes, shape, strict=True)]
    if any(p[1] for p in pads):
        view = np.pad(view, pads, mode="reflect" if min(shape) > 1 else "edge")
    starts = [(n - s) // 2 for n, s in zip(view.shape[1:], sizes, strict=True)]
    crop = tuple(slice(a, a + s) for a, s in zip(starts, sizes, strict=True))
    return np.ascontiguousarray(view[(slice(None), *crop)][np.newaxis], dtype=np.float32)


def _cover(test_in: np.ndarray, test_out: np.ndarray, path: Path) -> None:
    """Input beside output, 2:1, PNG (what bioimage.io shows for the model)."""
    from skimage.io import imsave

    def plane(t: np.ndarray) -> np.ndarray:
        t = t[0]
        while t.ndim > 3:  # 3D: the middle slice
            t = t[:, t.shape[1] // 2]
        img = t[:3].mean(axis=0) if t.shape[0] != 3 else np.moveaxis(t, 0, -1)
        lo, hi = np.percentile(img, [1, 99.8])
        img = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
        return np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img

    out = test_out[0]
    out_img = out[0] if out.shape[0] == 1 else 1.0 - out[0]  # foreground probability
    while out_img.ndim > 2:
        out_img = out_img[out_img.shape[0] // 2]
    right = np.stack([out_img] * 3, axis=-1)
    left = plane(test_in)
    cover = np.concatenate([left, right], axis=1)
    imsave(path, (np.clip(cover, 0, 1) * 255).astype(np.uint8), check_contrast=False)


def _documentation(model: ModelFile, name: str | None, inverted: bool = False) -> str:
    """The model card (bundled models) or a description, with the "# Validation" section
    bioimage.io asks for."""
    card = None
    for bundled, path in bundled_models().items():
        if name == bundled and path.with_suffix(".md").is_file():
            card = path.with_suffix(".md").read_text()
    lines = [card.strip()] if card else [f"# {model.description or 'U-Net'}", ""]
    if not card:
        c = model.config
        lines.append(
            f"A {c.spatial_dims}D U-Net (depth {c.depth}, {c.base_features} base features, "
            f"{c.norm} norm) trained with napari-unet {__version__}; classes: "
            f"{', '.join(model.class_names)}."
        )
    runs = [r for r in model.history.get("runs") or [] if isinstance(r, dict)]
    if "# Validation" not in (card or ""):
        lines += ["", "# Validation", ""]
        scored = [r for r in runs if r.get("best_score") is not None]
        if scored:
            r = scored[-1]
            lines.append(
                f"Best validation {r.get('score', 'score')} during training: "
                f"{r['best_score']:.4f} on {_count(r.get('val_images'))} held-out image(s)."
            )
        else:
            lines.append("No held-out validation score was recorded for this model.")
        lines.append(
            "The package's test tensors check that every weights format reproduces the "
            "network's output; they do not measure segmentation quality."
        )
    if runs and not card:
        lines += ["", "# Training data", ""]
        for i, r in enumerate(runs, 1):
            lines.append(
                f"- run {i}: {_count(r.get('train_images'))} training and "
                f"{_count(r.get('val_images'))} validation image(s), {r.get('steps', '?')} "
                f"steps, {r.get('seconds', '?')} s on {r.get('device', '?')}"
            )
    lines += ["", "# Use", ""]
    if model.preprocessing.invert == "auto":
        kind = "bright" if inverted else "dark"
        lines += [
            "In napari-unet this model inverts the intensities of images with a bright "
            f"background (median above {BRIGHT_BACKGROUND} after percentile scaling, e.g. H&E, "
            "brightfield), image by image. The bioimage.io operations cannot decide per image: "
            f"this package is written for {kind}-background images like its test input"
            + (" (it inverts every image)" if inverted else " (it inverts none)")
            + "; invert the others before giving them to it.",
            "",
        ]
    lines += [
        "Made by napari-unet (`napari-unet export MODEL OUT --format bioimageio`). In napari-unet "
        "the package is a model like any other (`napari-unet predict --model PACKAGE.zip`, "
        "Load... in napari); elsewhere any bioimage.io consumer runs it. The output is the "
        "per-class probability map"
        + (
            "; napari-unet turns it into objects by a seeded watershed (interior seeds)."
            if model.is_instance_model
            else "."
        ),
    ]
    return "\n".join(lines) + "\n"


def _count(value: Any) -> Any:
    return len(value) if isinstance(value, (list, tuple)) else (value if value is not None else "?")


def _state_dict_bytes(model: ModelFile) -> bytes:
    import io as _io

    weights = {k: v.float() if v.is_floating_point() else v for k, v in model.weights.items()}
    buffer = _io.BytesIO()
    torch.save(weights, buffer)
    return buffer.getvalue()


def _logits(model: ModelFile, x: np.ndarray) -> np.ndarray:
    from ..network.unet import fold_batchnorm

    net = fold_batchnorm(model.build("cpu"))
    with torch.inference_mode():
        return net(torch.from_numpy(x)).numpy()


def export_package(
    model: ModelFile,
    out: str | Path,
    *,
    name: str | None = None,
    sample: np.ndarray | None = None,
    authors: list[str] | None = None,
    license: str = "CC-BY-4.0",
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as a bioimage.io package to ``out`` (a ``.zip`` or a folder).

    ``name`` is the bundled model's name (its model card becomes the documentation);
    ``sample`` a raw image the test tensors and cover are cut from (default: the bundled nuclei
    image, 2D only). Validated by ``bioimageio.spec`` before anything is written; the zip is
    written atomically, a folder only where none exists (or with ``overwrite``).
    """
    check_exportable(model)
    needs_bioimageio()
    from bioimageio.spec import (
        ValidationContext,
        build_description,
        save_bioimageio_package,
        save_bioimageio_package_as_folder,
    )

    out = Path(out)
    if out.exists() and not overwrite:
        raise UserInputError(f"{out} already exists; pass --overwrite to replace it")
    if out.suffix.lower() != ".zip" and (out.is_file() or out.is_symlink()):
        raise UserInputError(
            f"{out} is a file, and a package without .zip is a folder: give a .zip name or a "
            "new folder (the file is not replaced)"
        )
    if out.is_dir() and any(out.iterdir()):
        from .bioimageio_spec import is_package

        if not is_package(out):  # --overwrite replaces a package, never any other folder
            raise UserInputError(
                f"{out} is a folder that is not a bioimage.io package; choose a new folder or a .zip"
            )
    if not out.parent.is_dir():
        raise UserInputError(f"cannot export: folder {out.parent} does not exist")
    config = model.config
    space = ["z", "y", "x"][-config.spatial_dims :]
    axes = ["batch", "channel", *space]
    minimum, step, halo = package_sizes(model)
    sample = package_sample(model, sample)  # read once, for the inversion and the test input
    inverted = package_inverts(model, sample)
    pre = preprocessing_steps(model.preprocessing, space, inverted)
    post = postprocessing_steps(config.out_channels)

    with tempfile.TemporaryDirectory(prefix="napari-unet-package-") as tmp_name:
        tmp = Path(tmp_name)
        x = test_input(model, sample)
        prepared = run(operations(pre), x, axes)
        logits = _logits(model, prepared)
        y = run(operations(post), logits, axes).astype(np.float32)
        np.save(tmp / "test_input.npy", x)
        np.save(tmp / "test_output.npy", y)
        _cover(x, y, tmp / "cover.png")
        import tifffile

        tifffile.imwrite(tmp / "sample_input.tif", x[0], photometric="minisblack")
        tifffile.imwrite(tmp / "sample_output.tif", y[0], photometric="minisblack")
        (tmp / "README.md").write_text(_documentation(model, name, inverted))
        (tmp / "weights_state_dict.pt").write_bytes(_state_dict_bytes(model))
        # The network's code travels with the package: runners need torch, not napari-unet.
        source, sha256 = write_standalone_source(tmp)
        export_network(model, tmp / "weights_torchscript.pt", "torchscript", probabilities=False)
        export_network(model, tmp / "weights.onnx", "onnx", probabilities=False)
        import onnx

        opset = max(
            (
                o.version
                for o in onnx.load(str(tmp / "weights.onnx")).opset_import
                if o.domain in ("", "ai.onnx")
            ),
            default=18,
        )
        torch_version = torch.__version__.split("+")[0]
        title = name or model.description.split(",")[0].strip() or "napari-unet U-Net"
        space_in = [
            {"type": "space", "id": a, "size": {"min": minimum, "step": step}} for a in space
        ]
        space_out = [
            {"type": "space", "id": a, "size": {"tensor_id": "raw", "axis_id": a}, "halo": halo}
            for a in space
        ]
        rdf: dict[str, Any] = {
            "type": "model",
            "format_version": "0.5.4",
            "name": _title(title),
            "description": (model.description or "A U-Net trained with napari-unet")[:1000],
            "authors": [{"name": a} for a in (authors or ["napari-unet user"])],
            "cite": [UNET_PAPER],
            "license": license,
            "tags": ["unet", "pytorch", "napari-unet", f"{config.spatial_dims}d", "segmentation"],
            "documentation": "README.md",
            "covers": ["cover.png"],
            "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "inputs": [
                {
                    "id": "raw",
                    "description": "raw image: " + ", ".join(input_channel_names(model)),
                    "axes": [
                        {"type": "batch"},
                        {"type": "channel", "channel_names": input_channel_names(model)},
                        *space_in,
                    ],
                    "test_tensor": {"source": "test_input.npy"},
                    "sample_tensor": {"source": "sample_input.tif"},
                    "preprocessing": pre,
                }
            ],
            "outputs": [
                {
                    "id": "probabilities",
                    "description": "probabilities: " + ", ".join(output_channel_names(model)),
                    "axes": [
                        {
                            "type": "channel",
                            "channel_names": output_channel_names(model),
                        },
                        *space_out,
                    ],
                    "test_tensor": {"source": "test_output.npy"},
                    "sample_tensor": {"source": "sample_output.tif"},
                    "data": {"type": "float32", "range": [0.0, 1.0]},
                    "postprocessing": post,
                }
            ],
            "weights": {
                "pytorch_state_dict": {
                    "source": "weights_state_dict.pt",
                    "architecture": {
                        "source": source,
                        "sha256": sha256,
                        "callable": ARCHITECTURE_CALLABLE,
                        "kwargs": config.to_dict(),
                    },
                    "pytorch_version": torch_version,
                },
                "torchscript": {
                    "source": "weights_torchscript.pt",
                    "parent": "pytorch_state_dict",
                    "pytorch_version": torch_version,
                },
                "onnx": {
                    "source": "weights.onnx",
                    "parent": "pytorch_state_dict",
                    "opset_version": opset,
                },
            },
            "config": {"napari_unet": _our_settings(model)},
        }
        rdf["outputs"][0]["axes"].insert(0, {"type": "batch"})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with ValidationContext(root=tmp, perform_io_checks=True):
                descr = build_description(rdf)
        if not hasattr(descr, "weights"):  # InvalidDescr: say what the validator said
            errors = getattr(descr.validation_summary, "errors", []) or []
            detail = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors[:3])
            raise UserInputError(f"the package did not validate: {detail or 'unknown reason'}")
        from ..data.io import Output, atomic_write, write_outputs

        try:
            if out.suffix.lower() == ".zip":
                atomic_write(out, lambda path: save_bioimageio_package(descr, output_path=path))
            else:  # a folder: replaces only a package folder, all or nothing
                write_outputs(
                    [
                        Output(
                            out,
                            lambda path: save_bioimageio_package_as_folder(descr, output_path=path),
                            folder=True,
                            is_ours=lambda p: is_package_folder(p) or not any(p.iterdir()),
                            kind="a bioimage.io package folder",
                        )
                    ],
                    overwrite=overwrite,
                )
        except ValueError as err:  # the spec's last checks (test tensors against the axes)
            detail = str(err).strip().splitlines()[-1]
            raise UserInputError(f"the package did not validate: {detail}") from err
    return out


def is_package_folder(path: Path) -> bool:
    """A folder holding a bioimage.io package (its ``rdf.yaml`` or ``bioimageio.yaml``)."""
    return any((path / name).is_file() for name in ("rdf.yaml", "bioimageio.yaml"))


def _title(text: str) -> str:
    """A package name of the spec's allowed characters and length."""
    allowed = "".join(c if c.isalnum() or c in " _-()" else " " for c in text)
    return " ".join(allowed.split())[:128] or "napari-unet U-Net"


def _our_settings(model: ModelFile) -> dict[str, Any]:
    """What napari-unet needs beyond the spec to give back the same model."""
    return {
        "version": __version__,
        "config": model.config.to_dict(),
        "preprocessing": model.preprocessing.to_dict(),
        "class_names": list(model.class_names),
        "task": dict(model.task),
        "description": model.description,
        # Image lists become counts: the description stays readable.
        "history": {
            "runs": [
                {k: _count(v) if isinstance(v, list) else _plain(v) for k, v in r.items()}
                for r in model.history.get("runs") or []
                if isinstance(r, dict)
            ]
        },
    }


def _plain(value: Any) -> Any:
    """JSON-like data only (YAML must hold it)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
