"""Every bad input gives one clear line and exit status 2 (or works), never a traceback, and
never damages a file that was there before (cases in tests/bad_inputs.py)."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest
from tests.bad_inputs import CASES, Case

from napari_unet.cli import main


def snapshot(folder: Path) -> dict[str, str]:
    """Contents of every file below ``folder``, by path (files the user had)."""
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file() and p.stat().st_size < 2**26
    }


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gives_one_clear_line_and_loses_nothing(case: Case, tmp_path, capsys):
    argv = case.build(tmp_path)
    before = snapshot(tmp_path)
    capsys.readouterr()
    try:
        status = main(argv)
    finally:
        subprocess.run(["umount", str(tmp_path / "locked")], capture_output=True, check=False)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if case.expect == "ok":
        assert status == 0, err
    else:
        lines = [line for line in err.strip().splitlines() if line.startswith("napari-unet:")]
        assert status == 2 and len(lines) == 1, err
        assert re.search(case.expect, lines[0]), lines[0]
        assert lines[0].startswith("napari-unet: error: ")
    after = snapshot(tmp_path)
    changed = [path for path, digest in before.items() if after.get(path) != digest]
    assert not changed, f"files lost or changed: {changed}"


# ---------------------------------------------------------------- issue 24's hostile sweep

from tests.hostile_inputs import CASES as HOSTILE  # noqa: E402
from tests.hostile_inputs import Case as HostileCase  # noqa: E402
from tests.sweep_inputs import CASES as SWEEP  # noqa: E402


def changed_outside(before: dict[str, str], after: dict[str, str], root: Path, writes) -> list:
    """Files that were there before and changed or vanished, less those the command was asked
    to write (``writes``: glob patterns relative to ``root``)."""
    import fnmatch

    def allowed(path: str) -> bool:
        relative = str(Path(path).relative_to(root))
        return any(fnmatch.fnmatch(relative, pattern) for pattern in writes)

    return [p for p, digest in before.items() if after.get(p) != digest and not allowed(p)]


# Cases that start a second process of their own: the full run has them, the inner loop not.
_SLOW_CASES = {"two predicts into one folder at once", "two trainings onto one model file at once"}


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, marks=pytest.mark.slow) if c.name in _SLOW_CASES else c
        for c in HOSTILE + SWEEP
    ],
    ids=[c.name for c in HOSTILE] + [f"sweep: {c.name}" for c in SWEEP],
)
def test_hostile_input_is_refused_in_one_line_and_touches_nothing_else(
    case: HostileCase, tmp_path, capsys
):
    argv = case.build(tmp_path)
    before = snapshot(tmp_path)
    capsys.readouterr()
    try:
        status = main(argv)
        err = capsys.readouterr().err
        after = snapshot(tmp_path)
        missing_ok = [p for p in case.absent if (tmp_path / p).exists()]
    finally:
        for mount in ("locked", "small-disk"):
            subprocess.run(["umount", str(tmp_path / mount)], capture_output=True, check=False)
    assert "Traceback" not in err and "<tifffile" not in err, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    if case.expect == "ok":
        assert status == 0, err
        if case.check is not None:
            case.check(tmp_path)
    else:
        assert status == 2, err
        # One line, and the last: no wrapped message, no log after it.
        assert lines and lines[-1].startswith("napari-unet: error: "), err
        assert sum(line.startswith("napari-unet:") for line in lines) == 1, err
        assert re.search(case.expect, lines[-1]), lines[-1]
    assert not missing_ok, f"should not exist: {missing_ok}"
    assert not changed_outside(before, after, tmp_path, case.writes)


def _cli(*args: str, **popen) -> subprocess.Popen:
    import sys

    return subprocess.Popen(
        [sys.executable, "-m", "napari_unet.cli", *args], stderr=subprocess.PIPE, text=True,
        **popen,
    )  # fmt: skip


@pytest.mark.slow
def test_sigterm_during_training_saves_and_exits_143(tmp_path):
    """SLURM and Kubernetes stop jobs with SIGTERM: handled as Ctrl-C (model saved, resumable)."""
    import signal
    import time

    from tests.bad_inputs import _train

    argv = _train(tmp_path)
    argv[argv.index("--epochs") + 1] = "100000"
    out = tmp_path / "new.pt"
    process = _cli(*argv, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not out.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert out.exists(), "training never saved an epoch"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert "terminated (SIGTERM)" in err and f"--resume {out}" in err, err
    assert "Traceback" not in err
    from napari_unet.core import load_model

    assert load_model(out).training_state is not None


@pytest.mark.slow  # a real process of its own
def test_a_closed_pipe_ends_quietly():
    """`napari-unet info | head -1`: the reader went away; no error, as Unix tools do."""
    process = _cli("info", "nuclei", stdout=subprocess.PIPE)
    process.stdout.close()  # before the process has written anything
    _, err = process.communicate(timeout=120)
    assert process.returncode == 141, err
    assert err.strip() == "", err


@pytest.mark.slow  # a real process of its own
def test_a_full_standard_output_is_one_line():
    with open("/dev/full", "w") as full:
        process = _cli("info", "nuclei", stdout=full)
        _, err = process.communicate(timeout=120)
    assert process.returncode == 2, err
    assert err.strip() == "napari-unet: error: cannot write to standard output: the disk is full"


@pytest.mark.slow  # a real process of its own
def test_the_decoders_log_stays_out_of_the_error(tmp_path):
    """tifffile logs what it cannot read; in a real process (pytest's own logging would catch
    it here) the user sees only the one error line."""
    from tests.hostile_inputs import _bad_tiff_offset

    argv = _bad_tiff_offset(tmp_path)
    process = _cli(*argv, stdout=subprocess.DEVNULL)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2, err
    assert "tifffile" not in err and "invalid offset" not in err, err
    assert err.strip().splitlines()[-1].startswith("napari-unet: error: cannot read"), err
