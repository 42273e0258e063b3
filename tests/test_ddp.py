"""Training with torchrun and DistributedDataParallel: 2 CPU processes (gloo) on tiny data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import tifffile
from tests.conftest import disks_image

from napari_unet.core import load_model

pytestmark = pytest.mark.slow  # over 10 s on 2 cores: not in the inner loop

OUTPUT = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
TINY = ["--depth", "2", "--base-features", "4", "--batch-size", "2", "--patch-size", "48"]


@pytest.fixture
def dataset(tmp_path):
    for split, seeds in (("train", (0, 1, 2)), ("val", (3,))):
        for kind in ("images", "labels"):
            (tmp_path / split / kind).mkdir(parents=True)
        for seed in seeds:
            image, labels = disks_image(seed=seed)
            tifffile.imwrite(tmp_path / split / "images" / f"img{seed}.tif", image)
            tifffile.imwrite(tmp_path / split / "labels" / f"img{seed}.tif", labels)
    return tmp_path


def _torchrun(dataset, *args: str, processes: int = 2) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={processes}", "-m", "napari_unet", "train",
        "--images", str(dataset / "train/images"), "--labels", str(dataset / "train/labels"),
        "--device", "cpu", *args,
    ]  # fmt: skip


def _ours(stderr: str) -> list[str]:
    """Our lines, without torchrun's own warnings and tracebacks."""
    return [
        line
        for line in stderr.splitlines()
        if line.strip() and not line.startswith(("W1", "E1", " ", "*", "Setting OMP_NUM_THREADS"))
    ]


def test_two_processes_learn_write_once_and_resume(dataset):
    out = dataset / "ddp.pt"
    validation = ["--val-images", str(dataset / "val/images")]
    validation += ["--val-labels", str(dataset / "val/labels")]
    args = [*validation, "--out", str(out), "--steps-per-epoch", "5", "--lr", "0.01", *TINY]
    done = subprocess.run(_torchrun(dataset, *args, "--epochs", "6"), **OUTPUT, timeout=300)
    lines = _ours(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:]
    assert lines[0].startswith("world size 2 (gloo)")
    # Only rank 0 reports and writes: one line per epoch, one model file, no leftovers.
    assert sum(line.startswith("epoch 1:") for line in lines) == 1
    assert sum(line.startswith("epoch ") for line in lines) == 6
    assert sorted(p.name for p in dataset.iterdir()) == ["ddp.pt", "train", "val"]
    model = load_model(out)
    run = model.history["runs"][-1]
    assert run["processes"] == 2 and model.training_state["step"] == 30
    assert run["best_score"] > 0.7  # validation Dice: the two processes learned together

    resumed = subprocess.run(
        _torchrun(dataset, *validation, "--resume", str(out), "--out", str(out), "--epochs", "7"),
        **OUTPUT,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert _ours(resumed.stdout)[-2].startswith("epoch 7:")
    again = load_model(out)
    assert again.training_state["step"] == 35 and len(again.history["runs"]) == 1


def test_a_killed_process_leaves_a_good_model_file_to_resume(dataset):
    psutil = pytest.importorskip("psutil")
    out = dataset / "ddp.pt"
    run = subprocess.Popen(
        _torchrun(dataset, "--out", str(out), "--epochs", "1000", "--steps-per-epoch", "3", *TINY),
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not out.exists() and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.2)
        assert out.exists(), "no model file after 2 minutes"
        ranks = {}
        for child in psutil.Process(run.pid).children(recursive=True):
            try:
                ranks[child.environ().get("RANK")] = child
            except psutil.Error:
                continue
        ranks["1"].send_signal(signal.SIGKILL)
        run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode != 0
    model = load_model(out)  # intact: every write was atomic
    step = model.training_state["step"]
    assert step >= 3
    # A single process continues where the two left off.
    from napari_unet.cli import main

    assert main(["train", "--images", str(dataset / "train/images"), "--labels",
                 str(dataset / "train/labels"), "--resume", str(out), "--out", str(out),
                 "--epochs", str(step // 3 + 1)]) == 0  # fmt: skip
    assert load_model(out).training_state["step"] == step + 3 - step % 3
