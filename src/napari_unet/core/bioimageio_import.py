"""Open bioimage.io model packages (a folder with ``bioimageio.yaml`` / ``rdf.yaml``, or its
``.zip``) wherever napari-unet takes a model.

- A package napari-unet wrote (``pytorch_state_dict`` weights of our U-Net, architecture
  ``napari_unet.core.model.build_unet``) comes back as a :class:`~.checkpoint.ModelFile`: the
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

import contextlib
import io as _io
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .architecture_source import ARCHITECTURE_FILE
from .checkpoint import (
    ModelFile,
    _check_class_names,
    _check_weights_fit,
    _read_archive,
    _refuse_non_finite,
)
from .errors import CodeNotTrusted, ModelFileError, UserInputError
from .model import UNetConfig
from .normalize import Preprocessing, _sample, channels_first, check_image_array, read_block
from .package_ops import Operation, operations

DESCRIPTION_NAMES = ("bioimageio.yaml", "rdf.yaml")
OUR_ARCHITECTURE = ("napari_unet.core.model", "build_unet")
RUNNABLE = ("torchscript", "onnx", "pytorch_state_dict")


def _description_in(folder: Path) -> Path | None:
    for name in DESCRIPTION_NAMES:
        if (folder / name).is_file():
            return folder / name
    found = sorted(folder.glob("*.bioimageio.yaml"))
    return found[0] if found else None


def is_package(path: str | Path) -> bool:
    """True for a bioimage.io package: its folder, its zip, or its description file."""
    path = Path(path)
    if path.is_dir():
        return _description_in(path) is not None
    if path.is_file() and path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return False
        return any(n in DESCRIPTION_NAMES or n.endswith(".bioimageio.yaml") for n in names)
    return path.is_file() and (
        path.name in DESCRIPTION_NAMES or path.name.endswith(".bioimageio.yaml")
    )


@dataclass
class Package:
    """An opened package: its validated description and the folder its files are in."""

    path: Path
    root: Path
    descr: Any
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    def file(self, source: Any) -> Path:
        """Local path of a file the description names; URLs are refused (no downloads)."""
        text = str(getattr(source, "source", source))
        if "://" in text:
            raise UserInputError(
                f"the package {self.path.name} points to {text} instead of holding the file; "
                "napari-unet does not download: use the package's zip, which holds its files"
            )
        path = (self.root / text).resolve()
        if not path.is_file():
            raise UserInputError(f"the package {self.path.name} lacks its file {text}")
        return path


def _extract(path: Path, into: Path) -> None:
    """Unzip without letting a member escape ``into`` (absolute paths, '..')."""
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            target = (into / member.filename).resolve()
            if not target.is_relative_to(into.resolve()):
                raise UserInputError(f"{path} holds a file outside the package ({member.filename})")
        archive.extractall(into)


def needs_bioimageio() -> None:
    """Raise a clear error when the optional bioimage.io packages are missing."""
    from .bioimageio_export import needs_bioimageio as check

    check()


# A model description is a few kB of YAML. These bounds refuse, before any YAML library
# expands it, a file built to exhaust memory or time ("billion laughs": aliases of aliases).
DESCRIPTION_MAX_BYTES = 1_000_000
DESCRIPTION_MAX_DEPTH = 64
DESCRIPTION_MAX_NODES = 1_000_000  # values once every alias is expanded


def check_description_size(path: Path) -> None:
    """Refuse a description file that is too large, too deeply nested, expands (through YAML
    aliases) to too many values, or holds tags that plain YAML does not know. The nesting is
    scanned event by event and the expansion counted on the composed graph, where an alias is
    one shared node: time and memory stay linear in the file's size."""
    import yaml

    size = path.stat().st_size
    if size > DESCRIPTION_MAX_BYTES:
        raise UserInputError(
            f"{path.name} is {size:,} bytes; a model description is a few kB "
            f"(at most {DESCRIPTION_MAX_BYTES:,} read): not a bioimage.io package"
        )
    try:
        text = path.read_text(encoding="utf-8")
        depth = deepest = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                deepest = max(deepest, depth)
                if deepest > DESCRIPTION_MAX_DEPTH:
                    raise UserInputError(
                        f"{path.name} nests more than {DESCRIPTION_MAX_DEPTH} levels deep: "
                        "refused, as a file built to exhaust memory would be"
                    )
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
        expanded = _expanded_size(yaml.compose(text, Loader=yaml.SafeLoader))
        if expanded > DESCRIPTION_MAX_NODES:
            raise UserInputError(
                f"{path.name} expands through YAML aliases to {expanded:,} values (at most "
                f"{DESCRIPTION_MAX_NODES:,} read): refused, as a file built to exhaust memory "
                "would be"
            )
        yaml.safe_load(text)  # bounded now; refuses tags such as !!python/object
    except UnicodeDecodeError as err:
        raise UserInputError(f"{path.name} is not UTF-8 text: not a model description") from err
    except yaml.YAMLError as err:
        detail = " ".join(str(err).split())
        raise UserInputError(f"{path.name} is not valid YAML: {detail[:200]}") from err


