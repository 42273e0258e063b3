"""Where a command may write: every path built from user input is checked here first.

A command writes or removes only inside what it was asked to write. The helpers below make
that checkable in one place:

- :func:`check_name` accepts a name that becomes one path component (a label name), never a
  path: no separators, not empty, not ``.`` or ``..``, letters, digits and ``._ -`` only.
- :func:`resolve_inside` resolves a path (links included) and refuses it unless it lies
  inside a given folder.
- :func:`remove_output_tree` removes a folder only when it resolves inside the folder the
  command writes into, is not a link, and is the kind of folder the command itself writes
  (an OME-Zarr image, a bioimage.io package): ``--overwrite`` replaces our outputs, never a
  folder that merely has the same name.
- :func:`refuse_inputs` refuses an output path that is one of the command's inputs.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import UserInputError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]*")
NAME_MAX = 64


def check_name(name: str, what: str = "name") -> str:
    """``name`` if it is safe as one path component, else a :class:`UserInputError`."""
    if not isinstance(name, str) or not name:
        raise UserInputError(f"{what} must not be empty")
    if name in (".", "..") or "/" in name or "\\" in name or os.sep in name:
        raise UserInputError(
            f"{what} {name!r} is a path; give a plain name such as 'napari-unet' "
            "(letters, digits and . _ - only)"
        )
    if len(name) > NAME_MAX or not _NAME.fullmatch(name) or name.endswith((".", " ")):
        raise UserInputError(
            f"{what} {name!r} is not a plain name: use up to {NAME_MAX} letters, digits and "
            ". _ - (starting with a letter or digit), e.g. 'napari-unet'"
        )
    return name


def resolve_inside(path: str | os.PathLike, root: str | os.PathLike, what: str = "output") -> Path:
    """``path`` resolved (links followed), checked to lie strictly inside ``root``."""
    resolved = Path(path).resolve()
    base = Path(root).resolve()
    if resolved == base or base not in resolved.parents:
        raise UserInputError(
            f"refusing to touch {path}: the {what} must lie inside {root}, and it resolves "
            f"to {resolved}"
        )
    return resolved


def is_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether ``path`` resolves to ``root`` itself or somewhere below it."""
    resolved, base = Path(path).resolve(), Path(root).resolve()
    return resolved == base or base in resolved.parents


def check_output_tree(
    path: str | os.PathLike,
    *,
    root: str | os.PathLike,
    is_ours: Callable[[Path], bool],
    kind: str,
) -> Path:
    """The folder ``path`` that ``--overwrite`` may replace: a real folder (not a link) inside
    ``root`` that is a ``kind`` (``is_ours``); anything else is refused."""
    path = Path(path)
    if path.is_symlink():
        raise UserInputError(
            f"refusing to replace {path}: it is a link; remove it yourself if it should go"
        )
    resolve_inside(path, root)
    if not path.is_dir():
        raise UserInputError(
            f"refusing to replace {path}: it is a file, not the {kind} this command writes"
        )
    if not is_ours(path):
        raise UserInputError(
            f"refusing to replace {path}: it is not {kind}, so it is not an output of this "
            "command; move it away or choose another output name"
        )
    return path


def remove_output_tree(
    path: str | os.PathLike,
    *,
    root: str | os.PathLike,
    is_ours: Callable[[Path], bool],
    kind: str,
) -> None:
    """Remove the folder ``path`` that ``--overwrite`` replaces, once
    :func:`check_output_tree` accepts it."""
    shutil.rmtree(check_output_tree(path, root=root, is_ours=is_ours, kind=kind))


def refuse_inputs(outputs: Iterable[Path | None], inputs: Iterable[Path], flag: str) -> None:
    """Refuse to write any of ``outputs`` onto (or into) one of the command's ``inputs``."""
    resolved_inputs = [Path(p).resolve() for p in inputs]
    for out in outputs:
        if out is None:
            continue
        target = Path(out).resolve()
        for source in resolved_inputs:
            if target == source or source in target.parents:
                raise UserInputError(
                    f"{flag} {out} would write onto the input {source}; choose another path"
                )
