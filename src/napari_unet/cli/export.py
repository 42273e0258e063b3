"""``napari-unet export``: a model as a bioimage.io package, TorchScript or ONNX."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a model as a bioimage.io package, TorchScript or ONNX",
        description="bioimageio: a bioimage.io model package (format 0.5; .zip or folder) with "
        "torchscript, onnx and pytorch_state_dict weights, test tensors, cover and documentation, "
        "for deepImageJ, ilastik, QuPath and bioimage.io's tools. torchscript / onnx: the bare "
        "network (normalised image in, probabilities out; spatial sizes multiples of 2**depth) "
        "with its metadata, for scripts and onnxruntime.",
    )
    p.add_argument("model", help="model file or bundled model name")
    p.add_argument(
        "out", help="file or folder to write (nuclei.zip, nuclei.onnx, nuclei.torchscript.pt)"
    )
    p.add_argument("--format", required=True, choices=("bioimageio", "torchscript", "onnx"))
    p.add_argument(
        "--sample",
        help="bioimageio: an image the test tensors and cover are cut from (default: the "
        "bundled nuclei image; 3D models need one)",
    )
    p.add_argument(
        "--author", action="append", help="bioimageio: an author's name (repeat for several)"
    )
    p.add_argument("--license", default="CC-BY-4.0", help="bioimageio: SPDX licence id")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from ..core import bundled_models, load_model
    from ..core.data.safe_paths import refuse_inputs
    from ..core.interop.export import export_model

    out = Path(args.out)
    sources = [Path(p) for p in (args.model, args.sample) if p and Path(p).exists()]
    refuse_inputs([out], sources, "OUT")
    model = load_model(args.model)
    sample = None
    if args.sample:
        from ..core import io

        sample = io.read_image(args.sample)
    name = args.model if args.model in bundled_models() else None
    summary = export_model(
        model, out, args.format, name=name, sample=sample, authors=args.author,
        license=args.license, overwrite=args.overwrite,
    )  # fmt: skip
    print(summary.replace("the model", args.model, 1))
    return 0
