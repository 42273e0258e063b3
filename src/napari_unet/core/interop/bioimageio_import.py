"""Open bioimage.io model packages (a folder with ``bioimageio.yaml`` / ``rdf.yaml``, or its
``.zip``) wherever napari-unet takes a model.

- A package napari-unet wrote (``pytorch_state_dict`` weights of our U-Net, architecture
  ``napari_unet.core.network.unet.build_unet``) comes back as a :class:`~.checkpoint.ModelFile`: the
  same model, fine-tunable. Its weights are read with ``torch.load(weights_only=True)`` and its
  architecture settings as data: opening it runs no code from the package.
- Any other package becomes a :class:`PackageModel`, whose ``torchscript`` or ``onnx`` weights
  run through napari-unet's tiler with the package's halo, its pre- and postprocessing
  (:mod:`.package_ops`) and its allowed input sizes.
- A package whose only runnable weights are a ``pytorch_state_dict`` of someone else's
  architecture would import and run that Python source: it is refused unless the caller passes
  ``trust_code=True`` (``--trust-code`` on the command line, a question in napari).

Reading packages needs the ``bioimageio`` extra (``bioimageio.spec`` validates the description
and converts older formats, 0.4 included, to 0.5).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.normalize import Preprocessing, _sample, channels_first, check_image_array, read_block
from ..errors import CodeNotTrusted, ModelFileError, UserInputError
from ..models.model_file import (
    ModelFile,
    _check_class_names,
    _check_weights_fit,
    _read_archive,
    _refuse_non_finite,
)
from ..network.unet import UNetConfig
from .architecture_source import ARCHITECTURE_FILE
from .bioimageio_spec import Package, open_package
from .package_ops import Operation, operations

OUR_ARCHITECTURE = ("napari_unet.core.model", "build_unet")  # packages before 2026-11-30
RUNNABLE = ("torchscript", "onnx", "pytorch_state_dict")


def _formats(descr: Any) -> list[str]:
    weights = descr.weights
    return [f for f in (*RUNNABLE, "keras_hdf5", "tensorflow_saved_model_bundle", "tensorflow_js")
            if getattr(weights, f, None) is not None]  # fmt: skip


def _is_ours(descr: Any) -> bool:
    """A package napari-unet wrote: its U-Net named by our module (packages before
    2026-11-30) or carried as our architecture file, with our settings beside it. Its network
    is then rebuilt from the settings by napari-unet's own code: the file is never run here."""
    state = getattr(descr.weights, "pytorch_state_dict", None)
    arch = getattr(state, "architecture", None)
    if arch is None or str(getattr(arch, "callable", "")) != OUR_ARCHITECTURE[1]:
        return False
    if getattr(arch, "import_from", None) == OUR_ARCHITECTURE[0]:
        return True
    source = getattr(arch, "source", None)
    name = str(getattr(source, "path", None) or source or "").rsplit("/", 1)[-1]
    settings = (descr.config.model_dump() or {}).get("napari_unet")
    return name == ARCHITECTURE_FILE and isinstance(settings, dict)


def load_package(path: str | Path, *, trust_code: bool = False) -> ModelFile | PackageModel:
    """A package as a napari-unet :class:`ModelFile` (our own U-Net) or a :class:`PackageModel`."""
    package = open_package(path)
    if _is_ours(package.descr):
        return _our_model(package)
    return PackageModel(package, trust_code=trust_code)


def load_fine_tunable(path: str | os.PathLike) -> ModelFile:
    """A package whose network is napari-unet's U-Net, as a model file to fine-tune; others are
    refused with the reason."""
    package = open_package(path)
    if not _is_ours(package.descr):
        raise UserInputError(
            f"{Path(path).name} holds a network that is not napari-unet's U-Net "
            f"({', '.join(_formats(package.descr))} weights): it can segment (predict, Segment) "
            "but not be fine-tuned here"
        )
    return _our_model(package)


