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


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file() and p.stat().st_size < 2**26
    }


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
        done = subprocess.run(
            [sys.executable, "-m", "napari_unet.cli", *argv],
            capture_output=True,
            text=True,
            timeout=300,
        )
        after = _snapshot(folder)
        absent = [p for p in getattr(case, "absent", ()) if (folder / p).exists()]
        checked = True
        if case.expect == "ok" and getattr(case, "check", None) is not None:
            try:
                case.check(folder)
            except AssertionError:
                checked = False
    finally:
        for mount in ("locked", "small-disk"):
            subprocess.run(["umount", str(folder / mount)], capture_output=True, check=False)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("napari-unet:")]
    traceback = "Traceback" in done.stderr
    if case.expect == "ok":
        as_expected = done.returncode == 0 and checked
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
        "garbage": case.expect == "ok" and not checked,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kill-trials", type=int, default=20)
    args = parser.parse_args(argv)
    rows = []
    for case in [*CASES, *HOSTILE]:
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
