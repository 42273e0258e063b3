"""Object-level accuracy on DSB2018 validation images, beside published figures.

    python benchmarks/dsb2018_instances.py [--data ../shared/data/dsb2018] [--model nuclei]

Segments every image of the split into instances, matches them to the ground truth (IoU
thresholds 0.5 to 0.9) and prints F1, precision, recall, mean matched IoU and panoptic quality
at IoU 0.5 for the fluorescence, colour (H&E) and brightfield images separately and for all.
Published figures are on the DSB2018 test split of the StarDist paper (MICCAI 2018), not on
this split: they are context, not a like-for-like comparison.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from napari_unet.core import Segmenter, io
from napari_unet.core.predict.instances import InstanceAccumulator

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = [  # (method, F1 at IoU 0.5), StarDist paper, DSB2018 test images
    ("StarDist (published)", 0.86),
    ("Mask R-CNN (published)", 0.83),
    ("3-class U-Net + watershed (published)", "0.82-0.84"),
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "dsb2018")
    parser.add_argument("--split", default="val")
    parser.add_argument("--model", default="nuclei", help="bundled model name or model file")
    parser.add_argument("--seed-threshold", type=float, default=0.5)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--min-size", type=int, default=10)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    meta_file = args.data / args.split / "meta.json"
    if not meta_file.is_file():
        print(f"DSB2018 data not found at {args.data}; nothing to measure")
        return
    meta = json.loads(meta_file.read_text())
    segmenter = Segmenter(args.model, device=args.device)
    groups: dict[str, InstanceAccumulator] = {}
    seconds = 0.0
    for entry in meta:
        image = io.read_image(args.data / args.split / "images" / f"{entry['id']}.png")
        truth = io.read_labels(args.data / args.split / "labels" / f"{entry['id']}.png")
        started = time.perf_counter()
        objects = segmenter.predict(
            image,
            output="instances",
            threshold=args.threshold,
            seed_threshold=args.seed_threshold,
            min_size=args.min_size,
        ).labels
        seconds += time.perf_counter() - started
        for group in (entry["kind"], "all"):
            groups.setdefault(group, InstanceAccumulator()).add(objects, truth)
    counts = {kind: sum(1 for e in meta if e["kind"] == kind) for kind in groups}
    counts["all"] = len(meta)
    print(
        f"model {args.model} on {segmenter.device_name}; DSB2018 {args.split}: {len(meta)} images, "
        f"{seconds:.1f} s of prediction ({1000 * seconds / len(meta):.0f} ms per image)"
    )
    header = f"{'subset':<40} {'images':>6} {'F1@0.5':>7} {'prec':>6} {'recall':>6} {'mIoU':>6} {'PQ':>6} {'F1@0.75':>8}"
    print(header)
    results = {}
    for group in ("fluo", "color", "bright_gray", "all"):
        if group not in groups:
            continue
        pooled = groups[group].pooled()
        m, m75 = pooled[0.5], pooled[0.75]
        results[group] = {"images": counts[group], "iou_0.5": m, "iou_0.75": m75}
        print(
            f"{'this model, ' + group:<40} {counts[group]:>6} {m['f1']:>7.3f} {m['precision']:>6.3f} "
            f"{m['recall']:>6.3f} {m['mean_matched_iou']:>6.3f} {m['panoptic_quality']:>6.3f} {m75['f1']:>8.3f}"
        )
    for name, f1 in PUBLISHED:
        print(f"{name:<40} {'':>6} {f1!s:>7}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
