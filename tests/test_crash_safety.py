"""kill -9 during training never damages the model file (benchmarks/crash_safety.py runs 20+
trials; here two, one into an empty place and one resuming into an existing file)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # over 10 s on 2 cores: not in the inner loop

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "crash_safety.py"


def test_kill_9_while_training_leaves_a_usable_model_file():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--trials", "2", "--seed", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    assert "2 kill -9 trials: 0 damaged or lost files, 0 failed to continue" in summary
