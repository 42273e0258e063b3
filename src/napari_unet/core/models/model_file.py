"""One self-describing model file that loads without unpickling arbitrary objects.

A model file is a ``torch.save`` archive of plain data only: nested dicts, lists, strings,
numbers and tensors. It is read back with ``torch.load(weights_only=True)``, which refuses any
other Python object, so opening a model file never runs code. Files are written atomically
(temporary file in the same folder, then rename), so an interrupted save never leaves a
half-written model in place of a good one.
"""

from __future__ import annotations

import datetime as _dt
import io
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ... import __version__
from ..data.io import atomic_write
from ..data.normalize import Preprocessing
from ..data.object_size import ObjectScale
from ..errors import ModelFileError, UserInputError
from ..network.unet import UNet, UNetConfig

FORMAT_NAME = "napari-unet-model"
FORMAT_VERSION = 1
TASKS = ("semantic", "instances")
_BUNDLED_DIR = Path(__file__).resolve().parents[2] / "models"  # napari_unet/models/


@dataclass
class ModelFile:
    """Everything needed to rebuild and apply a trained U-Net.

    Attributes
    ----------
    config : the architecture.
    preprocessing : how images are prepared (channels, intensity normalisation).
    weights : the network's ``state_dict`` (the best weights found by training).
    class_names : one name per output class ("background", "foreground", ...).
    history : summary of training (epochs, steps, seconds, best score, data, dates).
    description : free text shown by ``napari-unet info``.
    task : {"kind": "semantic"} (a class per pixel) or {"kind": "instances",
        "boundary_width": w} (background / interior / boundary, split into objects by a
        seeded watershed; see :mod:`.instances`).
    training_state : what resuming needs (last weights, optimizer state, counters), or None.
    scale : the size of the structures it was trained on (:class:`ObjectScale`), which
        prediction rescales a user's image to; None when unknown (files before 2026-12).
    """

    config: UNetConfig
    preprocessing: Preprocessing
    weights: dict[str, torch.Tensor]
    class_names: list[str] = field(default_factory=lambda: ["background", "foreground"])
    history: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    training_state: dict[str, Any] | None = None
    task: dict[str, Any] = field(default_factory=lambda: {"kind": "semantic"})
    scale: ObjectScale | None = None

    @property
    def is_instance_model(self) -> bool:
        return self.task.get("kind") == "instances"

    @property
    def suggested_output(self) -> str:
        """The output that suits this model: "instances" (objects) for instance models,
        "probabilities" (a map plus its mask) for one-class models such as vessels, else
        "semantic"."""
        if self.is_instance_model:
            return "instances"
        return "probabilities" if self.config.out_channels <= 2 else "semantic"

    def build(self, device: torch.device | str = "cpu") -> UNet:
        """A network with these weights, in eval mode, on ``device``."""
        net = UNet(self.config)
        try:
            net.load_state_dict(
                {k: v.float() if v.is_floating_point() else v for k, v in self.weights.items()}
            )
        except RuntimeError as err:
            raise ModelFileError(
                f"the weights do not match the architecture in the file: {_first_line(err)}"
            ) from err
        return net.to(device).eval()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def default_class_names(out_channels: int) -> list[str]:
    """Background first: ["background", "foreground"] for binary models, else "class i"."""
    if out_channels <= 2:
        return ["background", "foreground"]
    return ["background"] + [f"class {i}" for i in range(1, out_channels)]


def _first_line(err: BaseException) -> str:
    """The most telling line of an error: the first one, or the one after a heading such as
    torch's "Error(s) in loading state_dict for UNet:"."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        return lines[1]
    return lines[0] if lines else type(err).__name__


def _check_weights_fit(config: UNetConfig, weights: dict[str, Any]) -> None:
    """The weights have the names and shapes the architecture needs (checked on PyTorch's
    meta device: no memory is allocated, whatever size the file claims)."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in UNet(config).state_dict().items()}
    unexpected = sorted(set(weights) - set(expected))
    if unexpected:
        raise ModelFileError(
            f"the weights do not match the architecture in the file: {unexpected[0]} is not "
            "part of it"
        )
    for name, shape in expected.items():
        value = weights.get(name)
        if not isinstance(value, torch.Tensor):
            raise ModelFileError(
                f"the weights do not match the architecture in the file: {name} is missing"
            )
        if tuple(value.shape) != shape:
            raise ModelFileError(
                f"the weights do not match the architecture in the file: {name} has shape "
                f"{tuple(value.shape)}, the architecture needs {shape}"
            )


