"""Retinal vessels on DRIVE: 4-fold cross-validation of the retina recipe, beside published figures.

    python benchmarks/drive_vessels.py --minutes 10      # ../shared/data/drive/training

The 20 DRIVE training images are split into 4 folds of 5 consecutive numbers. For each fold the
recipe of ``scripts/train_retina_model.py`` trains on the other 15 images for ``--minutes``,
then the 5 held-out images are segmented. Metrics are pooled over all 20 held-out predictions,
inside the field of view only (the DRIVE convention): F1 (= Dice), ROC AUC, sensitivity,
specificity, accuracy at probability 0.5. A Frangi vesselness filter on the green channel is
measured side by side (its threshold picked on each fold's training images). Published figures
are on the DRIVE *test* images, whose labels are not in the shared data: context, not a
like-for-like comparison.

``--model retina`` skips training and scores an existing model on all 20 images instead (for
the bundled model those are its training images, so the figures are optimistic).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from functools import cache
from pathlib import Path

import numpy as np
from skimage.filters import frangi

from napari_unet.core import MetricAccumulator, io

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from train_retina_model import (  # noqa: E402
    DEFAULT_DATA,
    DriveImage,
    drive_images,
    score_vessels,
    train_vessel_model,
)

PUBLISHED = [  # (method, F1, AUC, accuracy), DRIVE test images, field of view
    ("second human observer", 0.789, None, 0.947),
    ("Frangi filter (published)", 0.60, 0.86, None),
    ("U-Net (R2U-Net paper)", 0.8142, 0.9755, 0.9531),
    ("retina-unet (orobix)", 0.816, 0.979, None),
    ("IterNet", 0.8205, 0.9816, None),
    ("SA-UNet", 0.8263, 0.9864, None),
]
TARGET_F1, TARGET_AUC = 0.80, 0.975


@cache  # each image is a training image in 3 folds and held out in 1: filter it once
def vesselness(item: DriveImage) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frangi response of the (dark-vessel) green channel, ground truth and field of view."""
    green = io.read_image(item.image)[..., 1].astype(np.float32) / 255
    fov = io.read_labels(item.fov) > 0
    response = frangi(green, sigmas=(1, 2, 3, 4), black_ridges=True)
    response[~fov] = 0
    response /= max(float(response.max()), 1e-12)
    truth = (io.read_labels(item.vessels) > 0).astype(np.int64)
    return response, truth, fov


def best_threshold(items: list[DriveImage]) -> float:
    """The Frangi threshold with the best pooled F1 on ``items``."""
    responses = [vesselness(item) for item in items]
    best, best_f1 = 0.1, -1.0
    for threshold in np.linspace(0.01, 0.5, 50):
        acc = MetricAccumulator(2)
        for response, truth, fov in responses:
            acc.add((response > threshold).astype(np.int64), truth, mask=fov)
        f1 = acc.pooled()["1"]["dice"]
        if f1 > best_f1:
            best, best_f1 = float(threshold), f1
    return best


def folds(items: list[DriveImage], k: int) -> list[list[DriveImage]]:
    """``k`` folds of consecutive images."""
    size = -(-len(items) // k)
    return [items[i : i + size] for i in range(0, len(items), size)]


def row(name: str, metrics: dict[str, float]) -> str:
    keys = ("dice", "auc", "sensitivity", "specificity", "accuracy")
    return f"| {name} | " + " | ".join(f"{metrics[k]:.4f}" for k in keys) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--minutes", type=float, default=10, help="training time per fold")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--only-fold", type=int, help="run just this fold (0-based)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", help="score this model on all images instead of training")
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep each fold's model in this folder, and reuse the ones already there",
    )
    parser.add_argument(
        "--change",
        default="",
        help="train options overriding the recipe's, to try a variant, e.g. '--loss ce'",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    items = drive_images(args.data)
    if not items:
        print(f"DRIVE data not found at {args.data}; nothing to measure")
        return

    results: dict[str, dict[str, float]] = {}
    if args.model:
        results[f"{args.model} (on its training images)"] = score_vessels(
            args.model, items, args.device
        ).pooled()["1"]
    else:
        unet, unet_tta, classic = MetricAccumulator(2), MetricAccumulator(2), MetricAccumulator(2)
        per_image: dict[str, dict[str, float]] = {}
        started = time.perf_counter()
        for index, held_out in enumerate(folds(items, args.folds)):
            if args.only_fold is not None and index != args.only_fold:
                continue
            train = [item for item in items if item not in held_out]
            with tempfile.TemporaryDirectory() as tmp:
                folder = args.keep or Path(tmp)
                folder.mkdir(parents=True, exist_ok=True)
                model = folder / f"drive-fold{index}.pt"
                if not (args.keep and model.exists()):
                    train_vessel_model(
                        train, model, args.minutes, args.seed, args.device, args.change.split()
                    )
                fold = score_vessels(model, held_out, args.device, per_image=per_image)
                fold_tta = score_vessels(model, held_out, args.device, tta=True)
            unet.merge(fold)
            unet_tta.merge(fold_tta)
            threshold = best_threshold(train)
            for item in held_out:
                response, truth, fov = vesselness(item)
                classic.add(
                    (response > threshold).astype(np.int64), truth, scores=response, mask=fov
                )
            f, g = fold.pooled()["1"], fold_tta.pooled()["1"]
            print(
                f"fold {index} ({held_out[0].key}-{held_out[-1].key}): F1 {f['dice']:.4f} "
                f"AUC {f['auc']:.4f}; test-time augmented F1 {g['dice']:.4f} AUC {g['auc']:.4f}"
                f"  [{time.perf_counter() - started:.0f} s]",
                flush=True,
            )
        print("held-out images, AUC: " + ", ".join(
            f"{key} {m['auc']:.3f}" for key, m in sorted(per_image.items())
        ))  # fmt: skip
        variant = f" with {args.change}" if args.change else ""
        recipe = f"U-Net recipe{variant}, {args.minutes:g} min CPU per fold (held out)"
        results[recipe] = unet.pooled()["1"]
        results[recipe.replace("(held out)", "+ test-time augmentation")] = unet_tta.pooled()["1"]
        results["Frangi filter, green channel (held out)"] = classic.pooled()["1"]

    print(
        "\n| DRIVE training 21-40, FOV, pooled | F1 | AUC | sensitivity | specificity | accuracy |"
    )
    print("|---|---|---|---|---|---|")
    for name, metrics in results.items():
        print(row(name, metrics))
    for name, f1, auc, acc in PUBLISHED:
        cells = [f"{v:.4f}" if v is not None else "" for v in (f1, auc)]
        print(f"| {name} (test set) | {cells[0]} | {cells[1]} | | | {acc or ''} |")
    print(f"\ntargets (issue 4): F1 >= {TARGET_F1}, AUC >= {TARGET_AUC}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
