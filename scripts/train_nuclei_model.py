"""Retrain the bundled "nuclei" model from the shared DSB2018 data, with one command.

    python scripts/train_nuclei_model.py --data ../shared/data/dsb2018 \
        --from fluo.pt --minutes 30

The model reads every modality of DSB2018 the same way round: grayscale, and inverted where
the background is bright (``--invert auto``), so that H&E and brightfield nuclei look like
fluorescent ones. It trains on all 460 images of ``train`` (colour and brightfield ones
``--oversample`` times, as they are few) and validates on all 73 of ``val``; with ``--from``
it fine-tunes a model (the shipped one was fine-tuned from the fluorescence-only model, which
``--modalities fluo --minutes 40 --more-minutes 30`` trains from scratch). Then it writes
``src/napari_unet/models/nuclei.pt`` (an instance model: background / interior / boundary) in
half precision without training state, and prints the validation metrics of the exported file
per modality (the numbers for the model card).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from napari_unet.cli import main as cli
from napari_unet.core import MetricAccumulator, Segmenter, io, load_model, save_model
from napari_unet.core.predict.instances import InstanceAccumulator

ROOT = Path(__file__).resolve().parents[1]


def subset(
    data: Path, split: str, into: Path, kinds: set[str], oversample: int = 1
) -> tuple[Path, Path]:
    """Symlink the images (and labels) of ``kinds`` of one split into ``into``; images that are
    not fluorescence ``oversample`` times (under different names)."""
    images, labels = into / split / "images", into / split / "labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for entry in json.loads((data / split / "meta.json").read_text()):
        if entry["kind"] not in kinds:
            continue
        copies = 1 if entry["kind"] == "fluo" else oversample
        for copy in range(copies):
            for sub, folder in (("images", images), ("labels", labels)):
                os.symlink(
                    (data / split / sub / f"{entry['id']}.png").resolve(),
                    folder / f"{entry['id']}_{copy}.png",
                )
    return images, labels


def score(model_path: Path, images: Path, labels: Path) -> dict[str, dict[str, float]]:
    """Object metrics (IoU 0.5) and pooled foreground pixel metrics on a folder of images."""
    segmenter = Segmenter(model_path, device="auto")
    pixels = MetricAccumulator(2)
    objects = InstanceAccumulator((0.5,))
    for pair in io.find_pairs(images, labels):
        result = segmenter.predict(
            io.read_image(pair.image), output="instances", min_size=10, keep_probabilities=True
        )
        truth = io.read_labels(pair.labels)
        foreground = result.probabilities[1:].sum(axis=0)
        pixels.add(
            (foreground > 0.5).astype(np.int64), (truth > 0).astype(np.int64), scores=foreground
        )
        objects.add(result.labels, truth)
    return {"objects_iou_0.5": objects.pooled()[0.5], "foreground_pixels": pixels.pooled()["1"]}


def run() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "dsb2018")
    parser.add_argument("--modalities", choices=("all", "fluo"), default="all")
    parser.add_argument("--from", dest="start", help="fine-tune this model instead of a new one")
    parser.add_argument("--minutes", type=float, default=40)
    parser.add_argument("--more-minutes", type=float, default=0, help="then resume for this long")
    parser.add_argument("--oversample", type=int, default=3, help="colour and brightfield images")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--low-resolution", default="1", help="train's --low-resolution (augmentation)"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "src" / "napari_unet" / "models" / "nuclei.pt"
    )
    args = parser.parse_args()
    kinds = {"fluo", "color", "bright_gray"} if args.modalities == "all" else {"fluo"}
    invert = "auto" if args.modalities == "all" else "no"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train_images, train_labels = subset(args.data, "train", tmp, kinds, args.oversample)
        val_images, val_labels = subset(args.data, "val", tmp, kinds)
        full = tmp / "nuclei-full.pt"
        data = [
            "--images", str(train_images), "--labels", str(train_labels),
            "--val-images", str(val_images), "--val-labels", str(val_labels),
        ]  # fmt: skip
        if args.start:
            new_or_from = ["--from", args.start]
        else:
            new_or_from = ["--instances", "--gray", "--base-features", "16", "--depth", "4"]
        description = (
            "Nuclei in fluorescence, H&E and brightfield images (instances), DSB2018 stage1"
            if args.modalities == "all"
            else "Fluorescence nuclei (foreground), DSB2018 stage1 fluo images"
        )
        code = cli([
            "train", *data, "--out", str(full), *new_or_from, "--invert", invert,
            "--minutes", str(args.minutes), "--no-plan", "--lr", str(args.lr),
            "--steps-per-epoch", "50", "--batch-size", "8", "--patch-size", "256", "--seed", "1",
            "--description", description, "--low-resolution", args.low_resolution,
        ])  # fmt: skip
        if code == 0 and args.more_minutes:
            code = cli([
                "train", *data, "--resume", str(full), "--out", str(full),
                "--minutes", str(args.more_minutes),
            ])  # fmt: skip
        if code != 0:
            raise SystemExit(code)
        save_model(load_model(full), args.out, half=True, include_training_state=False)
        metrics = {
            kind: score(args.out, *subset(args.data, "val", tmp / f"score-{kind}", {kind}))
            for kind in sorted(kinds)
        }
    print(json.dumps({"model": str(args.out), "val_pooled": metrics}, indent=2))


if __name__ == "__main__":
    run()