def _check_class_names(names: Any, config: UNetConfig) -> list[str]:
    expected = max(2, config.out_channels)
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise UserInputError(f"class_names must be a list of names, got {names!r}")
    if len(names) != expected:
        raise UserInputError(
            f"class_names has {len(names)} names for a model with {expected} classes"
        )
    return list(names)


def _to_payload(model: ModelFile, half: bool) -> dict[str, Any]:
    weights = {
        k: (
            v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu()
        ).contiguous()
        for k, v in model.weights.items()
    }
    if half:
        _check_finite(weights, "weights in float16 (values beyond 65504)")
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "napari_unet_version": __version__,
        "saved": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": model.config.to_dict(),
        "preprocessing": model.preprocessing.to_dict(),
        "class_names": list(model.class_names),
        "history": model.history,
        "description": model.description,
        "task": dict(model.task),
        "scale": model.scale.to_dict() if model.scale else None,
        "weights": weights,
        "training_state": model.training_state,
    }


def save_model(
    model: ModelFile,
    path: str | os.PathLike,
    *,
    half: bool = False,
    include_training_state: bool = True,
) -> Path:
    """Write ``model`` to ``path`` atomically; returns the path.

    ``half`` stores floating-point weights in float16 (half the size; they are widened to
    float32 on loading). ``include_training_state=False`` drops what resuming needs, for a
    smaller file to share.
    """
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise UserInputError(f"cannot save the model: folder {path.parent} does not exist")
    _check_finite(model.weights, "weights")
    if include_training_state and model.training_state:
        _check_finite(model.training_state.get("last_weights") or {}, "last training weights")
    payload = _to_payload(model, half)
    if not include_training_state:
        payload["training_state"] = None
    # Serialise in memory first: torch.save reports a full disk as an opaque RuntimeError,
    # a plain file write as the OSError that atomic_write turns into a clear message.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()))


