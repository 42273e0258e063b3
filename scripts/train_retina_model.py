"""Retrain the bundled "retina" vessel model from the shared DRIVE data, with one command.

    python scripts/train_retina_model.py --data ../shared/data/drive/training --minutes 15

Trains on all 20 DRIVE training images (research use only: the images stay outside the
repository; the weights may ship with a model card saying so), then writes
``src/napari_unet/models/retina.pt`` in half precision without training state and prints its
pooled field-of-view metrics on the training images. Held-out figures for the same recipe come
from the 4-fold cross-validation in ``benchmarks/drive_vessels.py``, which calls
:func:`train_vessel_model` below, so both always use one recipe.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from napari_unet.cli import main as cli
from napari_unet.core import MetricAccumulator, Segmenter, io, load_model, save_model

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "drive" / "training"
DESCRIPTION = "Retinal vessels in colour fundus photographs (DRIVE training images 21-40)"

# RGB input (the network learns to weigh the green channel), a base-16 depth-4 U-Net, vessel
# patches over-sampled, Dice + cross-entropy against the thin-vessel class imbalance, a cosine
# learning-rate decay over the time budget, no held-out images: with 15-20 images every one is
# worth training on, and the cross-validation measures the recipe instead.
RECIPE = [
    "--classes", "2", "--base-features", "16", "--depth", "4", "--patch-size", "256",
    "--batch-size", "8", "--lr", "2e-3", "--lr-schedule", "cosine", "--loss", "ce+dice",
    "--val-fraction", "0", "--steps-per-epoch", "50",
]  # fmt: skip


@dataclass(frozen=True)
class DriveImage:
    """One DRIVE image: its number and the paths of image, manual vessels and field of view."""

    key: str
    image: Path
    vessels: Path
    fov: Path


def drive_images(data: Path) -> list[DriveImage]:
    """The DRIVE images under ``data`` (``images/``, ``1st_manual/``, ``mask/``), by number."""
    items = []
    for image in sorted((data / "images").glob("*_training.tif")):
        key = image.name.split("_")[0]
        items.append(
            DriveImage(
                key,
                image,
                data / "1st_manual" / f"{key}_manual1.gif",
                data / "mask" / f"{key}_training_mask.gif",
            )
        )
    return items


def link_subset(items: list[DriveImage], into: Path) -> tuple[Path, Path]:
    """Symlink the images and vessel labels of ``items`` into ``into/images`` and ``into/labels``."""
    images, labels = into / "images", into / "labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for item in items:
        os.symlink(item.image.resolve(), images / item.image.name)
        os.symlink(item.vessels.resolve(), labels / item.vessels.name)
    return images, labels


def train_vessel_model(
    items: list[DriveImage],
    out: Path,
    minutes: float,
    seed: int = 1,
    device: str = "auto",
    changes: Sequence[str] = (),
) -> None:
    """Train the retina recipe on ``items`` for ``minutes`` and write the model to ``out``;
    ``changes`` are ``napari-unet train`` options that override the recipe's (to try one)."""
    with tempfile.TemporaryDirectory() as tmp:
        images, labels = link_subset(items, Path(tmp))
        code = cli([
            "train", "--images", str(images), "--labels", str(labels), "--pattern", r"^(\d+)_",
            "--out", str(out), "--overwrite", "--minutes", str(minutes), "--seed", str(seed),
            "--device", device, "--description", DESCRIPTION, *RECIPE, *changes,
        ])  # fmt: skip
    if code != 0:
        raise SystemExit(code)


def score_vessels(
    model: str | Path,
    items: list[DriveImage],
    device: str = "auto",
    threshold: float = 0.5,
    tta: bool = False,
    per_image: dict[str, dict[str, float]] | None = None,
) -> MetricAccumulator:
    """Pooled vessel metrics inside the field of view (the DRIVE convention), with ROC AUC;
    ``tta`` averages over the 8 flips and rotations; each image's own metrics go into
    ``per_image`` (by image number) when it is given."""
    segmenter = Segmenter(str(model), device=device)
    pooled = MetricAccumulator(2)
    for item in items:
        result = segmenter.predict(
            io.read_image(item.image),
            output="semantic",
            keep_probabilities=True,
            test_time_augmentation=tta,
        )
        vessel = result.probabilities[1]
        truth = (io.read_labels(item.vessels) > 0).astype(np.int64)
        fov = io.read_labels(item.fov) > 0
        own = pooled.add((vessel > threshold).astype(np.int64), truth, scores=vessel, mask=fov)
        if per_image is not None:
            per_image[item.key] = own["1"]
    return pooled


def run() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--minutes", type=float, default=15)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "src" / "napari_unet" / "models" / "retina.pt"
    )
    args = parser.parse_args()
    items = drive_images(args.data)
    if not items:
        raise SystemExit(f"no DRIVE images found under {args.data}/images")
    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / "retina-full.pt"
        train_vessel_model(items, full, args.minutes, args.seed, args.device)
        model = replace(load_model(full), class_names=["background", "vessel"])
        save_model(model, args.out, half=True, include_training_state=False)
    metrics = {
        "drive_training_fov_pooled": score_vessels(args.out, items, args.device).pooled()["1"],
        "with_test_time_augmentation": score_vessels(
            args.out, items, args.device, tta=True
        ).pooled()["1"],
    }
    print(json.dumps({"model": str(args.out), **metrics}, indent=2))


if __name__ == "__main__":
    run()
