"""Reliability totals: bad inputs through the real `napari-unet` process, and kill -9 trials.

Every case of tests/bad_inputs.py and tests/hostile_inputs.py runs as its own
`python -m napari_unet.cli` process (real exit status, real stderr). A case passes when it
exits 0 where it should work (and its outputs pass the case's check), or exits 2 with exactly
one `napari-unet: error:` line, the last, matching what it should say; in every case no
traceback may be printed, no output may be non-finite, and no file that was there before may
change unless the case asked the command to write it. Then benchmarks/crash_safety.py runs its
kill -9 trials.

    python benchmarks/reliability.py               # all inputs + 20 kill -9 trials
    python benchmarks/reliability.py --kill-trials 0

Exit status 0 when everything held.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.bad_inputs import CASES  # noqa: E402
from tests.hostile_inputs import CASES as HOSTILE  # noqa: E402
from tests.sweep_inputs import CASES as SWEEP  # noqa: E402
from tests.sweep_inputs import SIGNAL_CASES  # noqa: E402


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file() and p.stat().st_size < 2**26
    }


_SIGNALLED = {
    "terminated": (143, "napari-unet: terminated (SIGTERM)"),
    "interrupted": (130, "napari-unet: interrupted"),
}


def _run(argv: list[str], folder: Path) -> subprocess.CompletedProcess:
    """The command as its own process; a case that wrote signal.txt ("SIG SECONDS") has that
    signal sent to it after that many seconds."""
    import time

    process = subprocess.Popen(
        [sys.executable, "-m", "napari_unet.cli", *argv],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    plan = folder / "signal.txt"
    first = ""
    if plan.is_file():
        # Once it is at work (its first line printed: torch imported, the model loaded), as
        # SLURM stops a running job; a signal during the imports kills it before any write.
        sig, after = plan.read_text().split()
        first = process.stderr.readline()
        time.sleep(float(after))
        process.send_signal(int(sig))
    try:
        out, err = process.communicate(timeout=300)
        err = first + err
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        err += "\n(hung: killed after 300 s)"
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _outputs_finite(folder: Path) -> bool:
    """Every probabilities file a command wrote holds finite values only."""
    import numpy as np
    import tifffile

    for path in folder.rglob("*_probabilities.tif"):
        if path.is_file() and not np.isfinite(tifffile.imread(path)).all():
            return False
    return True


def run_case(case, folder: Path) -> dict:
    import fnmatch
    from unittest import SkipTest

    try:
        argv = case.build(folder)
    except SkipTest as why:
        return {"case": case.name, "status": "-", "message": f"skipped: {why}",
                "traceback": False, "changed": [], "ok": True, "skipped": True}  # fmt: skip
    before = _snapshot(folder)
    try:
        done = _run(argv, folder)
        after = _snapshot(folder)
        absent = [p for p in getattr(case, "absent", ()) if (folder / p).exists()]
        checked = True
        if case.expect == "ok" and getattr(case, "check", None) is not None:
            try:
                case.check(folder)
            except AssertionError:
                checked = False
        if done.returncode == 0 and not _outputs_finite(folder):
            checked = False  # exit 0 with NaN or infinity in what it wrote: garbage
    finally:
        for mount in ("locked", "small-disk"):
            subprocess.run(["umount", str(folder / mount)], capture_output=True, check=False)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("napari-unet:")]
    traceback = "Traceback" in done.stderr
    if case.expect == "ok":
        as_expected = done.returncode == 0 and checked
    elif case.expect in _SIGNALLED:  # stopped by a signal: its status and its one last line
        status, line = _SIGNALLED[case.expect]
        as_expected = done.returncode == status and bool(lines) and lines[-1] == line and checked
    else:
        as_expected = (
            done.returncode == 2
            and len(errors) == 1
            and lines[-1] == errors[0]
            and re.search(case.expect, errors[0]) is not None
        )
    writes = getattr(case, "writes", ())

    def asked(path: str) -> bool:
        relative = str(Path(path).relative_to(folder))
        return any(fnmatch.fnmatch(relative, pattern) for pattern in writes)

    return {
        "case": case.name,
        "status": done.returncode,
        "message": errors[0].removeprefix("napari-unet: error: ") if errors else "",
        "traceback": traceback,
        "changed": [p for p, d in before.items() if after.get(p) != d and not asked(p)] + absent,
        "ok": as_expected and not traceback,
        "garbage": done.returncode == 0 and not checked,
        "set": "earlier" if case in CASES else "issue 24" if case in HOSTILE else "own sweep",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kill-trials", type=int, default=20)
    args = parser.parse_args(argv)
    rows = []
    for case in [*CASES, *HOSTILE, *SWEEP, *SIGNAL_CASES]:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(run_case(case, Path(tmp)))
    print(f"{'input':<42} {'exit':>4}  {'held':>4}  message")
    for r in rows:
        message = r["message"] if len(r["message"]) < 90 else r["message"][:87] + "..."
        print(f"{r['case']:<42} {r['status']:>4}  {'yes' if r['ok'] else 'NO':>4}  {message}")
    tracebacks = sum(r["traceback"] for r in rows)
    changed = sum(len(r["changed"]) for r in rows)
    failed = sum(not r["ok"] for r in rows)
    internal = sum(r["status"] == 1 for r in rows)
    garbage = sum(bool(r.get("garbage")) for r in rows)
    skipped = sum(bool(r.get("skipped")) for r in rows)
    for name in ("earlier", "issue 24", "own sweep"):
        part = [r for r in rows if r["set"] == name]
        print(
            f"{name}: {len(part)} tried, {sum(not r['ok'] for r in part)} not as expected, "
            f"{sum(r['traceback'] for r in part)} tracebacks, "
            f"{sum(r['status'] == 1 for r in part)} internal errors, "
            f"{sum(len(r['changed']) for r in part)} files changed outside what was asked, "
            f"{sum(bool(r.get('garbage')) for r in part)} wrong outputs with exit 0"
        )
    print(
        f"bad inputs: {len(rows)} tried ({skipped} skipped), {failed} not as expected, "
        f"{tracebacks} tracebacks, {internal} internal errors, {changed} files lost or changed "
        f"outside what was asked, {garbage} wrong outputs with exit 0"
    )
    status = 0 if failed == tracebacks == changed == internal == garbage == 0 else 1
    if args.kill_trials:
        crash = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "crash_safety.py"),
             "--trials", str(args.kill_trials)],
            capture_output=True, text=True,
        )  # fmt: skip
        print(crash.stdout.strip().splitlines()[-1] if crash.stdout.strip() else crash.stderr)
        status = status or crash.returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