def _our_model(package: Package) -> ModelFile:
    descr = package.descr
    state = descr.weights.pytorch_state_dict
    settings = dict(descr.config.model_dump().get("napari_unet") or {})
    try:
        config = UNetConfig.from_dict(dict(state.architecture.kwargs))
        weights = _read_archive(package.file(state.source))
        if not isinstance(weights, dict):
            raise ModelFileError("its pytorch_state_dict file holds no state_dict")
        _check_weights_fit(config, weights)
        names = settings.get("class_names") or [
            str(n) for n in _channel_names(descr.outputs[0]) or []
        ]
        model = ModelFile(
            config=config,
            preprocessing=Preprocessing.from_dict(settings.get("preprocessing") or {}),
            weights=weights,
            class_names=_check_class_names(names, config) if names else _default_names(config),
            history={
                **(settings.get("history") or {}),
                "imported_from": package.path.name,
            },
            description=str(settings.get("description") or descr.description or descr.name),
            task=dict(settings.get("task") or {"kind": "semantic"}),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(f"{package.path} holds a damaged napari-unet network ({err})") from err
    _refuse_non_finite(model.weights, package.path)
    return model


def _default_names(config: UNetConfig) -> list[str]:
    from ..models.model_file import default_class_names

    return default_class_names(config.out_channels)


def _channel_names(tensor: Any) -> list[str] | None:
    for axis in tensor.axes:
        if axis.type == "channel":
            return [str(n) for n in axis.channel_names]
    return None


@dataclass(frozen=True)
class PackageGeometry:
    """What the tiler needs to know of a package's network (a :class:`UNetConfig` stand-in)."""

    spatial_dims: int
    in_channels: int
    out_channels: int
    size_multiple: int


class PackageModel:
    """Someone else's bioimage.io model, run by napari-unet's tiler.

    Mirrors the parts of :class:`ModelFile` that prediction reads: ``config`` (spatial_dims,
    in/out channels, size multiple), ``preprocessing`` (channels as they are: the package's
    own steps do the rest), ``class_names``, ``task``, ``description``.
    """

    def __init__(self, package: Package, *, trust_code: bool = False):
        descr = package.descr
        self.package = package
        self.path = package.path
        if len(descr.inputs) != 1 or len(descr.outputs) != 1:
            raise UserInputError(
                f"{package.path.name} has {len(descr.inputs)} input(s) and "
                f"{len(descr.outputs)} output(s); napari-unet runs packages with one of each"
            )
        self.input, self.output = descr.inputs[0], descr.outputs[0]
        self.in_axes = _axis_ids(self.input, package.path.name)
        self.out_axes = _axis_ids(self.output, package.path.name)
        self.space = [a for a in self.in_axes if a not in ("batch", "channel")]
        if len(self.space) not in (2, 3):
            raise UserInputError(
                f"{package.path.name} takes {len(self.space)} spatial axes; napari-unet runs 2D and 3D"
            )
        self.in_channels = len(_channel_names(self.input) or ["c"])
        self.out_names = _channel_names(self.output) or ["foreground"]
        self.minimum, self.step = _sizes(self.input, self.space)
        self.halo = tuple(_halo(self.output, a) for a in self.space)
        self.pre = operations(self.input.preprocessing)
        self.post = operations(self.output.postprocessing)
        for op in self.post:
            if op.needs_fit:
                raise UserInputError(
                    f"{package.path.name} finishes its output with {op.id!r} over the whole image, "
                    "which napari-unet cannot do tile by tile"
                )
        self.weights_format = self._choose_weights(trust_code)
        multiple = self.step or 1
        self.config = PackageGeometry(
            len(self.space), self.in_channels, len(self.out_names), multiple
        )
        self.preprocessing = Preprocessing(norm="none")
        self.class_names = list(self.out_names)
        self.task = {"kind": "semantic"}
        self.is_instance_model = False
        self.suggested_output = "probabilities" if len(self.out_names) <= 2 else "semantic"
        self.description = f"{descr.name}: {descr.description}"
        self.history: dict[str, Any] = {}
        self.training_state = None

    def _choose_weights(self, trust_code: bool) -> str:
        formats = _formats(self.package.descr)
        for fmt in ("torchscript", "onnx"):
            if fmt in formats:
                if fmt == "onnx":
                    try:
                        import onnxruntime  # noqa: F401
                    except ImportError:
                        continue
                return fmt
        if "pytorch_state_dict" in formats:
            arch = self.package.descr.weights.pytorch_state_dict.architecture
            where = getattr(arch, "import_from", None) or str(getattr(arch, "source", "?"))
            if not trust_code:
                raise CodeNotTrusted(
                    f"{self.path.name} can only run by importing Python code ({where}, "
                    f"{arch.callable}) that comes with it or from elsewhere; pass --trust-code "
                    "(or answer yes in napari) only if you trust its authors"
                )
            return "pytorch_state_dict"
        raise UserInputError(
            f"{self.path.name} has {', '.join(formats) or 'no'} weights; napari-unet runs "
            "torchscript and onnx (and pytorch_state_dict with --trust-code)"
            + ("; install onnxruntime for onnx" if "onnx" in formats else "")
        )

    def network(self, device: torch.device | str = "cpu") -> PackageNetwork:
        return PackageNetwork(self, device)

    def source(self, image: np.ndarray, channel_axis: int | None = None) -> PackageSource:
        return PackageSource(self, image, channel_axis)


def _axis_ids(tensor: Any, name: str) -> list[str]:
    ids = []
    for axis in tensor.axes:
        if axis.type in ("batch", "channel"):
            ids.append(axis.type)
        elif axis.type == "space":
            ids.append(str(axis.id))
        else:
            raise UserInputError(
                f"{name}'s tensor {tensor.id} has a {axis.type} axis ({axis.id}); napari-unet "
                "runs packages whose tensors have batch, channel and space axes"
            )
    return ids


def _sizes(tensor: Any, space: list[str]) -> tuple[int, int]:
    """Smallest input side and the step sizes grow by (0: one fixed size)."""
    minimum, step = 1, 1
    for axis in tensor.axes:
        if axis.type != "space":
            continue
        size = axis.size
        if isinstance(size, int):
            minimum, step = max(minimum, size), 0
        elif hasattr(size, "min"):
            minimum = max(minimum, int(size.min))
            step = int(np.lcm(step, int(size.step))) if step else 0
        else:
            raise UserInputError(
                f"the input axis {axis.id} takes its size from another tensor; napari-unet "
                "runs packages whose input sizes are fixed or stepped"
            )
    if step and minimum % step:
        raise UserInputError(
            f"the package takes sides of {minimum} + n x {step} pixels; napari-unet's tiler "
            "needs sizes that are multiples of the step (the minimum too)"
        )
    return minimum, step


def _halo(tensor: Any, axis_id: str) -> int:
    for axis in tensor.axes:
        if axis.type == "space" and str(axis.id) == axis_id:
            return int(getattr(axis, "halo", 0) or 0)
    raise UserInputError(f"the package's output lacks the spatial axis {axis_id!r} of its input")


class PackageSource:
    """Reads the package's prepared input tile by tile: statistics (percentiles, mean) are
    measured once on the whole image (a strided sample of large ones), then applied per tile."""

    def __init__(self, model: PackageModel, image: np.ndarray, channel_axis: int | None = None):
        check_image_array(image)
        dims = model.config.spatial_dims
        view = channels_first(image, dims, channel_axis)
        channels = view.shape[0]
        if channels == 4 and model.in_channels == 3:
            view = view[:3]  # RGBA: the alpha channel carries no image content
        elif channels != model.in_channels:
            raise UserInputError(
                f"the package expects {model.in_channels} input channel(s) but the image has "
                f"{channels}"
            )
        self.original_shape = tuple(view.shape[1:])
        need = tuple(max(model.minimum, n) for n in self.original_shape)
        if need != self.original_shape:  # smaller than the package takes: pad (small anyway)
            data = np.asarray(view)
            pads = [(0, 0)] + [(0, w - n) for w, n in zip(need, self.original_shape, strict=True)]
            view = np.pad(data, pads, mode="reflect" if min(self.original_shape) > 1 else "edge")
        self.view = view
        self.axes = ["batch", "channel", *model.space]
        # Fresh steps: what they measure belongs to this image, not to the model.
        self.steps = [Operation(step.id, step.kwargs) for step in model.pre]
        sample = np.asarray(_sample(view), np.float32)[np.newaxis]
        if sample.dtype.kind == "f" and not np.isfinite(sample).all():
            raise UserInputError(
                "the image contains NaN or infinite values; replace them before segmenting"
            )
        for step in self.steps:
            step.fit(sample, self.axes)
            sample = step.apply(sample, self.axes)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.view.shape[1:])

    def read(self, index: tuple[slice | np.ndarray, ...]) -> np.ndarray:
        block = np.asarray(read_block(self.view, index), np.float32)[np.newaxis]
        for step in self.steps:
            block = step.apply(block, self.axes)
        return np.ascontiguousarray(block[0], dtype=np.float32)


