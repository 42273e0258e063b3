"""The allowed range of every number a user sets: one table read by the CLI (each option is
checked after parsing), the core (``TrainConfig``, ``Segmenter``, the evaluation) and the
widgets (their spin boxes take the same bounds).

A value outside its range is refused with the range, never replaced silently; NaN and
infinity are refused everywhere (``nan`` compares false with every bound, so each check
asks for a finite number first).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import UserInputError

MAX_SEED = 2**32 - 1  # what numpy's and torch's generators take


@dataclass(frozen=True)
class Limit:
    """A closed range ``[low, high]`` (``low_open``: ``low`` itself excluded), whole numbers
    only when ``integer``; ``None`` leaves a side open."""

    low: float | None = None
    high: float | None = None
    integer: bool = False
    low_open: bool = False
    high_open: bool = False

    def describe(self) -> str:
        kind = "a whole number" if self.integer else "a number"
        low, high = _show(self.low), _show(self.high)
        if self.low is not None and self.high is not None:
            left = "above" if self.low_open else "from"
            right = "below" if self.high_open else "to"
            return f"{kind} {left} {low} {right} {high}"
        if self.low is not None:
            return f"{kind} {'above' if self.low_open else 'of at least'} {low}"
        if self.high is not None:
            return f"{kind} {'below' if self.high_open else 'of at most'} {high}"
        return kind

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not float(value).is_integer():
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (
            self.high is not None and (value >= self.high if self.high_open else value > self.high)
        )


def _show(bound: float | None) -> str:
    if bound is None:
        return ""
    if float(bound).is_integer() and abs(bound) >= 2**20:
        return f"2**{int(math.log2(bound + 1))} - 1" if bound == MAX_SEED else f"{int(bound):,}"
    return f"{bound:g}"


# Settings by their core name. The CLI's flags map onto these (see CLI_NAMES in cli.py).
LIMITS: dict[str, Limit] = {
    # prediction
    "threshold": Limit(0, 1),
    "seed_threshold": Limit(0, 1),
    "min_size": Limit(0, 2**40, integer=True),
    "object_size": Limit(0.5, 100000),  # pixels: an object diameter or a structure width
    "tile_size": Limit(1, 65536, integer=True),
    "predict_batch_size": Limit(1, 4096, integer=True),
    "block_size": Limit(1, 65536, integer=True),
    "threads": Limit(1, 4096, integer=True),
    "channel_axis": Limit(-32, 31, integer=True),
    # training
    "epochs": Limit(1, 10**7, integer=True),
    "max_minutes": Limit(0, 10**7, low_open=True),
    "steps_per_epoch": Limit(1, 10**7, integer=True),
    "batch_size": Limit(1, 4096, integer=True),
    "patch_size": Limit(4, 4096, integer=True),
    "learning_rate": Limit(0, 1e9, low_open=True),  # absurd rates are how tests force divergence
    "weight_decay": Limit(0, 10),
    "val_fraction": Limit(0, 1, high_open=True),
    "zoom": Limit(1, 4),
    "low_resolution": Limit(1, 8),
    "foreground_fraction": Limit(0, 1),
    "seed": Limit(0, MAX_SEED, integer=True),
    "classes": Limit(2, 4096, integer=True),
    "boundary_width": Limit(1, 64, integer=True),
    "ignore_value": Limit(0, 2**32 - 1, integer=True),
    "input_channel": Limit(0, 4095, integer=True),
    "depth": Limit(1, 7, integer=True),
    "base_features": Limit(1, 4096, integer=True),
    "dropout": Limit(0, 1, high_open=True),
    # evaluation
    "evaluate_classes": Limit(2, 4096, integer=True),
}


def check(name: str, value: Any, label: str | None = None) -> Any:
    """``value`` if it lies in ``LIMITS[name]``, else a :class:`UserInputError` naming
    ``label`` (default: the setting's name in words), the range and the value."""
    limit = LIMITS[name]
    if value is None or limit.accepts(value):
        return value
    label = label or name.replace("_", " ")
    raise UserInputError(f"{label} must be {limit.describe()}, got {value!r}")
