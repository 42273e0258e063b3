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
