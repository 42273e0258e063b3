"""Write a model as a bioimage.io model package (format 0.5), for deepImageJ, ilastik, QuPath,
bioimage.io's own tools and anyone with ``onnxruntime``.

The package holds the network three times, each checked by ``bioimageio test``:

- ``pytorch_state_dict``: our U-Net's weights, with the network's code as one file of its own
  (``architecture_source.py``) and its settings as the way to rebuild it (the parent of the
  other two);
- ``torchscript`` and ``onnx``: the same network traced, batch norm folded in.

All three map the normalised image to logits; the package's preprocessing (our percentile
normalisation as the spec's ``scale_range``) and postprocessing (``sigmoid`` / ``softmax``)
surround them. Spatial sizes are ``min + n * step`` with ``step = 2**depth`` and ``min`` the
smallest such size larger than twice the halo, the receptive radius (rounded up to a step) that
makes tiled output exact. napari-unet's own settings (preprocessing, classes, task) travel in
``config.napari_unet``, so importing the package back gives the same model, fine-tunable.

The parts (sizes, channel names, steps, tensors, cover, documentation) are in
``package_parts.py``; this module assembles, validates and writes them.
"""

from __future__ import annotations

import datetime as _dt
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserInputError
from ..models.model_file import ModelFile
from .architecture_source import ARCHITECTURE_CALLABLE, write_standalone_source
from .bioimageio_spec import is_package, needs_bioimageio
from .network_export import check_exportable, export_network
from .package_ops import operations, run
from .package_parts import (
    UNET_PAPER,
    _cover,
    _documentation,
    _logits,
    _our_settings,
    _state_dict_bytes,
    _title,
    input_channel_names,
    is_package_folder,
    output_channel_names,
    package_inverts,
    package_sample,
    package_sizes,
    postprocessing_steps,
    preprocessing_steps,
    test_input,
)

# Names scripts and tests import from here.
__all__ = ["export_package", "is_package_folder", "package_sizes"]


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
    out = Path(out)
    _check_out(out, overwrite)
    space = ["z", "y", "x"][-model.config.spatial_dims :]
    sample = package_sample(model, sample)  # read once, for the inversion and the test input
    inverted = package_inverts(model, sample)
    steps = (
        preprocessing_steps(model.preprocessing, space, inverted),
        postprocessing_steps(model.config.out_channels),
    )
    with tempfile.TemporaryDirectory(prefix="napari-unet-package-") as tmp_name:
        tmp = Path(tmp_name)
        weights = _write_files(model, tmp, sample, steps, space, name, inverted)
        rdf = _description(model, name, authors, license, steps, space, weights)
        _save(_validated(rdf, tmp), out, overwrite)
    return out


def _check_out(out: Path, overwrite: bool) -> None:
    """``out`` may be written: new, or (``overwrite``) a package or a zip, never a folder of
    something else or a file where a folder goes."""
    if out.exists() and not overwrite:
        raise UserInputError(f"{out} already exists; pass --overwrite to replace it")
    if out.suffix.lower() != ".zip" and (out.is_file() or out.is_symlink()):
        raise UserInputError(
            f"{out} is a file, and a package without .zip is a folder: give a .zip name or a "
            "new folder (the file is not replaced)"
        )
    if out.is_dir() and any(out.iterdir()) and not is_package(out):
        # --overwrite replaces a package, never any other folder
        raise UserInputError(
            f"{out} is a folder that is not a bioimage.io package; choose a new folder or a .zip"
        )
    if not out.parent.is_dir():
        raise UserInputError(f"cannot export: folder {out.parent} does not exist")


def _write_files(model, tmp: Path, sample, steps, space, name, inverted) -> dict[str, Any]:
    """The package's files in ``tmp``: test and sample tensors computed by the network, the
    cover, the documentation, the weights three ways and the architecture's source; returns
    what the description needs to know of the weights."""
    import tifffile

    pre, post = steps
    axes = ["batch", "channel", *space]
    x = test_input(model, sample)
    y = run(operations(post), _logits(model, run(operations(pre), x, axes)), axes)
    y = y.astype(np.float32)
    np.save(tmp / "test_input.npy", x)
    np.save(tmp / "test_output.npy", y)
    _cover(x, y, tmp / "cover.png")
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
    return {"source": source, "sha256": sha256, "opset": opset}


def _description(model, name, authors, license, steps, space, weights) -> dict[str, Any]:
    """The package's description (rdf), format 0.5."""
    pre, post = steps
    minimum, step, halo = package_sizes(model)
    title = name or model.description.split(",")[0].strip() or "napari-unet U-Net"
    space_in = [{"type": "space", "id": a, "size": {"min": minimum, "step": step}} for a in space]
    space_out = [
        {"type": "space", "id": a, "size": {"tensor_id": "raw", "axis_id": a}, "halo": halo}
        for a in space
    ]
    return {
        "type": "model",
        "format_version": "0.5.4",
        "name": _title(title),
        "description": (model.description or "A U-Net trained with napari-unet")[:1000],
        "authors": [{"name": a} for a in (authors or ["napari-unet user"])],
        "cite": [UNET_PAPER],
        "license": license,
        "tags": ["unet", "pytorch", "napari-unet", f"{model.config.spatial_dims}d", "segmentation"],
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
                    {"type": "batch"},
                    {"type": "channel", "channel_names": output_channel_names(model)},
                    *space_out,
                ],
                "test_tensor": {"source": "test_output.npy"},
                "sample_tensor": {"source": "sample_output.tif"},
                "data": {"type": "float32", "range": [0.0, 1.0]},
                "postprocessing": post,
            }
        ],
        "weights": _weights(model, weights),
        "config": {"napari_unet": _our_settings(model)},
    }


def _weights(model: ModelFile, weights: dict[str, Any]) -> dict[str, Any]:
    """The three weights entries: the state dict with its architecture file, and TorchScript
    and ONNX traced from it."""
    torch_version = torch.__version__.split("+")[0]
    return {
        "pytorch_state_dict": {
            "source": "weights_state_dict.pt",
            "architecture": {
                "source": weights["source"],
                "sha256": weights["sha256"],
                "callable": ARCHITECTURE_CALLABLE,
                "kwargs": model.config.to_dict(),
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
            "opset_version": weights["opset"],
        },
    }


def _validated(rdf: dict[str, Any], root: Path):
    """The description as bioimageio.spec builds it, checking the files under ``root``."""
    from bioimageio.spec import ValidationContext, build_description

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with ValidationContext(root=root, perform_io_checks=True):
            descr = build_description(rdf)
    if not hasattr(descr, "weights"):  # InvalidDescr: say what the validator said
        errors = getattr(descr.validation_summary, "errors", []) or []
        detail = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors[:3])
        raise UserInputError(f"the package did not validate: {detail or 'unknown reason'}")
    return descr


def _save(descr, out: Path, overwrite: bool) -> None:
    """The zip atomically, or the folder all at once (replacing only a package folder)."""
    from bioimageio.spec import save_bioimageio_package, save_bioimageio_package_as_folder

    from ..data.io import Output, atomic_write, write_outputs

    try:
        if out.suffix.lower() == ".zip":
            atomic_write(out, lambda path: save_bioimageio_package(descr, output_path=path))
        else:
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
