"""``napari-unet info``: describe a model file or package, or list the bundled models."""

from __future__ import annotations

import argparse

from .common import (
    fmt,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe a model file (or list the bundled models)")
    p.add_argument(
        "model", nargs="?", help="model file or bundled model name; omit to list bundled models"
    )
    p.set_defaults(run=_run_info)


def describe_model(spec: str) -> str:
    """A multi-line, human-readable description of a model file or bioimage.io package."""
    from ..core import bundled_models, load_model
    from ..core.models.model_file import resolve_model_path

    if spec not in bundled_models():
        from ..core.interop.bioimageio_import import describe_package
        from ..core.interop.bioimageio_spec import is_package

        if is_package(spec):
            return "\n".join(describe_package(spec))
    path = resolve_model_path(spec)
    m = load_model(path)
    c, pp = m.config, m.preprocessing
    params = sum(
        v.numel()
        for k, v in m.weights.items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    lines = [
        f"model:          {path} ({path.stat().st_size / 1e6:.1f} MB)",
        *([f"description:    {m.description}"] if m.description else []),
        f"architecture:   {c.spatial_dims}D U-Net, depth {c.depth}, {c.base_features} base features, {c.norm} norm, "
        f"{c.upsample} upsampling, dropout {c.dropout}, "
        + (
            f"valid padding (the paper's geometry: {c.valid_margin} px margin)"
            if c.padding == "valid"
            else "same padding"
        )
        + (", MobileNetV2 encoder" if c.encoder == "mobilenet_v2" else "")
        + f"; {params:,} parameters",
        f"input:          {c.in_channels} channel(s), "
        + {"as_is": "channels as they are", "gray": "colour turned to gray"}.get(
            pp.channel_mode, f"only channel {pp.channel} of the image"
        )
        + f", {pp.norm} normalisation"
        + (f" ({pp.low}-{pp.high} percentiles)" if pp.norm == "percentile" else ""),
        f"classes:        {', '.join(m.class_names)}",
        "task:           "
        + (
            f"instances (boundary width {m.task.get('boundary_width')}; seeded watershed)"
            if m.is_instance_model
            else "semantic (class per pixel)"
        ),
        "trained scale:  "
        + (
            m.scale.describe()
            + " (predict rescales images whose structures lie outside that range: --object-size)"
            if m.scale
            else "not recorded (images are predicted on their own grid)"
        ),
    ]
    for i, run in enumerate(m.history.get("runs", []), 1):
        cfg = run.get("config", {})
        lines.append(
            f"training run {i}: {run.get('steps')} steps, {run.get('seconds')} s on {run.get('device')}, "
            f"{_count(run.get('train_images'))} training / {_count(run.get('val_images'))} validation image(s), "
            f"best validation {run.get('score', 'score')} {fmt(run.get('best_score'))}, lr {cfg.get('learning_rate')}, loss {cfg.get('loss')}, "
            f"finished {run.get('finished')}"
        )
        if run.get("plan"):
            from ..core.train.planner import describe_plan

            lines.append(f"  planned:      {describe_plan(run['plan'])}")
    if "imported_from" in m.history:
        lines.append(f"imported from:  {m.history['imported_from']}")
    lines.append(f"resumable:      {'yes' if m.training_state else 'no'}")
    return "\n".join(lines)


def _count(value: object) -> object:
    """Image lists count their entries; packages store the count itself."""
    return len(value) if isinstance(value, (list, tuple)) else (value if value is not None else 0)


def _run_info(args: argparse.Namespace) -> int:
    from ..core import bundled_models

    if args.model:
        print(describe_model(args.model))
        return 0
    bundled = bundled_models()
    if not bundled:
        print("no bundled models")
    for name, path in bundled.items():
        card = path.with_suffix(".md")
        summary = card.read_text().splitlines()[0].lstrip("# ") if card.exists() else ""
        print(f"{name:<12} {summary}")
    return 0
