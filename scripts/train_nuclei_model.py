"""Retrain the bundled "nuclei" model from the shared DSB2018 data, with one command.

    python scripts/train_nuclei_model.py --data ../shared/data/dsb2018 --minutes 40 --more-minutes 30

Trains on the fluorescence images of ``train`` (CC0), validates on those of ``val``, then
writes ``src/napari_unet/models/nuclei.pt`` (an instance model: background / interior /
boundary) in half precision without training state, and prints the validation metrics of the
exported file (the numbers for the model card).
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
from napari_unet.core.instances import InstanceAccumulator

ROOT = Path(__file__).resolve().parents[1]


def fluo_subset(data: Path, split: str, into: Path) -> tuple[Path, Path]:
    """Symlink the fluorescence images (and labels) of one split into ``into``."""
    images, labels = into / split / "images", into / split / "labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for entry in json.loads((data / split / "meta.json").read_text()):
        if entry["kind"] == "fluo":
            for sub, folder in (("images", images), ("labels", labels)):
                os.symlink(
                    (data / split / sub / f"{entry['id']}.png").resolve(),
                    folder / f"{entry['id']}.png",
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
    parser.add_argument("--minutes", type=float, default=40)
    parser.add_argument("--more-minutes", type=float, default=0, help="then resume for this long")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "src" / "napari_unet" / "models" / "nuclei.pt"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train_images, train_labels = fluo_subset(args.data, "train", tmp)
        val_images, val_labels = fluo_subset(args.data, "val", tmp)
        full = tmp / "nuclei-full.pt"
        code = cli([
            "train", "--images", str(train_images), "--labels", str(train_labels),
            "--val-images", str(val_images), "--val-labels", str(val_labels), "--out", str(full),
            "--instances",
            "--gray", "--base-features", "16", "--depth", "4", "--minutes", str(args.minutes),
            "--steps-per-epoch", "50", "--batch-size", "8", "--patch-size", "256", "--seed", "1",
            "--description", "Fluorescence nuclei (foreground), DSB2018 stage1 fluo images",
        ])  # fmt: skip
        if code == 0 and args.more_minutes:
            code = cli([
                "train", "--images", str(train_images), "--labels", str(train_labels),
                "--val-images", str(val_images), "--val-labels", str(val_labels),
                "--resume", str(full), "--out", str(full), "--minutes", str(args.more_minutes),
            ])  # fmt: skip
        if code != 0:
            raise SystemExit(code)
        save_model(load_model(full), args.out, half=True, include_training_state=False)
        metrics = score(args.out, val_images, val_labels)
    print(json.dumps({"model": str(args.out), "val_fluo_pooled": metrics}, indent=2))


if __name__ == "__main__":
    run()
