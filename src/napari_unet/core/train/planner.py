"""Self-configuring training for a time budget: the network and patch settings that learn most
in the minutes the user gives, chosen from the data and the device (nnU-Net's idea, for time).

A few steps of each candidate configuration are timed on the real data and device in the first
seconds of the budget, cheapest first. The plan is the most capable candidate that still
affords :data:`MIN_STEPS` optimisation steps in the budget, and whose patch holds the objects
with room around them. Measured on a 2-core CPU (``benchmarks/time_budget.py``): steps matter
more than width there, e.g. 410 steps of a base-16 network beat 20 steps of a base-32 one by
0.32 Dice in 3 minutes, while a GPU affords the large network and patch.

What the user set explicitly is kept: only the settings left open are planned. The plan, with
its measurements and the data's fingerprint, is stored in the model file's history.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from scipy import ndimage

from ..network.unet import UNetConfig
from .data import TrainingPair
from .losses import IGNORE

# Optimisation steps a from-scratch U-Net needs within the budget before width or a larger
# patch pay off (on DSB2018, 410 steps of base 16 reached 0.928 Dice, 1006 steps of base 8
# 0.922, 20 steps of base 32 0.605; below ~300 the score fell quickly).
MIN_STEPS = {2: 300, 3: 200}
# (base features, patch edge, batch size), cheapest first; later ones are more capable.
CANDIDATES = {
    2: ((8, 128, 8), (16, 128, 8), (16, 256, 8), (32, 256, 8)),
    3: ((8, 48, 2), (16, 48, 2), (16, 64, 2), (32, 64, 2), (32, 96, 2)),
}
DEPTH = 4
TIMED_STEPS = 2  # after one warm-up step, whose allocations and kernel choices do not count
MAX_PLANNING_SHARE = 0.1  # of the budget; the rest trains
OBJECT_MARGIN = 4  # a patch spans at least this many object widths (when the images allow)


@dataclass(frozen=True)
class DataFingerprint:
    """What the planner looks at in the annotated data.

    ``object_width``: median over objects of twice their largest inscribed radius (a nucleus's
    diameter, a vessel's calibre), in pixels; None without any object. ``extent``: median
    bounding-box size of the objects per axis; in 3D their ratio shows anisotropy.
    """

    images: int
    spatial_dims: int
    median_shape: tuple[int, ...]
    labelled_fraction: float  # of all pixels: 1 for dense labels, small for scribbles
    foreground_fraction: float  # of the labelled pixels
    objects: int
    object_width: float | None
    extent: tuple[float, ...] | None

    @property
    def anisotropy(self) -> float | None:
        """In 3D, the objects' in-plane extent over their depth (1: isotropic)."""
        if self.spatial_dims != 3 or not self.extent or self.extent[0] <= 0:
            return None
        return float(np.mean(self.extent[1:]) / self.extent[0])

    def summary(self) -> str:
        shape = " x ".join(str(s) for s in self.median_shape)
        parts = [
            f"{self.images} image(s) of about {shape}",
            f"{100 * self.labelled_fraction:.0f}% labelled",
            f"{100 * self.foreground_fraction:.0f}% foreground",
        ]
        if self.object_width is not None:
            parts.append(f"{self.objects} objects about {self.object_width:.0f} px wide")
        if self.anisotropy is not None and self.anisotropy > 1.5:
            parts.append(f"anisotropy about {self.anisotropy:.1f} (in-plane / depth)")
        return ", ".join(parts)


@dataclass(frozen=True)
class Measurement:
    base_features: int
    patch_size: int
    batch_size: int
    step_seconds: float


@dataclass(frozen=True)
class TrainingPlan:
    """The chosen settings, why, and what was measured to choose them."""

    depth: int
    base_features: int
    patch_size: int
    batch_size: int
    step_seconds: float | None  # measured, for the chosen configuration
    expected_steps: int | None
    budget_seconds: float
    planning_seconds: float
    fingerprint: DataFingerprint
    measured: list[Measurement] = field(default_factory=list)
    fixed: dict[str, int] = field(default_factory=dict)  # what the user set explicitly
    reason: str = ""

    def summary(self) -> str:
        """One line for the CLI and the widget."""
        steps = f"~{self.expected_steps} steps" if self.expected_steps else "steps unknown"
        speed = f"{self.step_seconds:.2f} s a step" if self.step_seconds else "not measured"
        return (
            f"plan for {self.budget_seconds / 60:g} min: depth {self.depth}, base "
            f"{self.base_features}, {self.batch_size} patches of {self.patch_size} px a step "
            f"({speed}, {steps}); {self.reason}; data: {self.fingerprint.summary()}; "
            f"planning took {self.planning_seconds:.0f} s"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the model file's history (no objects)."""
        data = asdict(self)
        data["fingerprint"]["median_shape"] = list(self.fingerprint.median_shape)
        if self.fingerprint.extent is not None:
            data["fingerprint"]["extent"] = list(self.fingerprint.extent)
        return data


def fingerprint(pairs: Sequence[TrainingPair], max_images: int = 8) -> DataFingerprint:
    """Measure the annotated data (the first ``max_images`` images for the object sizes)."""
    if not pairs:
        raise ValueError("no training data to plan from")
    dims = len(pairs[0].spatial_shape)
    total = labelled = foreground = 0
    widths: list[float] = []
    extents: list[np.ndarray] = []
    for index, pair in enumerate(pairs):
        targets = pair.targets
        known = targets != IGNORE
        total += targets.size
        labelled += int(known.sum())
        mask = known & (targets > 0)
        foreground += int(mask.sum())
        if index < max_images:
            w, e = _object_sizes(pair, mask)
            widths.extend(w)
            extents.extend(e)
    return DataFingerprint(
        images=len(pairs),
        spatial_dims=dims,
        median_shape=tuple(
            int(v) for v in np.median([p.spatial_shape for p in pairs], axis=0).round()
        ),
        labelled_fraction=labelled / max(1, total),
        foreground_fraction=foreground / max(1, labelled),
        objects=len(widths),
        object_width=float(np.median(widths)) if widths else None,
        extent=tuple(float(v) for v in np.median(extents, axis=0)) if extents else None,
    )


def _object_sizes(pair: TrainingPair, mask: np.ndarray) -> tuple[list[float], list[np.ndarray]]:
    """Width (2 x largest inscribed radius) and bounding-box extent of each object."""
    if pair.instances is not None and pair.instances.any():
        objects = np.asarray(pair.instances)
        # Touching objects: measure each inside its own outline, not the merged mask.
        inside = ndimage.grey_erosion(objects, size=3) == objects
        distance = ndimage.distance_transform_edt(inside & (objects > 0))
        count = int(objects.max())
    else:
        objects, count = ndimage.label(mask)
        distance = ndimage.distance_transform_edt(mask)
    if count == 0:
        return [], []
    ids = np.arange(1, count + 1)
    radius = np.asarray(ndimage.maximum(distance, objects, ids), dtype=float)
    boxes = ndimage.find_objects(objects)
    widths, extents = [], []
    for r, box in zip(radius, boxes, strict=False):
        if box is None:
            continue
        widths.append(2 * max(float(r), 0.5))
        extents.append(np.array([s.stop - s.start for s in box], dtype=float))
    return widths, extents


StepTimer = Callable[[UNetConfig, int, int], float]


def plan_training(
    pairs: Sequence[TrainingPair],
    net: UNetConfig,
    budget_minutes: float,
    time_step: StepTimer,
    *,
    fixed: dict[str, int] | None = None,
    data: DataFingerprint | None = None,
) -> TrainingPlan:
    """Choose depth, width, patch and batch size for training ``net`` (whose channels and
    dimensions are those of the data) for ``budget_minutes``.

    ``time_step(net_config, patch_size, batch_size)`` returns the seconds one training step
    takes (see :func:`step_timer`). ``fixed`` holds the settings the user gave
    (``depth``, ``base_features``, ``patch_size``, ``batch_size``); they are kept.
    """
    started = time.perf_counter()
    fixed = {k: int(v) for k, v in (fixed or {}).items() if v is not None}
    if net.encoder != "unet":
        fixed.setdefault("depth", net.depth)  # set by the encoder's stages
    dims = net.spatial_dims
    data = data or fingerprint(pairs)
    budget = budget_minutes * 60
    depth = fixed.get("depth", DEPTH)
    candidates = _candidates(pairs, dims, depth, fixed, data)
    if len(candidates) == 1:  # nothing to choose: spend no time measuring
        base, patch, batch = candidates[0]
        return TrainingPlan(
            depth=depth,
            base_features=base,
            patch_size=patch,
            batch_size=batch,
            step_seconds=None,
            expected_steps=None,
            budget_seconds=budget_minutes * 60,
            planning_seconds=time.perf_counter() - started,
            fingerprint=data,
            fixed=fixed,
            reason="the only setting left by the options given",
        )
    min_steps = MIN_STEPS[dims]
    measured, chosen = _measure(candidates, net, depth, budget, time_step, started)
    planning = time.perf_counter() - started
    if chosen is None:
        chosen = measured[0]
        reason = (
            f"even the cheapest setting affords fewer than {min_steps} steps: give more time "
            "(or a GPU) for a better model"
        )
    elif chosen is measured[-1] and len(measured) == len(candidates):
        reason = "the most capable setting fits the budget"
    else:
        reason = f"the most capable setting with at least {min_steps} steps"
    train_seconds = max(0.0, budget - planning)
    return TrainingPlan(
        depth=depth,
        base_features=chosen.base_features,
        patch_size=chosen.patch_size,
        batch_size=chosen.batch_size,
        step_seconds=chosen.step_seconds,
        expected_steps=int(train_seconds / chosen.step_seconds) if chosen.step_seconds else None,
        budget_seconds=budget,
        planning_seconds=planning,
        fingerprint=data,
        measured=measured,
        fixed=fixed,
        reason=reason,
    )


def _candidates(
    pairs: Sequence[TrainingPair],
    dims: int,
    depth: int,
    fixed: dict[str, int],
    data: DataFingerprint,
) -> list[tuple[int, int, int]]:
    """(base features, patch, batch) to try, cheapest first, with the user's fixed settings
    and patches rounded to what the network needs and no larger than the images."""
    multiple = 2**depth
    largest = max(max(p.spatial_shape) for p in pairs)
    fits = -(-largest // multiple) * multiple  # a patch beyond the images gains nothing
    wanted = OBJECT_MARGIN * (data.object_width or 0)
    candidates: list[tuple[int, int, int]] = []
    for base, patch, batch in CANDIDATES[dims]:
        base = fixed.get("base_features", base)
        patch = min(fixed.get("patch_size", patch), fits)
        patch = max(multiple, -(-patch // multiple) * multiple)
        batch = fixed.get("batch_size", batch)
        if (base, patch, batch) not in candidates:
            candidates.append((base, patch, batch))
    # Patches too small for the objects go, unless nothing else is left.
    roomy = [c for c in candidates if c[1] >= min(wanted, fits)]
    return roomy or candidates[-1:]


def _measure(
    candidates: list[tuple[int, int, int]],
    net: UNetConfig,
    depth: int,
    budget: float,
    time_step: StepTimer,
    started: float,
) -> tuple[list[Measurement], Measurement | None]:
    """Time the candidates in order while they afford :data:`MIN_STEPS` steps in ``budget``
    seconds; returns the measurements and the last affordable one (None: not even the first)."""
    dims = net.spatial_dims
    affordable = budget / MIN_STEPS[dims]  # seconds a step may take
    measured: list[Measurement] = []
    chosen: Measurement | None = None
    for base, patch, batch in candidates:
        if measured:
            previous = measured[-1]
            # Do not spend time measuring what cannot pass: cost grows with width^2 x pixels
            # (allowing the larger one to be twice as efficient per operation).
            ratio = (base / previous.base_features) ** 2 * (patch / previous.patch_size) ** dims
            ratio *= batch / previous.batch_size
            if previous.step_seconds * ratio / 2 > affordable:
                break
        if measured and time.perf_counter() - started > MAX_PLANNING_SHARE * budget:
            break
        config = replace(net, depth=depth, base_features=base)
        seconds = float(time_step(config, patch, batch))
        measured.append(Measurement(base, patch, batch, seconds))
        if seconds <= affordable:
            chosen = measured[-1]
        else:
            break
    return measured, chosen


def step_timer(
    pairs: Sequence[TrainingPair],
    train_config: Any,
    task: dict[str, Any] | None = None,
    steps: int = TIMED_STEPS,
) -> StepTimer:
    """A ``time_step`` for :func:`plan_training` that runs real training steps (sampling and
    augmentation included) of a throw-away :class:`~napari_unet.core.train.trainer.Trainer` on
    ``pairs`` with ``train_config``'s device, precision and loss."""
    from .trainer import Trainer

    def time_step(net: UNetConfig, patch: int, batch: int) -> float:
        config = replace(
            train_config,
            patch_size=patch,
            batch_size=batch,
            epochs=1,
            steps_per_epoch=steps + 2,  # never reaches the end of the epoch (no validation)
            max_minutes=None,
        )
        trainer = Trainer(list(pairs), net, config, val_pairs=[], task=task)
        run = trainer.train()  # a generator: closed below
        try:
            next(run)  # warm-up
            started = time.perf_counter()
            for _ in range(steps):
                next(run)
            return (time.perf_counter() - started) / steps
        finally:
            run.close()
            trainer.release()

    return time_step


def describe_plan(plan: dict[str, Any]) -> str:
    """``info``'s description of a stored plan (a :meth:`TrainingPlan.to_dict`)."""
    tried = ", ".join(
        f"base {m['base_features']} patch {m['patch_size']} x {m['batch_size']} "
        f"{m['step_seconds']:.2f} s"
        for m in plan.get("measured", [])
    )
    seconds = plan.get("step_seconds")
    data = plan.get("fingerprint")
    return (
        f"depth {plan['depth']}, base {plan['base_features']}, {plan['batch_size']} patches of "
        f"{plan['patch_size']} px for {plan['budget_seconds'] / 60:g} min"
        + (f" ({seconds:.2f} s a step, ~{plan['expected_steps']} steps)" if seconds else "")
        + (f"; {plan['reason']}" if plan.get("reason") else "")
        + (f"; step times measured: {tried}" if tried else "")
        + (f"; set by the user: {plan['fixed']}" if plan.get("fixed") else "")
        + (f"; data: {DataFingerprint(**data).summary()}" if data else "")
    )


def plan_for_budget(
    pairs: Sequence[TrainingPair],
    net: UNetConfig,
    config: Any,
    *,
    task: dict[str, Any] | None = None,
    fixed: dict[str, int] | None = None,
    validation_given: bool = False,
) -> tuple[UNetConfig, Any, TrainingPlan]:
    """Plan a new model's training for ``config.max_minutes``, timing real steps: the network
    and :class:`~napari_unet.core.train.trainer.TrainConfig` to train with (the budget less the
    planning time), and the plan. The CLI and the widget both call this."""
    from .data import split_for_validation

    if not config.max_minutes:
        raise ValueError("planning needs a time budget (max_minutes)")
    # Time the steps on what will be trained on: without the validation part.
    train_pairs = list(pairs)
    if not validation_given:
        train_pairs = split_for_validation(train_pairs, config.val_fraction, config.seed)[0]
    plan = plan_training(
        train_pairs, net, config.max_minutes, step_timer(train_pairs, config, task), fixed=fixed
    )
    net = replace(net, depth=plan.depth, base_features=plan.base_features)
    left = max(0.05 * config.max_minutes, config.max_minutes - plan.planning_seconds / 60)
    config = replace(
        config, patch_size=plan.patch_size, batch_size=plan.batch_size, max_minutes=left
    )
    return net, config, plan
