"""From scratch on 3 images within a time budget: the defaults against hand-tuned settings.

    python benchmarks/time_budget.py --minutes 3 --precision float32

What a new user does: `napari-unet train --images 3imgs --labels 3labels --minutes 3` on the
first 3 DSB2018 fluorescence training images (`--gray`, 2 classes), then scores the model on
the 58 fluorescence validation images (pooled foreground Dice of the semantic labels). Each
setting is given as extra `train` options; the empty one is the defaults. Precision is forced
(`NAPARI_UNET_PRECISION`) so the figures hold on CPUs without AMX.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {
    "defaults": [],
    "base 32, patch 256 (the old defaults)": ["--base-features", "32", "--patch-size", "256"],
    "defaults, no validation": ["--val-fraction", "0"],
    "base 8": ["--base-features", "8"],
}


def _fluorescence(split: Path) -> list[str]:
    meta = json.loads((split / "meta.json").read_text())
    return [m["id"] for m in meta if m["kind"] == "fluo"]


def _link(split: Path, ids: list[str], target: Path) -> None:
    for kind in ("images", "labels"):
        (target / kind).mkdir(parents=True)
        for key in ids:
            (target / kind / f"{key}.png").symlink_to(split / kind / f"{key}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/dsb2018")
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--only", nargs="*", help="names of settings to run")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"no DSB2018 data at {args.data}")
    from napari_unet.core import Segmenter
    from napari_unet.core.io import read_image, read_labels
    from napari_unet.core.metrics import MetricAccumulator, mean_foreground_dice

    env = {**os.environ, "NAPARI_UNET_PRECISION": args.precision}
    val_ids = _fluorescence(args.data / "val")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _link(args.data / "train", _fluorescence(args.data / "train")[:3], tmp / "train")
        for name, options in SETTINGS.items():
            if args.only and name not in args.only:
                continue
            out = tmp / f"{len(rows)}.pt"
            command = [sys.executable, "-m", "napari_unet", "train",
                       "--images", str(tmp / "train/images"), "--labels",
                       str(tmp / "train/labels"), "--gray", "--minutes", str(args.minutes),
                       "--out", str(out), *options]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                sys.exit(f"{name} failed:\n{done.stderr[-2000:]}")
            first = done.stderr.splitlines()[0]
            os.environ["NAPARI_UNET_PRECISION"] = args.precision
            segmenter = Segmenter(str(out), device="cpu")
            acc = MetricAccumulator(2)
            for key in val_ids:
                image = read_image(args.data / "val/images" / f"{key}.png")
                truth = (read_labels(args.data / "val/labels" / f"{key}.png") > 0).astype(np.int64)
                labels = segmenter.predict(image, output="semantic").labels
                acc.add((labels > 0).astype(np.int64), truth)
            from napari_unet.core import load_model

            run = load_model(out).history["runs"][-1]
            rows.append((name, run["steps"], mean_foreground_dice(acc.pooled()), first))
    print(f"DSB2018 fluorescence, 3 training images, {args.minutes:g} minutes, "
          f"{args.precision}; Dice on {len(val_ids)} validation images")  # fmt: skip
    print(f"{'setting':36s} {'steps':>6s} {'Dice':>6s}")
    for name, steps, dice, _ in rows:
        print(f"{name:36s} {steps:6d} {dice:6.3f}")
    for name, _, _, first in rows:
        print(f"  {name}: {first}")


if __name__ == "__main__":
    main()