class PackageNetwork(nn.Module):
    """The package's weights as a module from our (N, C, *space) layout to the finished output
    (postprocessing applied) in the same layout."""

    def __init__(self, model: PackageModel, device: torch.device | str = "cpu"):
        super().__init__()
        self.model = model
        self.config = model.config
        self.format = model.weights_format
        weights = getattr(model.package.descr.weights, self.format)
        if self.format == "torchscript":
            self.net = torch.jit.load(str(model.package.file(weights.source)), map_location="cpu")
        elif self.format == "pytorch_state_dict":
            from bioimageio.core.backends.pytorch_backend import load_torch_model

            self.net = load_torch_model(weights, load_state=True, devices=["cpu"])
        else:
            import onnxruntime as ort

            self.session = ort.InferenceSession(
                str(model.package.file(weights.source)), providers=["CPUExecutionProvider"]
            )
            self.input_name = self.session.get_inputs()[0].name
        if hasattr(self, "net"):
            self.net.eval()
        self.to(device)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if self.format == "onnx":
            out = self.session.run(None, {self.input_name: x.detach().float().cpu().numpy()})[0]
            return torch.from_numpy(np.asarray(out, np.float32))
        out = self.net(x)
        return out[0] if isinstance(out, (list, tuple)) else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        model = self.model
        ours = ["batch", "channel", *model.space]
        wanted_in = model.in_axes
        if "batch" not in wanted_in:  # one image at a time
            return torch.cat([self.forward_one(x[i : i + 1], ours) for i in range(len(x))])
        return self.forward_one(x, ours)

    def forward_one(self, x: torch.Tensor, ours: list[str]) -> torch.Tensor:
        model = self.model
        t, current = x, list(ours)
        for axis in ("batch", "channel"):
            if axis not in model.in_axes:  # size 1 here: one image, one channel
                t = t.squeeze(current.index(axis))
                current.remove(axis)
        t = t.permute([current.index(a) for a in model.in_axes]).contiguous()
        out = self._run(t).float()
        got = list(model.out_axes)
        out = out.permute([got.index(a) for a in ours if a in got])
        if "batch" not in got:
            out = out.unsqueeze(0)
        if "channel" not in got:
            out = out.unsqueeze(1)
        if tuple(out.shape[2:]) != tuple(x.shape[2:]):
            raise UserInputError(
                f"{model.path.name} returns {tuple(out.shape[2:])} pixels for an input of "
                f"{tuple(x.shape[2:])}; napari-unet tiles only networks whose output matches "
                "their input"
            )
        if model.post:
            finished = out.cpu().numpy()
            for step in model.post:
                finished = step.apply(finished, ours)
            out = torch.from_numpy(np.ascontiguousarray(finished))
        return out.to(x.device)


