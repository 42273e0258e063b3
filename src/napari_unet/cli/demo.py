"""``napari-unet demo``: segment the bundled sample with the bundled model and score it."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="segment the bundled sample image with the bundled nuclei model and score it"
    )
    p.add_argument(
        "--out", default="napari-unet-demo", help="output folder (default ./napari-unet-demo)"
    )
    p.add_argument("--device", default="auto")
    p.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    import numpy as np

    from ..core import MetricAccumulator, Segmenter, io
    from ..core.predict.instances import InstanceAccumulator
    from ..samples import sample_path

    image_path, truth_path = sample_path("nuclei"), sample_path("nuclei_labels")
    image = io.read_image(image_path)
    segmenter = Segmenter("nuclei", device=args.device)
    result = segmenter.predict(image, output="instances", min_size=10)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    io.write_image(out / "nuclei_labels.tif", result.labels, overwrite=True)
    truth = io.read_labels(truth_path)
    report = MetricAccumulator(2).add(
        (result.labels > 0).astype(np.int64), (truth > 0).astype(np.int64)
    )["1"]
    objects = InstanceAccumulator((0.5,)).add(result.labels, truth)[0.5]
    print(f"image {image_path.name} {image.shape}, model 'nuclei' on {result.device}")
    print(
        f"found {int(result.labels.max())} nuclei (ground truth: {int(truth.max())}); "
        f"objects matched at IoU 0.5: F1 {objects['f1']:.3f}, mean IoU {objects['mean_matched_iou']:.3f}; "
        f"foreground Dice {report['dice']:.3f}"
    )
    print(
        f"labels written to {out / 'nuclei_labels.tif'}; open them in napari beside the image, "
        f"or run `napari-unet predict --model nuclei YOUR_IMAGES --out OUT`"
    )
    return 0
