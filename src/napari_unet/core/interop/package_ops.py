"""The bioimage.io model spec's pre- and postprocessing operations, on numpy arrays.

A bioimage.io package says how its input is prepared and its output finished with a list of
standard operations (``scale_range``, ``zero_mean_unit_variance``, ``sigmoid``...). napari-unet
runs a package's network through its own tiler, so an operation that needs statistics of the
whole image (a percentile, a mean) is split in two: :meth:`Operation.fit` measures the image
once, :meth:`Operation.apply` then prepares each tile with those numbers, and the tiled result
equals what the package gives on the whole image.

Arrays here are in the package's own axis order; ``axes`` names each axis by its id ("batch",
"channel", "z", "y", "x", ...). The formulas follow the spec (format 0.5), which is what
bioimage.io's reference implementation (``bioimageio.core``) computes: percentiles with linear
interpolation, standard deviation without Bessel's correction, ``eps`` added to divisors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UserInputError

# Operations whose statistics are measured on the whole image, then applied tile by tile.
_STATISTICAL = ("scale_range", "zero_mean_unit_variance", "clip")
SUPPORTED = (
    "binarize",
    "clip",
    "ensure_dtype",
    "fixed_zero_mean_unit_variance",
    "scale_linear",
    "scale_range",
    "sigmoid",
    "softmax",
    "zero_mean_unit_variance",
)


@dataclass
class Operation:
    """One processing step: ``id`` (the spec's name) and its ``kwargs``, plus what
    :meth:`fit` measured."""

    id: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    stats: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.id not in SUPPORTED:
            raise UserInputError(
                f"the package uses the processing step {self.id!r}, which napari-unet does not "
                f"run (it runs {', '.join(SUPPORTED)})"
            )
        if self.kwargs.get("reference_tensor"):
            raise UserInputError(
                f"the package's {self.id!r} step takes its statistics from another tensor "
                f"({self.kwargs['reference_tensor']!r}); napari-unet runs single-input packages only"
            )

    @property
    def needs_fit(self) -> bool:
        if self.id == "clip":
            return self.kwargs.get("min_percentile") is not None or (
                self.kwargs.get("max_percentile") is not None
            )
        return self.id in _STATISTICAL

    def fit(self, array: np.ndarray, axes: Sequence[str]) -> None:
        """Measure what the step needs on the whole (float) ``array``."""
        if not self.needs_fit:
            return
        reduce = _reduced_axes(self.kwargs.get("axes"), axes)
        data = np.asarray(array, np.float64)
        if self.id == "zero_mean_unit_variance":
            self.stats = {
                "mean": data.mean(axis=reduce, keepdims=True),
                "std": data.std(axis=reduce, keepdims=True),
            }
        elif self.id == "scale_range":
            lo, hi = (
                self.kwargs.get("min_percentile", 0.0),
                self.kwargs.get("max_percentile", 100.0),
            )
            q = np.percentile(data, [lo, hi], axis=reduce, keepdims=True)
            self.stats = {"lower": q[0], "upper": q[1]}
        else:  # clip at percentiles
            for name in ("min", "max"):
                pct = self.kwargs.get(f"{name}_percentile")
                if pct is not None:
                    q = np.percentile(data, pct, axis=reduce, keepdims=True, method="inverted_cdf")
                    self.stats[name] = q
        for name, value in self.stats.items():
            spatial = [i for i, a in enumerate(axes) if a not in ("batch", "channel")]
            if any(value.shape[i] != 1 for i in spatial):
                raise UserInputError(
                    f"the package's {self.id!r} step measures {name} per pixel (its axes leave out "
                    "a spatial axis); napari-unet cannot tile that"
                )

    def apply(self, array: np.ndarray, axes: Sequence[str]) -> np.ndarray:
        """The step applied to ``array`` (a tile or the whole image), as float32."""
        x = np.asarray(array, np.float32)
        k = self.kwargs
        eps = float(k.get("eps", 1e-6))
        if self.id == "ensure_dtype":
            return np.asarray(x, _dtype(k.get("dtype", "float32")))
        if self.id == "binarize":
            return (x > _along(k.get("threshold"), k, axes)).astype(np.float32)
        if self.id == "clip":
            lo = self.stats.get("min", k.get("min"))
            hi = self.stats.get("max", k.get("max"))
            return np.clip(x, -np.inf if lo is None else lo, np.inf if hi is None else hi).astype(
                np.float32
            )
        if self.id == "scale_linear":
            gain = _along(k.get("gain", 1.0), k, axes)
            offset = _along(k.get("offset", 0.0), k, axes)
            return (x * gain + offset).astype(np.float32)
        if self.id == "fixed_zero_mean_unit_variance":
            mean = _along(k.get("mean", 0.0), k, axes)
            std = _along(k.get("std", 1.0), k, axes)
            return ((x - mean) / (std + eps)).astype(np.float32)
        if self.id == "zero_mean_unit_variance":
            return ((x - self.stats["mean"]) / (self.stats["std"] + eps)).astype(np.float32)
        if self.id == "scale_range":
            lower, upper = self.stats["lower"], self.stats["upper"]
            return ((x - lower) / (upper - lower + eps)).astype(np.float32)
        if self.id == "sigmoid":
            return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)
        # softmax along the named axis (the channels by default)
        axis = list(axes).index(str(k.get("axis", "channel")))
        shifted = np.exp(x - x.max(axis=axis, keepdims=True))
        return (shifted / shifted.sum(axis=axis, keepdims=True)).astype(np.float32)


def _dtype(name: str) -> np.dtype:
    try:
        return np.dtype(name)
    except TypeError as err:
        raise UserInputError(f"the package asks for the unknown dtype {name!r}") from err


def _reduced_axes(wanted: Sequence[str] | None, axes: Sequence[str]) -> tuple[int, ...]:
    """Indices of the axes a statistic is taken over: those named, or all of them."""
    if wanted is None:
        return tuple(range(len(axes)))
    missing = [a for a in wanted if a not in axes]
    if missing:
        raise UserInputError(f"the package's processing names axes {missing} its tensor lacks")
    # The batch axis holds one image here; measuring over it changes nothing.
    return tuple(axes.index(a) for a in wanted) + tuple(
        i for i, a in enumerate(axes) if a == "batch" and a not in wanted
    )


def _along(value: Any, kwargs: Mapping[str, Any], axes: Sequence[str]) -> np.ndarray | float:
    """A scalar, or a list of values along ``kwargs['axis']`` shaped to broadcast."""
    if value is None:
        raise UserInputError("the package's processing step lacks a required value")
    if not isinstance(value, (list, tuple)):
        return float(value)
    axis = str(kwargs.get("axis"))
    if axis not in axes:
        raise UserInputError(
            f"the package's processing gives values along axis {axis!r}, which its tensor lacks"
        )
    shape = [1] * len(axes)
    shape[list(axes).index(axis)] = len(value)
    return np.asarray(value, np.float32).reshape(shape)


def operations(descrs: Sequence[Any]) -> list[Operation]:
    """Operations from the spec's processing descriptions (pydantic objects or plain dicts)."""
    steps = []
    for d in descrs:
        if isinstance(d, Mapping):
            op_id, kwargs = d["id"], dict(d.get("kwargs") or {})
        else:
            op_id = str(d.id)
            raw = getattr(d, "kwargs", None)
            if raw is not None and hasattr(raw, "model_dump"):
                kwargs = raw.model_dump(mode="json")
            else:
                kwargs = dict(raw or {})
        steps.append(Operation(op_id, {k: v for k, v in kwargs.items() if v is not None}))
    return steps


def run(steps: Sequence[Operation], array: np.ndarray, axes: Sequence[str]) -> np.ndarray:
    """Fit (where needed) and apply ``steps`` to a whole array, in order."""
    for step in steps:
        step.fit(array, axes)
        array = step.apply(array, axes)
    return array
