"""From scratch on 3 images within a time budget: the defaults against hand-tuned settings.

    python benchmarks/time_budget.py --dataset dsb2018 --minutes 3 --precision float32
    python benchmarks/time_budget.py --dataset drive --minutes 3 --precision float32

What a new user does: `napari-unet train --images 3imgs --labels 3labels --minutes 3`, then
segments the rest. DSB2018: the first 3 fluorescence training images (`--gray`, 2 classes),
scored on the 58 fluorescence validation images (pooled foreground Dice of the semantic
labels). DRIVE: images 21-23 (colour, 2 classes), scored on the other 17 inside the field of
view (pooled vessel F1 = Dice). Each setting is given as extra `train` options; the empty one
is the defaults. Precision is forced (`NAPARI_UNET_PRECISION`) so the figures hold on CPUs
without AMX. ``--seeds N`` repeats each setting with train's ``--seed`` 0..N-1 (initialisation,
patches, augmentation) and gives the mean score with the lowest and highest.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared/data"


def _options(text: str) -> list[str]:
    return text.split()


@dataclass
class Dataset:
    """Where the 3 training images come from, how to call `train` on them, how to score."""

    train_options: list[str]
    settings: dict[str, list[str]]
    link: Callable[[Path], None]  # symlinks the 3 images into target/images, target/labels
    score: Callable[[Path], float]  # a model file -> the figure of the table
    what: str


def _dsb2018(data: Path) -> Dataset:
    from napari_unet.core import Segmenter
    from napari_unet.core.data.io import read_image, read_labels
    from napari_unet.core.metrics import MetricAccumulator, mean_foreground_dice

    def fluorescence(split: Path) -> list[str]:
        meta = json.loads((split / "meta.json").read_text())
        return [m["id"] for m in meta if m["kind"] == "fluo"]

    def link(target: Path) -> None:
        split = data / "train"
        for kind in ("images", "labels"):
            (target / kind).mkdir(parents=True)
            for key in fluorescence(split)[:3]:
                (target / kind / f"{key}.png").symlink_to(split / kind / f"{key}.png")

    val_ids = fluorescence(data / "val")

    def score(model: Path) -> float:
        segmenter = Segmenter(str(model), device="cpu")
        acc = MetricAccumulator(2)
        for key in val_ids:
            image = read_image(data / "val/images" / f"{key}.png")
            truth = (read_labels(data / "val/labels" / f"{key}.png") > 0).astype(np.int64)
            acc.add(
                (segmenter.predict(image, output="semantic").labels > 0).astype(np.int64), truth
            )
        return mean_foreground_dice(acc.pooled())

    return Dataset(
        ["--gray"],
        {
            "defaults (planned)": [],
            "fixed defaults (--no-plan)": ["--no-plan"],
            "base 8, patch 128": _options("--base-features 8 --patch-size 128"),
            "base 16, patch 128, cosine": _options(
                "--base-features 16 --patch-size 128 --lr-schedule cosine"
            ),
            "valid padding (the paper's), planned": _options("--padding valid"),
            "MobileNetV2 encoder, planned": _options("--encoder mobilenet_v2"),
            "zoom augmentation 1.5, planned": _options("--zoom 1.5"),
        },
        link,
        score,
        f"DSB2018 fluorescence, Dice on {len(val_ids)} validation images",
    )


def _drive(data: Path) -> Dataset:
    sys.path.insert(0, str(ROOT / "scripts"))
    from train_retina_model import RECIPE, drive_images, link_subset, score_vessels

    items = drive_images(data)
    train, held_out = items[:3], items[3:]

    def score(model: Path) -> float:
        return score_vessels(model, held_out, device="cpu").pooled()["1"]["dice"]

    return Dataset(
        ["--pattern", r"^(\d+)_", "--classes", "2"],
        {
            "defaults (planned)": [],
            "fixed defaults (--no-plan)": ["--no-plan"],
            "base 16, patch 256, no validation": _options(
                "--base-features 16 --patch-size 256 --val-fraction 0"
            ),
            "the bundled model's recipe (hand-tuned)": RECIPE,
            "valid padding (the paper's), planned": _options("--padding valid"),
            "MobileNetV2 encoder, planned": _options("--encoder mobilenet_v2"),
            "zoom augmentation 1.5, planned": _options("--zoom 1.5"),
        },
        lambda target: link_subset(train, target) and None,
        score,
        f"DRIVE images {train[0].key}-{train[-1].key}, vessel F1 in the field of view on the "
        f"other {len(held_out)}",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("dsb2018", "drive"), default="dsb2018")
    parser.add_argument("--data", type=Path, help="the dataset's folder (default: ../shared/data)")
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--only", nargs="*", help="names of settings to run")
    parser.add_argument(
        "--seeds", type=int, default=1, help="repeats of each setting (train's --seed 0, 1, ...)"
    )
    args = parser.parse_args()
    data = args.data or SHARED / ("dsb2018" if args.dataset == "dsb2018" else "drive/training")
    if not data.is_dir():
        sys.exit(f"no {args.dataset} data at {data}")
    os.environ["NAPARI_UNET_PRECISION"] = args.precision
    dataset = (_dsb2018 if args.dataset == "dsb2018" else _drive)(data)
    from napari_unet.core import load_model
    from napari_unet.core.train.defaults import training_defaults

    defaults = training_defaults(2, "cpu")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dataset.link(tmp / "train")
        for name, options in dataset.settings.items():
            if args.only and name not in args.only:
                continue
            for seed in range(args.seeds):
                out = tmp / f"{len(rows)}.pt"
                command = [sys.executable, "-m", "napari_unet", "train",
                           "--images", str(tmp / "train/images"), "--labels",
                           str(tmp / "train/labels"), *dataset.train_options, "--minutes",
                           str(args.minutes), "--seed", str(seed), "--out", str(out),
                           *options]  # fmt: skip
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    sys.exit(f"{name} failed:\n{done.stderr[-2000:]}")
                said = [line for line in done.stderr.splitlines() if line.strip()][:3]
                model = load_model(out)
                run = model.history["runs"][-1]
                # A run with the defaults stores None for them: say what they were.
                patch = run["config"]["patch_size"] or defaults.patch_size
                batch = run["config"]["batch_size"] or defaults.batch_size
                trained = (
                    f"{model.config.encoder} d{model.config.depth} "
                    f"b{model.config.base_features} p{patch}x{batch}"
                )
                rows.append((name, seed, run["steps"], dataset.score(out), said, trained))
                print(
                    f"{name} seed {seed}: {run['steps']} steps, {rows[-1][3]:.3f}",
                    file=sys.stderr,
                    flush=True,
                )
    print(f"{dataset.what}; 3 training images, {args.minutes:g} minutes, {args.precision}")
    print(f"{'setting':42s} {'trained':28s} {'steps':>6s} {'score':>6s} {'min':>6s} {'max':>6s}")
    for name in dict.fromkeys(row[0] for row in rows):
        same = [row for row in rows if row[0] == name]
        scores = [row[3] for row in same]
        steps = round(float(np.mean([row[2] for row in same])))
        print(
            f"{name:42s} {same[0][5]:28s} {steps:6d} {np.mean(scores):6.3f} "
            f"{min(scores):6.3f} {max(scores):6.3f}"
        )
    for name, seed, _, _, said, _ in rows:
        print(f"  {name} (seed {seed}): " + " | ".join(said))


if __name__ == "__main__":
    main()
