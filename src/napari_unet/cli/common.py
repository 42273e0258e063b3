"""What every command shares: exit statuses, one-line errors, the parser that
reports in one line, the numbers' ranges, SIGTERM, and number formatting."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

EXIT_USER_ERROR = 2
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a Unix tool killed by a closed pipe
EXIT_TERMINATED = 143  # 128 + SIGTERM


def fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def check_model_out(out: Path, flag: str) -> None:
    """A model file can be written at ``out``: checked before any training, so that a typo or
    a read-only folder is not found after the first epoch."""
    from ..core import UserInputError

    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise UserInputError(f"{flag} {out} is a folder; give a model file name such as model.pt")
    if not folder.is_dir():
        raise UserInputError(f"{flag} {out}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UserInputError(
            f"{flag} {out}: cannot write in {folder} (read-only, or no permission)"
        )


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one ``napari-unet: error:`` line and exit status 2, like
    every other refusal (argparse prints its usage block first)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(
            EXIT_USER_ERROR,
            f"napari-unet: error: {message} (see `{self.prog} --help`)\n",
        )


# Options whose core setting (core/limits.py) has another name.
_LIMIT_NAMES = {"minutes": "max_minutes", "lr": "learning_rate"}
_LIMIT_NAMES_BY_COMMAND = {
    ("predict", "batch_size"): "predict_batch_size",
    ("evaluate", "classes"): "evaluate_classes",
}


def check_numbers(args: argparse.Namespace) -> None:
    """Every number given on the command line is finite and in its range (core/limits.py),
    checked before any work starts."""
    from ..core.limits import LIMITS, check

    for dest, value in vars(args).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        name = _LIMIT_NAMES_BY_COMMAND.get((args.command, dest)) or _LIMIT_NAMES.get(dest, dest)
        if name in LIMITS:
            check(name, value, "--" + dest.replace("_", "-"))


class Terminated(KeyboardInterrupt):
    """SIGTERM (what SLURM, Kubernetes and ``kill`` send): stopped as Ctrl-C stops, with
    training saved, then exit status 143."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def _os_error_line(err: OSError) -> str:
    """One line for an error of the file system, naming the file and what to do."""
    from ..core.data.io import describe_os_error

    where = f" {err.filename}" if err.filename else ""
    return f"cannot use{where}: {describe_os_error(err)}"


def _stdout_failed(err: OSError) -> bool:
    """A full disk met while flushing standard output (no file of ours named)."""
    import errno

    return (
        err.filename is None
        and not sys.stdout.isatty()
        and err.errno in (errno.ENOSPC, errno.EDQUOT)
    )


def _internal_error(err: BaseException) -> int:
    print(
        f"napari-unet: internal error: {type(err).__name__}: {one_line(str(err))} "
        "(run with --debug for the traceback)",
        file=sys.stderr,
    )
    return EXIT_INTERNAL


def one_line(text: str) -> str:
    """Messages are one line: a wrapped one (YAML's, pydantic's) is joined back."""
    return " ".join(part.strip() for part in text.strip().splitlines() if part.strip())
