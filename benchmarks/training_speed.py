"""Training throughput: patches per second and the share of time spent preparing batches.

    python benchmarks/training_speed.py                 # 2D base 16 and 32, 3D; CPU or GPU
    python benchmarks/training_speed.py --nets base16 --steps 20

Each row trains in a fresh process through :class:`napari_unet.core.Trainer`, exactly as the
widget and the CLI do (patch sampling with foreground over-sampling, augmentation, mixed
precision where the device has it), on the bundled nuclei sample (2D) or a stack of it (3D).
The first ``--warmup`` steps are not timed. "data" is the time spent sampling, augmenting and
(on a GPU) pinning batches; on a CPU it adds to the step time, on a GPU the next batch is
prepared while the device still computes the current step, so it is hidden unless it exceeds
the step. Validation is off, so the figures are pure training steps.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
NETS = {
    # name: (UNetConfig keywords, batch size, patch edge)
    "base16": ({"depth": 4, "base_features": 16, "out_channels": 3}, 8, 256),
    "base32": ({"depth": 4, "base_features": 32, "out_channels": 3}, 8, 256),
    "3d": ({"spatial_dims": 3, "depth": 3, "base_features": 16, "out_channels": 2}, 2, 64),
}


def child(net: str, precision: str, elastic: bool, steps: int, warmup: int, device: str) -> dict:
    from napari_unet.core import (
        Preprocessing,
        TrainConfig,
        Trainer,
        UNetConfig,
        io,
        prepare_pair,
    )

    keywords, batch, patch = NETS[net]
    config = UNetConfig(**keywords)
    samples = ROOT / "src/napari_unet/samples"
    image = io.read_image(samples / "nuclei.png")
    labels = io.read_labels(samples / "nuclei_labels.png")
    task = {"kind": "instances", "boundary_width": 2} if config.out_channels == 3 else None
    if config.spatial_dims == 3:
        image = np.stack([np.roll(image, 3 * z, axis=1) for z in range(48)])
        labels = np.stack([np.roll(labels, 3 * z, axis=1) for z in range(48)])
    pair = prepare_pair(
        image,
        labels,
        spatial_dims=config.spatial_dims,
        preprocessing=Preprocessing(),
        num_classes=max(2, config.out_channels),
        task=task,
    )
    train = TrainConfig(
        epochs=1,
        steps_per_epoch=warmup + steps,
        batch_size=batch,
        patch_size=patch,
        val_fraction=0,
        elastic=elastic,
        precision=precision,
        device=device,
    )
    trainer = Trainer([pair], config, train, val_pairs=[], task=task)
    progress = list(trainer.train())
    first, last = progress[warmup - 1], progress[-1]
    seconds = last.seconds - first.seconds
    data = last.data_seconds - first.data_seconds
    return {
        "net": net,
        "precision": precision,
        "elastic": elastic,
        "device": str(trainer.device),
        "patch": f"{batch} x {patch}^{config.spatial_dims}",
        "s_per_step": seconds / steps,
        "patches_s": steps * batch / seconds,
        "data_share": data / seconds,
        "data_ms": 1000 * data / steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="base16,base32,3d", help=f"from {', '.join(NETS)}")
    parser.add_argument("--precisions", default="float32,auto")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(**json.loads(args.child))))
        return
    rows = []
    for net in args.nets.split(","):
        for precision in args.precisions.split(","):
            for elastic in (False, True) if net != "3d" else (False,):
                spec = {
                    "net": net,
                    "precision": precision,
                    "elastic": elastic,
                    "steps": args.steps,
                    "warmup": args.warmup,
                    "device": args.device,
                }
                print(f"running {spec} ...", file=sys.stderr, flush=True)
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", json.dumps(spec)],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if proc.returncode:
                    raise SystemExit(proc.stderr[-3000:])
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"\n{torch.get_num_threads()} CPU threads, torch {torch.__version__}\n")
    print(
        "| net | batch | precision | elastic | device | s/step | patches/s | data ms/step | data share |"
    )
    print("|---|---|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['net']} | {r['patch']} | {r['precision']} | {'yes' if r['elastic'] else 'no'} "
            f"| {r['device']} | {r['s_per_step']:.3f} | {r['patches_s']:.1f} | {r['data_ms']:.0f} "
            f"| {r['data_share']:.1%} |"
        )


if __name__ == "__main__":
    main()
