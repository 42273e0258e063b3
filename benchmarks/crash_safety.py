"""kill -9 of `napari-unet train` at random moments: is the model file always usable?

Each trial starts a real training process that saves its model after every step (so a kill
often lands inside a save), kills it with SIGKILL after a random delay, then checks the model
file: absent (only allowed if there was none before), the previous good file, or a valid new
one, never a damaged one; and that `--resume` then continues from it. Half the trials train a
new model into an empty place, half resume into an existing good file.

    python benchmarks/crash_safety.py --trials 20

Exit status 0 when every trial survived, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

TINY = ["--depth", "2", "--base-features", "4", "--batch-size", "2", "--patch-size", "48"]


def make_dataset(root: Path) -> tuple[Path, Path]:
    """Three 96 x 96 images of bright disks and their labels."""
    from skimage.draw import disk

    images, labels = root / "images", root / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    for seed in range(3):
        rng = np.random.default_rng(seed)
        image = rng.normal(200, 20, (96, 96))
        mask = np.zeros((96, 96), np.uint8)
        for _ in range(6):
            rr, cc = disk(tuple(rng.integers(8, 88, 2)), 6, shape=mask.shape)
            image[rr, cc] += 300
            mask[rr, cc] = 1
        tifffile.imwrite(images / f"{seed}.tif", image.astype(np.uint16))
        tifffile.imwrite(labels / f"{seed}.tif", mask)
    return images, labels


def train_command(images: Path, labels: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "napari_unet.cli", "train", "--images", str(images),
        "--labels", str(labels), "--out", str(out), "--val-fraction", "0",
        "--steps-per-epoch", "1", *TINY, *extra,
    ]  # fmt: skip


def inspect(path: Path) -> tuple[str, int | None]:
    """("absent" | "valid" | "damaged: why", saved step)."""
    from napari_unet.core import ModelFileError, load_model

    if not path.exists():
        return "absent", None
    try:
        model = load_model(path)
    except ModelFileError as err:
        return f"damaged: {err}", None
    import torch

    weights = [
        *model.weights.values(),
        *(model.training_state or {}).get("last_weights", {}).values(),
    ]
    if not all(torch.isfinite(w).all() for w in weights if w.is_floating_point()):
        return "damaged: non-finite weights", None
    return "valid", int((model.training_state or {}).get("step", 0))


def run_trial(
    rng: random.Random, images: Path, labels: Path, work: Path, baseline: bytes, index: int
) -> dict:
    out = work / f"trial{index}.pt"
    resume = index % 2 == 1
    if resume:
        out.write_bytes(baseline)  # a previous good model, 2 steps in
        command = train_command(images, labels, out, "--resume", str(out), "--epochs", "100000")
    else:
        command = train_command(images, labels, out, "--epochs", "100000")
    before = out.read_bytes() if out.exists() else None
    delay = rng.uniform(0.5, 6.0)
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env()
    )
    time.sleep(delay)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    state, step = inspect(out)
    if state == "absent" and before is not None:
        state = "damaged: the previous file vanished"
    kind = state
    if state == "valid":
        kind = "previous" if before is not None and out.read_bytes() == before else "new"
    orphans = [p.name for p in work.glob(f".{out.name}.*")]
    # Carry on as a user would: resume from what is there, or start again.
    again = (
        train_command(images, labels, out, "--resume", str(out), "--epochs", str(step + 2))
        if state == "valid"
        else train_command(images, labels, out, "--epochs", "1", "--overwrite")
    )
    finished = subprocess.run(again, capture_output=True, text=True, env=_env())
    after_state, after_step = inspect(out)
    resumed_ok = (
        finished.returncode == 0
        and after_state == "valid"
        and (after_step or 0) >= (step or 0) + (1 if state == "valid" else 0)
    )
    return {
        "trial": index,
        "start": "resume" if resume else "new",
        "kill_s": delay,
        "file": kind,
        "step": step,
        "orphans": len(orphans),
        "orphans_left": len(list(work.glob(f".{out.name}.*"))),
        "continued": resumed_ok,
        "error": finished.stderr.strip().splitlines()[-1:] if not resumed_ok else [],
    }


def _env() -> dict:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # several short processes on a 2-core machine
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images, labels = make_dataset(root / "data")
        work = root / "models"
        work.mkdir()
        baseline = work / "baseline.pt"
        subprocess.run(
            train_command(images, labels, baseline, "--epochs", "2"), check=True,
            capture_output=True, env=_env(),
        )  # fmt: skip
        rows = [
            run_trial(rng, images, labels, work, baseline.read_bytes(), i)
            for i in range(args.trials)
        ]
    print(f"{'trial':>5} {'start':>6} {'kill after':>10} {'file after kill':>16} {'step':>5} "
          f"{'temp files':>10} {'left after':>10} {'resumed':>8}")  # fmt: skip
    for r in rows:
        print(
            f"{r['trial']:>5} {r['start']:>6} {r['kill_s']:>9.2f}s {r['file']:>16} "
            f"{'-' if r['step'] is None else r['step']:>5} {r['orphans']:>10} "
            f"{r['orphans_left']:>10} {'yes' if r['continued'] else 'NO':>8}"
        )
        for line in r["error"]:
            print(f"      {line}")
    damaged = sum(r["file"].startswith("damaged") for r in rows)
    failed = sum(not r["continued"] for r in rows)
    counts = {k: sum(r["file"] == k for r in rows) for k in ("absent", "previous", "new")}
    print(
        f"{len(rows)} kill -9 trials: {damaged} damaged or lost files, {failed} failed to "
        f"continue; after the kill the file was absent {counts['absent']} (no file before), "
        f"the previous one {counts['previous']}, a valid new one {counts['new']} times; "
        f"{sum(r['orphans'] for r in rows)} temporary files left by kills, "
        f"{sum(r['orphans_left'] for r in rows)} still there after the next run"
    )
    return 0 if damaged == 0 and failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