def non_finite_entries(weights: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors in ``weights`` holding NaN or infinity."""
    with torch.no_grad():
        return [
            k
            for k, v in weights.items()
            if isinstance(v, torch.Tensor)
            and v.is_floating_point()
            and not bool(torch.isfinite(v).all())
        ]


def _check_finite(weights: dict[str, torch.Tensor], what: str) -> None:
    """A model file never holds NaN or infinite weights: they would segment nothing."""
    bad = non_finite_entries(weights)
    if bad:
        raise UserInputError(
            f"refusing to save a model whose {what} are not finite (NaN or infinity in "
            f"{bad[0]}{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}): training diverged"
        )


def _refuse_non_finite(weights: dict[str, torch.Tensor], source: Path | str) -> None:
    """Weights holding NaN or infinity would segment nothing (or everything): refused at load,
    as images holding them are refused."""
    bad = non_finite_entries(weights)
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise ModelFileError(
            f"{source} holds NaN or infinite weights (in {bad[0]}{more}): the training that "
            "wrote it diverged or the file was damaged; it cannot segment anything"
        )


def bundled_models() -> dict[str, Path]:
    """Models shipped inside the package, by name (e.g. ``"nuclei"``)."""
    if not _BUNDLED_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(_BUNDLED_DIR.glob("*.pt"))}


def resolve_model_path(spec: str | os.PathLike) -> Path:
    """A bundled model's name or a path to a model file -> an existing path, or raise."""
    bundled = bundled_models()
    if isinstance(spec, str) and spec in bundled:
        return bundled[spec]
    path = Path(spec)
    if path.is_file():
        return path
    names = ", ".join(bundled) or "none"
    raise ModelFileError(
        f"model {str(spec)!r} is neither a file nor a bundled model (bundled: {names})"
    )


def _check_archive_integrity(path: Path) -> None:
    """Every member of the zip archive matches its stored CRC-32: PyTorch's reader does not
    check it, so flipped bytes in the weights would otherwise load without a word."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as err:
        raise ModelFileError(
            f"{path} is truncated or corrupt and cannot be read ({_first_line(err)})"
        ) from err
    if damaged is not None:
        raise ModelFileError(
            f"{path} is damaged: its checksum fails in {damaged.rsplit('/', 1)[-1]!r} "
            "(flipped bytes, a bad copy or a failing disk); copy it again from a good source"
        )


def _read_archive(path: Path) -> Any:
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic[:2] != b"PK":
        raise ModelFileError(
            f"{path} is not a PyTorch model file (it is not a torch.save archive); "
            "napari-unet model files are written by `napari-unet train` or the Train widget"
        )
    _check_archive_integrity(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ModelFileError(
            f"refused to load {path}: it contains Python objects other than tensors and plain data, "
            "which could run code when loaded. napari-unet model files never do."
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise ModelFileError(
            f"{path} is truncated or corrupt and cannot be read ({_first_line(err)})"
        ) from err


def load_model_file(spec: str | os.PathLike) -> ModelFile:
    """Load a napari-unet model file (or a bundled model by name) safely, with a clear error
    otherwise. bioimage.io packages open through :func:`napari_unet.core.load_model`."""
    path = resolve_model_path(spec)
    data = _read_archive(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        if (
            isinstance(data, dict)
            and data
            and all(isinstance(v, torch.Tensor) for v in data.values())
        ):
            raise ModelFileError(
                f"{path} is a plain PyTorch state_dict without architecture; "
                "import it with `napari-unet import --weights FILE --config CONFIG.json --out MODEL`"
            )
        raise ModelFileError(f"{path} is not a napari-unet model file")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} was written by a newer napari-unet (model format {version}; this version reads "
            f"up to {FORMAT_VERSION}): upgrade napari-unet-torch to use it"
        )
    task = dict(data.get("task") or {"kind": "semantic"})
    if task.get("kind") not in TASKS:
        raise ModelFileError(
            f"{path} has an unknown task {task.get('kind')!r}; this napari-unet knows {TASKS}"
        )
    try:
        config = UNetConfig.from_dict(data["config"])
        weights = dict(data["weights"])
        _check_weights_fit(config, weights)
        model = ModelFile(
            config=config,
            preprocessing=Preprocessing.from_dict(data["preprocessing"]),
            weights=weights,
            class_names=_check_class_names(data["class_names"], config),
            history=dict(data.get("history") or {}),
            description=str(data.get("description") or ""),
            training_state=data.get("training_state"),
            task=task,
            scale=_read_scale(data.get("scale")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        what = f"no {err.args[0]!r} entry" if isinstance(err, KeyError) else _first_line(err)
        raise ModelFileError(
            f"{path} is an incomplete or damaged napari-unet model file ({what})"
        ) from err
    _refuse_non_finite(model.weights, path)
    return model


def _read_scale(data: Any) -> ObjectScale | None:
    """The stored scale, checked (kind, positive finite sizes); None when absent."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ValueError(f"scale is {type(data).__name__}, not a mapping")
    return ObjectScale.from_dict(data)


def import_state_dict(
    weights_path: str | os.PathLike,
    config: UNetConfig,
    preprocessing: Preprocessing | None = None,
    class_names: list[str] | None = None,
) -> ModelFile:
    """Wrap a plain PyTorch ``state_dict`` of a :class:`UNet` and its config in a model file.

    Accepts a bare state_dict or a dict holding it under "state_dict" or "model"; a
    "module." prefix (left by DataParallel) is removed. Loading is safe (weights only).
    """
    path = Path(weights_path)
    if not path.is_file():
        raise ModelFileError(f"weights file {path} does not exist")
    data = _read_archive(path)
    if isinstance(data, dict):
        for key in ("state_dict", "model"):
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ModelFileError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    weights = {k.removeprefix("module."): v for k, v in data.items()}
    names = class_names or default_class_names(config.out_channels)
    model = ModelFile(
        config,
        preprocessing or Preprocessing(),
        weights,
        names,
        history={"imported_from": path.name},
    )
    _check_weights_fit(config, weights)  # a clear error now, without building the network
    _refuse_non_finite(weights, path)
    return model