def _axes_text(tensor: Any) -> str:
    parts = []
    for axis in tensor.axes:
        if axis.type == "batch":
            parts.append("batch")
        elif axis.type == "channel":
            parts.append(f"channel[{len(axis.channel_names)}]")
        else:
            size = axis.size
            if isinstance(size, int):
                text = str(size)
            elif hasattr(size, "min"):
                text = f"{size.min}+n*{size.step}"
            else:
                text = f"as {size.tensor_id}.{size.axis_id}"
            halo = getattr(axis, "halo", 0) or 0
            parts.append(f"{axis.id}({text}{f', halo {halo}' if halo else ''})")
    return ", ".join(parts)


def _steps_text(steps: Any) -> str:
    names = []
    for step in steps:
        if str(step.id) == "ensure_dtype":
            continue
        kwargs = getattr(step, "kwargs", None)
        detail = ""
        if str(step.id) == "scale_range" and kwargs is not None:
            detail = f" ({kwargs.min_percentile}-{kwargs.max_percentile} percentiles)"
        names.append(f"{step.id}{detail}")
    return ", ".join(names) or "none"


def describe_package(path: str | Path) -> list[str]:
    """Human-readable lines about a package: name, axes, channels, halo, weights, licence."""
    package = open_package(path)
    d = package.descr
    inp, out = d.inputs[0], d.outputs[0]
    authors = ", ".join(a.name for a in d.authors) or "not given"
    lines = [
        f"package:        {package.path} (bioimage.io model, format {d.format_version})",
        f"name:           {d.name}",
        f"description:    {d.description}",
        f"input:          {inp.id}: {_axes_text(inp)}; channels {', '.join(_channel_names(inp) or ['one'])}",
        f"preprocessing:  {_steps_text(inp.preprocessing)}",
        f"output:         {out.id}: {_axes_text(out)}; channels {', '.join(_channel_names(out) or ['one'])}",
        f"postprocessing: {_steps_text(out.postprocessing)}",
        f"weights:        {', '.join(_formats(d))}",
        f"licence:        {d.license}",
        f"authors:        {authors}",
    ]
    if d.cite:
        lines.append(f"cite:           {d.cite[0].text}")
    if _is_ours(d):
        lines.append("napari-unet:    made by napari-unet: loads as the same model, fine-tunable")
    else:
        try:
            model = PackageModel(package)
            lines.append(
                f"napari-unet:    runs with its {model.weights_format} weights through the tiler "
                f"(halo {model.halo[0]}); segments, but cannot be fine-tuned"
            )
        except UserInputError as err:
            lines.append(f"napari-unet:    cannot run it: {err}")
    return lines
