"""The parts of a bioimage.io package of our U-Net: allowed sizes and halo, channel names,
the spec's pre- and postprocessing steps for our normalisation, the sample and test tensors,
the cover, the documentation, and the settings napari-unet needs to read it back."""

from __future__ import annotations

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
    from ..network.fold import fold_batchnorm

    net = fold_batchnorm(model.build("cpu"))
    with torch.inference_mode():
        return net(torch.from_numpy(x)).numpy()


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
