"""``napari-unet import``: wrap a plain PyTorch state_dict and its config into a model
file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import (
    check_model_out,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import", help="wrap a plain PyTorch state_dict and its config into a model file"
    )
    p.add_argument("--weights", required=True, help="file with the state_dict (torch.save)")
    p.add_argument(
        "--config",
        required=True,
        help="JSON file: U-Net config keys, optionally with 'preprocessing' and 'class_names'",
    )
    p.add_argument("--out", required=True, help="model file to write")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=_run_import)


def _run_import(args: argparse.Namespace) -> int:
    from ..core import Preprocessing, UNetConfig, UserInputError, import_state_dict, save_model
    from ..core.data.safe_paths import refuse_inputs

    out = Path(args.out)
    refuse_inputs([out], [Path(args.weights), Path(args.config)], "--out")
    if out.exists() and not args.overwrite:
        raise UserInputError(f"{out} already exists; pass --overwrite to replace it")
    check_model_out(out, "--out")
    try:
        spec = json.loads(Path(args.config).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserInputError(f"cannot read config {args.config}: {err}") from err
    if not isinstance(spec, dict):
        raise UserInputError(f"config {args.config} must hold a JSON object")
    preprocessing = Preprocessing.from_dict(spec.pop("preprocessing", {}))
    class_names = spec.pop("class_names", None)
    model = import_state_dict(args.weights, UNetConfig.from_dict(spec), preprocessing, class_names)
    save_model(model, out)
    print(f"imported {args.weights} -> {out}")
    return 0