def _expanded_size(root: Any) -> int:
    """Values in the YAML graph once its aliases (shared nodes) are expanded: each node's size
    computed once (iteratively, children first), so a billion laughs costs its few nodes."""
    import yaml

    sizes: dict[int, int] = {}
    stack = [(root, False)] if root is not None else []
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            sizes[id(node)] = 1
            continue
        if children_done:
            sizes[id(node)] = min(1 + sum(sizes[id(c)] for c in children), 2**62)
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes.get(id(root), 0)


def open_package(path: str | Path) -> Package:
    """Validate and open a package (folder, zip or description file), or raise one clear error."""
    needs_bioimageio()
    from bioimageio.spec import load_model_description

    path = Path(path)
    if not path.exists():
        raise UserInputError(f"model {path} does not exist")
    tmp = None
    if path.is_file() and path.suffix.lower() == ".zip":
        tmp = tempfile.TemporaryDirectory(prefix="napari-unet-package-")
        try:
            _extract(path, Path(tmp.name))
        except zipfile.BadZipFile as err:
            tmp.cleanup()
            raise UserInputError(f"{path} is not a readable zip file ({err})") from err
        root = Path(tmp.name)
    else:
        root = path if path.is_dir() else path.parent
    rdf = _description_in(root) if root.is_dir() and (path.is_dir() or tmp) else path
    if rdf is None:
        raise UserInputError(f"{path} holds no bioimageio.yaml or rdf.yaml")
    try:
        check_description_size(rdf)
    except UserInputError:
        if tmp is not None:
            tmp.cleanup()
        raise
    with warnings.catch_warnings(), contextlib.redirect_stderr(_io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            descr = load_model_description(rdf, format_version="latest", perform_io_checks=True)
        except ValueError as err:
            raise UserInputError(
                f"{path} is not a valid bioimage.io model package: {_validation_detail(err)}"
            ) from err
    if not hasattr(descr, "weights"):
        raise UserInputError(f"{path} describes a bioimage.io {descr.type}, not a model")
    return Package(path, root, descr, tmp)


def _validation_detail(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    useful = [
        line.removeprefix(": ").removeprefix("Value error, ")
        for line in lines
        if not line.startswith("For further information") and not line.endswith(":")
    ]
    return "; ".join(useful[:3]) or type(err).__name__


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


def load_fine_tunable(path: str | Path) -> ModelFile:
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
    from .checkpoint import default_class_names

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
            mode = "reflect" if min(self.original_shape) > 1 else "edge"
            view = np.pad(data, pads, mode=mode)
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


def load_any_model(spec: str | Path, *, trust_code: bool = False) -> ModelFile | PackageModel:
    """A model file, a bundled model's name or a bioimage.io package, ready for prediction."""
    from .checkpoint import bundled_models, load_model

    if not (isinstance(spec, str) and spec in bundled_models()) and is_package(spec):
        return load_package(spec, trust_code=trust_code)
    return load_model(spec)


def _unchanged(output: torch.Tensor) -> torch.Tensor:
    return output


def package_tiling(
    model: PackageModel,
    shape: tuple[int, ...],
    tile_size: int | tuple[int, ...] | None,
    halo: int | str | tuple[int, ...],
) -> dict[str, Any]:
    """Tiler settings for a package: its halo, windows of sizes it accepts, and no activation
    (its postprocessing already ran)."""
    from .tiling import _round_up, default_tile_size

    dims = model.config.spatial_dims
    multiple = model.config.size_multiple
    if isinstance(halo, str):
        if halo not in ("auto", "exact"):
            raise UserInputError(
                f"halo must be 'exact', 'auto' or a number of pixels, got {halo!r}"
            )
        halos = model.halo
    else:
        halos = (int(halo),) * dims if isinstance(halo, (int, np.integer)) else tuple(halo)
    if tile_size is None:
        cores = default_tile_size(shape, halos, multiple)
    else:
        cores = (tile_size,) * dims if isinstance(tile_size, int) else tuple(tile_size)
    fitted = []
    for core, h in zip(cores, halos, strict=True):
        smallest = model.minimum - 2 * _round_up(h, multiple)
        if smallest < 1:
            smallest = multiple
        fitted.append(smallest if model.step == 0 else max(core, smallest))
    return {"halo": halos, "tile_size": tuple(fitted), "finish": _unchanged}


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
        if str(step.id) == "scale_range":
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
