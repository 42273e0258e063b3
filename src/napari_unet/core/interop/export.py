"""One entry for exporting a model (the CLI's ``export`` and the dock's *Export…*): a
bioimage.io package, TorchScript or ONNX, with a line that says what was written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import UserInputError
from ..models.model_file import ModelFile

FORMATS = ("bioimageio", "torchscript", "onnx")


def format_for_path(path: str | Path) -> str:
    """The export format a file name asks for: ``.zip`` (or a folder) a bioimage.io package,
    ``.onnx`` ONNX, ``.pt`` / ``.torchscript`` TorchScript."""
    name = Path(path).name.lower()
    if name.endswith(".onnx"):
        return "onnx"
    if name.endswith((".pt", ".torchscript")):
        return "torchscript"
    return "bioimageio"


def export_model(
    model: ModelFile,
    out: str | Path,
    fmt: str,
    *,
    name: str | None = None,
    sample: np.ndarray | None = None,
    authors: list[str] | None = None,
    license: str = "CC-BY-4.0",
    overwrite: bool = False,
) -> str:
    """Write ``model`` to ``out`` as ``fmt`` (see :data:`FORMATS`); returns a one-line summary.

    ``name``: the bundled model's name (its card documents the package); ``sample``, ``authors``
    and ``license`` apply to bioimage.io packages only."""
    if fmt not in FORMATS:
        raise UserInputError(f"export format must be one of {FORMATS}, got {fmt!r}")
    if not isinstance(model, ModelFile):
        raise UserInputError(
            "only napari-unet models can be exported; this one is a package from elsewhere"
        )
    out = Path(out)
    if out.exists() and not overwrite:
        raise UserInputError(f"{out} already exists; pass --overwrite to replace it")
    what = name or "the model"
    if fmt == "bioimageio":
        from .bioimageio_export import export_package, package_sizes

        export_package(
            model, out, name=name, sample=sample, authors=authors, license=license,
            overwrite=overwrite,
        )  # fmt: skip
        minimum, step, halo = package_sizes(model)
        return (
            f"exported {what} as a bioimage.io package to {out}: torchscript, onnx and "
            f"pytorch_state_dict weights; input sides {minimum} + n x {step}, halo {halo}; "
            f"check it with `bioimageio test {out}`"
        )
    if sample is not None or authors:
        raise UserInputError("--sample and --author apply to --format bioimageio only")
    from .network_export import export_metadata, export_network

    export_network(model, out, fmt)
    meta = export_metadata(model)
    return (
        f"exported {what} as {fmt} to {out}: input {meta['input']['axes']} float32 "
        f"with {meta['input']['channels']} channel(s), spatial sizes multiples of "
        f"{meta['input']['spatial_size_multiple']}, normalised as "
        f"{json.dumps(meta['input']['preprocessing'])}; output {meta['output']['channels']} "
        f"probability channel(s) {meta['class_names']}"
    )
