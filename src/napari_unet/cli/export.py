"""``napari-unet export``: a model as a bioimage.io package, TorchScript or ONNX."""

from __future__ import annotations

import argparse
import json
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
    from ..core import UserInputError, bundled_models, load_model
    from ..core.data.safe_paths import refuse_inputs
    from ..core.interop.network_export import export_metadata, export_network

    out = Path(args.out)
    sources = [Path(p) for p in (args.model, args.sample) if p and Path(p).exists()]
    refuse_inputs([out], sources, "OUT")
    if out.exists() and not args.overwrite:
        raise UserInputError(f"{out} already exists; pass --overwrite to replace it")
    model = load_model(args.model)
    if args.format == "bioimageio":
        from ..core import io
        from ..core.interop.bioimageio_export import export_package, package_sizes

        sample = io.read_image(args.sample) if args.sample else None
        name = args.model if args.model in bundled_models() else None
        export_package(
            model, out, name=name, sample=sample, authors=args.author, license=args.license,
            overwrite=args.overwrite,
        )  # fmt: skip
        minimum, step, halo = package_sizes(model)
        print(
            f"exported {args.model} as a bioimage.io package to {out}: torchscript, onnx and "
            f"pytorch_state_dict weights; input sides {minimum} + n x {step}, halo {halo}; "
            f"check it with `bioimageio test {out}`"
        )
        return 0
    if args.sample or args.author:
        raise UserInputError("--sample and --author apply to --format bioimageio only")
    export_network(model, out, args.format)
    meta = export_metadata(model)
    print(
        f"exported {args.model} as {args.format} to {out}: input {meta['input']['axes']} float32 "
        f"with {meta['input']['channels']} channel(s), spatial sizes multiples of "
        f"{meta['input']['spatial_size_multiple']}, normalised as "
        f"{json.dumps(meta['input']['preprocessing'])}; output {meta['output']['channels']} "
        f"probability channel(s) {meta['class_names']}"
    )
    return 0
