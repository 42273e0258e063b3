"""The ``napari-unet`` command: train, predict, evaluate, info, import and demo.

Every subcommand drives the same core as the napari widgets. Bad input ends with one line
starting ``napari-unet: error:`` and exit status 2; ``--debug`` shows tracebacks instead.

One module per command (``train.py``, ``predict.py``, ...), each with ``add_parser(sub)``;
what they share is in ``common.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

from . import demo, evaluate, export, import_weights, info, predict, train
from .common import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USER_ERROR,
    Terminated,
    _internal_error,
    _on_sigterm,
    _os_error_line,
    _Parser,
    _stdout_failed,
    check_numbers,
    one_line,
)
from .info import describe_model

__all__ = ["build_parser", "check_numbers", "describe_model", "main"]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(prog="napari-unet", description="U-Net segmentation from the command line.")
    parser.add_argument("--version", action="version", version=f"napari-unet-torch {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (train, predict, evaluate, info, import_weights, export, demo):
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 internal error, 2 bad input, 130
    interrupted, 143 terminated by SIGTERM, 141 when the reader of its output went away)."""
    import signal
    import threading

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a malformed command line (one line)
        return done.code if isinstance(done.code, int) else EXIT_USER_ERROR
    from ..core.errors import UserInputError

    for stream in (sys.stdout, sys.stderr):  # file names that are not valid UTF-8 print escaped
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")

    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    else:
        previous = None
    try:
        check_numbers(args)
        status = args.run(args)
        sys.stdout.flush()  # a full disk or a closed pipe on stdout shows here, not at exit
        return status
    except BrokenPipeError:
        # `napari-unet evaluate ... | head -1`: the reader has all it wanted. Quiet, as Unix
        # tools are; stdout goes to /dev/null so that Python's exit flush does not complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except UserInputError as err:
        if args.debug:
            raise
        print(f"napari-unet: error: {one_line(str(err))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Terminated:
        print("napari-unet: terminated (SIGTERM)", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("napari-unet: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print(
            "napari-unet: error: out of memory; use a smaller --tile-size / --batch-size / --patch-size",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR
    except OSError as err:  # the file system said no: the user's to fix, not a bug
        if args.debug:
            raise
        if err.errno is not None:
            if _stdout_failed(err):
                print(
                    "napari-unet: error: cannot write to standard output: "
                    + _os_error_line(err).split(": ", 1)[-1],
                    file=sys.stderr,
                )
            else:
                print(f"napari-unet: error: {_os_error_line(err)}", file=sys.stderr)
            return EXIT_USER_ERROR
        return _internal_error(err)
    except Exception as err:  # a bug: one line, with the way to see more
        if args.debug:
            raise
        return _internal_error(err)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
