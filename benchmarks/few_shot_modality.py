"""A new modality in a user's minutes: fine-tune a nuclei model on 3 colour (H&E) images.

    python benchmarks/few_shot_modality.py --model nuclei --model fluo-only.pt \\
        [--data ../shared/data/dsb2018] [--minutes 2] [--images 3]

What a user with a new kind of image does: annotate 3 images, `napari-unet train --from MODEL
--minutes 2`, segment the rest. Here the 3 images are the first colour images of DSB2018's
``train`` split; every row is scored on the 13 colour images of ``val`` (F1 at IoU 0.5,
pooled over objects) before and after the fine-tune, and on the 58 fluorescence images after
it (what the fine-tune costs on the modality the model knew). Each model is fine-tuned as it
reads images, and a model that does not invert is also fine-tuned with ``--invert auto``.
All rows come from one run; precision float32 unless ``--precision`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from napari_unet.cli import main as cli
from napari_unet.core import Segmenter, io, load_model
from napari_unet.core.predict.instances import InstanceAccumulator

ROOT = Path(__file__).resolve().parents[1]


def link(data: Path, split: str, entries: list[dict], into: Path) -> tuple[Path, Path]:
    """Symlink these images and their labels into ``into``/images and ``into``/labels."""
    images, labels = into / "images", into / "labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for entry in entries:
        for sub, folder in (("images", images), ("labels", labels)):
            os.symlink(
                (data / split / sub / f"{entry['id']}.png").resolve(), folder / f"{entry['id']}.png"
            )
    return images, labels


def f1(model: str | Path, data: Path, entries: list[dict], precision: str) -> float:
    """Object F1 at IoU 0.5, pooled over ``entries`` of the val split."""
    segmenter = Segmenter(model, device="cpu", precision=precision)
    objects = InstanceAccumulator((0.5,))
    for entry in entries:
        image = io.read_image(data / "val" / "images" / f"{entry['id']}.png")
        truth = io.read_labels(data / "val" / "labels" / f"{entry['id']}.png")
        objects.add(segmenter.predict(image, output="instances", min_size=10).labels, truth)
    return objects.pooled()[0.5]["f1"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "dsb2018")
    parser.add_argument("--model", action="append", help="bundled name or model file (repeat)")
    parser.add_argument("--minutes", type=float, default=2)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--precision", default="float32")
    args = parser.parse_args()
    os.environ["NAPARI_UNET_PRECISION"] = args.precision  # training's "auto" as well
    if not (args.data / "train" / "meta.json").is_file():
        print(f"DSB2018 data not found at {args.data}; nothing to measure")
        return
    train = json.loads((args.data / "train" / "meta.json").read_text())
    val = json.loads((args.data / "val" / "meta.json").read_text())
    shots = [e for e in train if e["kind"] == "color"][: args.images]
    colour = [e for e in val if e["kind"] == "color"]
    fluo = [e for e in val if e["kind"] == "fluo"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images, labels = link(args.data, "train", shots, tmp / "shots")
        for spec in args.model or ["nuclei"]:
            start = load_model(spec)
            before = f1(spec, args.data, colour, args.precision)
            inverts = [start.preprocessing.invert]
            if start.preprocessing.invert == "no":
                inverts.append("auto")
            for invert in inverts:
                out = tmp / f"{len(rows)}.pt"
                started = time.perf_counter()
                code = cli([
                    "train", "--images", str(images), "--labels", str(labels), "--from", str(spec),
                    "--invert", invert, "--minutes", str(args.minutes), "--out", str(out),
                    "--seed", "0",
                ])  # fmt: skip
                if code != 0:
                    raise SystemExit(code)
                seconds = time.perf_counter() - started
                steps = load_model(out).history["runs"][-1].get("steps")
                rows.append((
                    f"{Path(str(spec)).stem}, invert {invert}", before,
                    f1(out, args.data, colour, args.precision),
                    f1(out, args.data, fluo, args.precision), steps, seconds,
                ))  # fmt: skip
    print(
        f"\nDSB2018: fine-tuned on {len(shots)} colour training images for {args.minutes:g} min "
        f"({args.precision}); F1@0.5 on {len(colour)} colour and {len(fluo)} fluorescence val images"
    )
    print(
        f"{'model, how it reads':<34} {'colour before':>13} {'colour after':>12} {'fluo after':>10} {'steps':>6} {'s':>5}"
    )
    for name, before, after, fluo_after, steps, seconds in rows:
        print(
            f"{name:<34} {before:>13.3f} {after:>12.3f} {fluo_after:>10.3f} {steps!s:>6} {seconds:>5.0f}"
        )


if __name__ == "__main__":
    main()
