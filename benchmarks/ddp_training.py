"""Training with torchrun + DistributedDataParallel against one process, same total batch.

    python benchmarks/ddp_training.py --images 30 --epochs 4 --steps 20

DSB2018 training images (the first N; `--gray`, 2 classes), validation on 10 of its
validation images, base 16, depth 3, 128^2 patches, float32 on the CPU. Three runs with the
same total batch (8 patches a step) and the same total threads (2):

- one process, batch 8, 2 threads (`napari-unet train`);
- torchrun, 1 process, batch 8, 2 threads (what the launcher costs);
- torchrun, 2 processes (gloo), batch 4 each, 1 thread each.

Printed: steps per second (training time from the model file, validation excluded as far as
the log allows), the training loss and validation Dice per epoch side by side.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _subset(source: Path, target: Path, count: int) -> None:
    for kind in ("images", "labels"):
        (target / kind).mkdir(parents=True)
        for path in sorted((source / kind).iterdir())[:count]:
            (target / kind / path.name).symlink_to(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/dsb2018")
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20, help="steps per epoch")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"no DSB2018 data at {args.data}")
    from napari_unet.core import load_model

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    runs = {
        "one process": ([sys.executable, "-m", "napari_unet"], 8, 2),
        "torchrun x1": ([*torchrun, "--nproc_per_node=1", "-m", "napari_unet"], 8, 2),
        "torchrun x2": ([*torchrun, "--nproc_per_node=2", "-m", "napari_unet"], 4, 1),
    }
    logs = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _subset(args.data / "train", tmp / "train", args.images)
        _subset(args.data / "val", tmp / "val", 10)
        for name, (launcher, batch, threads) in runs.items():
            out = tmp / f"{name.replace(' ', '_')}.pt"
            command = [*launcher, "train", "--images", str(tmp / "train/images"),
                       "--labels", str(tmp / "train/labels"), "--val-images",
                       str(tmp / "val/images"), "--val-labels", str(tmp / "val/labels"),
                       "--gray", "--out", str(out), "--epochs", str(args.epochs),
                       "--steps-per-epoch", str(args.steps), "--batch-size", str(batch),
                       "--patch-size", "128", "--depth", "3", "--base-features", "16",
                       "--device", "cpu"]  # fmt: skip
            env = {**os.environ, "OMP_NUM_THREADS": str(threads),
                   "NAPARI_UNET_PRECISION": "float32"}  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                sys.exit(f"{name} failed:\n{done.stderr[-2000:]}")
            model = load_model(out)
            logs[name] = model.history["epochs_log"]
    print(f"DSB2018, {args.images} training images, {args.epochs} x {args.steps} steps, "
          f"8 patches of 128^2 a step in all, 2 threads in all, float32")  # fmt: skip
    print(f"{'run':14s} {'steps/s':>8s} " + " ".join(
        f"{'ep' + str(e + 1) + ' loss/Dice':>16s}" for e in range(args.epochs)))  # fmt: skip
    for name, log in logs.items():
        # Each epoch's seconds include rank 0's validation; per-step time from the differences.
        seconds = log[-1]["seconds"]
        steps = log[-1]["step"]
        cells = " ".join(f"{e['train_loss']:7.4f}/{e['val_score']:.3f}".rjust(16) for e in log)
        print(f"{name:14s} {steps / seconds:8.2f} {cells}")


if __name__ == "__main__":
    main()
