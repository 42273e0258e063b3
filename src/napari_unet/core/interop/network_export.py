"""The bare network for people who script it: TorchScript or ONNX, probabilities out.

The exported graph is the prediction network (batch norm folded into the convolutions) followed
by its activation, so it maps a normalised image to class probabilities:

- input ``x``: float32 (N, C, [Z,] Y, X), normalised as the model's preprocessing says (for the
  default: per channel, the 1st and 99.8th percentiles of the image mapped to 0 and 1), with
  spatial sizes that are multiples of ``2**depth`` (pad, e.g. by reflection, and crop after);
- output: float32 (N, K, [Z,] Y, X) probabilities (softmax over K classes, or a sigmoid for one).

Everything needed to use it (preprocessing, class names, task, size multiple, receptive radius
for tiling) travels inside the file as JSON: ONNX metadata property ``napari_unet``, TorchScript
extra file ``napari_unet.json``. Files are written atomically.
"""

from __future__ import annotations

import contextlib
import io as _io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ... import __version__
from ..data.io import atomic_write
from ..errors import UserInputError
from ..models.model_file import ModelFile
from ..network.fold import fold_batchnorm
from ..network.unet import activation, receptive_radius

EXPORT_FORMATS = ("torchscript", "onnx")
METADATA_KEY = "napari_unet"


class ProbabilityNetwork(nn.Module):
    """The folded network followed by its activation: normalised image -> probabilities
    (or logits, with ``probabilities=False``, for formats that apply the activation as a
    separate step, like bioimage.io's postprocessing)."""

    def __init__(self, model: ModelFile, probabilities: bool = True):
        super().__init__()
        self.net = fold_batchnorm(model.build("cpu"))
        self.probabilities = probabilities

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        return activation(logits) if self.probabilities else logits


def export_metadata(model: ModelFile) -> dict[str, Any]:
    """What a script needs to feed the exported network and read its output."""
    config = model.config
    axes = "bczyx" if config.spatial_dims == 3 else "bcyx"
    return {
        "napari_unet_version": __version__,
        "input": {
            "name": "x",
            "axes": axes,
            "channels": config.in_channels,
            "dtype": "float32",
            "spatial_size_multiple": config.size_multiple,
            "preprocessing": model.preprocessing.to_dict(),
        },
        "output": {"axes": axes, "channels": config.out_channels, "meaning": "probabilities"},
        "receptive_radius": receptive_radius(config),
        "class_names": list(model.class_names),
        "task": dict(model.task),
        "config": config.to_dict(),
        "description": model.description,
    }


def _example_input(model: ModelFile) -> torch.Tensor:
    config = model.config
    side = max(2 * config.size_multiple, 32 if config.spatial_dims == 2 else 16)
    return torch.zeros((1, config.in_channels) + (side,) * config.spatial_dims)


def check_exportable(model: ModelFile) -> None:
    """Refuse what the exported graphs cannot carry, with the reason."""
    if model.config.padding == "valid":
        raise UserInputError(
            "cannot export a valid-padding (the paper's geometry) U-Net: the mirroring that "
            "makes it cover a whole tile depends on the tile's size, which a TorchScript or ONNX "
            "graph fixes when it is written. Use the model file with napari-unet, or train with "
            "--padding same for a model to share"
        )


def export_network(
    model: ModelFile, path: str | os.PathLike, fmt: str, *, probabilities: bool = True
) -> Path:
    """Write ``model``'s network as ``fmt`` ("torchscript" or "onnx") to ``path``; returns it.

    ``probabilities=False`` leaves the activation out: the graph then returns logits.
    """
    if fmt not in EXPORT_FORMATS:
        raise UserInputError(f"export format must be one of {EXPORT_FORMATS}, got {fmt!r}")
    check_exportable(model)
    path = Path(path)
    if not path.parent.is_dir():
        raise UserInputError(f"cannot export: folder {path.parent} does not exist")
    network = ProbabilityNetwork(model, probabilities).eval()
    meta = export_metadata(model)
    if not probabilities:
        meta["output"]["meaning"] = "logits"
    metadata = json.dumps(meta)
    data = (
        _onnx_bytes(network, model, metadata)
        if fmt == "onnx"
        else _torchscript_bytes(network, model, metadata)
    )
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def _torchscript_bytes(network: nn.Module, model: ModelFile, metadata: str) -> bytes:
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns of the shape checks it turns into constants: that is the point.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # type: ignore[attr-defined]
        # Tracing records the operations for an input whose sizes are multiples of 2**depth:
        # the network's own padding is then a no-op, and every such size runs the same graph.
        traced = torch.jit.trace(network, _example_input(model), check_trace=False)
    buffer = _io.BytesIO()
    torch.jit.save(traced, buffer, _extra_files={f"{METADATA_KEY}.json": metadata})
    return buffer.getvalue()


def _onnx_bytes(network: ProbabilityNetwork, model: ModelFile, metadata: str) -> bytes:
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ImportError as err:
        raise UserInputError(
            "exporting to ONNX needs the onnx packages: pip install 'napari-unet-torch[onnx]'"
        ) from err
    from torch.export import Dim

    config = model.config
    multiple = config.size_multiple
    spatial = {
        axis: multiple * Dim(f"n{name}", min=1, max=65536 // multiple)
        for axis, name in zip(
            range(2, 2 + config.spatial_dims), "zyx"[-config.spatial_dims :], strict=True
        )
    }
    shapes = {"x": {0: Dim("batch", min=1, max=4096), **spatial}}
    buffer = _io.BytesIO()
    # The exporter reports each of its stages on stdout, and warns through logging that
    # torchvision's operators are unavailable (we use none); the CLI prints its own line.
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    output_name = "probabilities" if network.probabilities else "logits"
    try:
        with (
            contextlib.redirect_stdout(_io.StringIO()),
            torch.no_grad(),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore", FutureWarning)  # torch.export's own deprecations
            program = torch.onnx.export(
                network, (_example_input(model),), dynamo=True, dynamic_shapes=shapes,
                input_names=["x"], output_names=[output_name], verbose=False,
            )  # fmt: skip
    finally:
        registration.setLevel(level)
    if program is None:  # only the legacy exporter returns nothing
        raise RuntimeError("torch.onnx.export returned no program")
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata
    onnx.save_model(proto, buffer)
    return buffer.getvalue()


def read_export_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The napari-unet metadata of an exported TorchScript or ONNX file."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        values = {p.key: p.value for p in proto.metadata_props}
        return json.loads(values[METADATA_KEY])
    files = {f"{METADATA_KEY}.json": ""}
    torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    return json.loads(files[f"{METADATA_KEY}.json"])
