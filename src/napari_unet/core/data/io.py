"""Reading and writing images and labels; pairing images with labels in folders."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserInputError
from .ome_zarr import is_ome_zarr

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".gif", ".jpg", ".jpeg", ".bmp")


def is_zarr_array(path: Path) -> bool:
    """A folder holding a zarr array (``.zarr``, v2 or v3 layout), read lazily by :func:`read_image`."""
    return (
        path.is_dir()
        and path.suffix.lower() == ".zarr"
        and any((path / marker).is_file() for marker in ("zarr.json", ".zarray"))
    )


def is_image_file(path: Path) -> bool:
    if path.name.startswith("."):
        return False
    return (
        (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)
        or is_zarr_array(path)
        or is_ome_zarr(path)
    )


def read_image(path: str | os.PathLike, *, memmap: bool = False) -> np.ndarray:
    """Read a TIFF (any compression imagecodecs knows, LZW included), PNG, GIF, JPEG or BMP.

    ``memmap=True`` maps uncompressed TIFFs instead of loading them (others load normally).
    A ``.zarr`` folder holding one array comes back as a zarr array, read lazily (needs the
    ``zarr`` package); an OME-Zarr image as its level 0, a lazy dask array (needs the
    ``ome-zarr`` extra; :func:`.ome_zarr.read_ome_zarr` gives its axes and pixel sizes). Single-frame GIFs come back as 2D or RGB arrays, not a stack of one.
    """
    path = Path(path)
    if is_ome_zarr(path):  # level 0 of the multiscale image, lazily
        from .ome_zarr import read_ome_zarr

        return read_ome_zarr(path).data
    if is_zarr_array(path):
        return _open_zarr(path)
    if not path.is_file():
        raise UserInputError(f"image file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            with _quiet_tifffile():
                if memmap:
                    try:
                        return tifffile.memmap(path, mode="r")
                    except ValueError:
                        pass  # compressed or tiled: not mappable, read it instead
                return tifffile.imread(path)
        import imageio.v3 as iio

        image = np.asarray(iio.imread(path))
    except UserInputError:
        raise
    except Exception as err:  # any decoder error means the same thing to the user
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "backend" in detail or isinstance(err, (IndexError, KeyError, TypeError)):
            # imageio's way of saying "no decoder recognises this file", or a decoder tripping
            # over a structure it did not expect: either way the file is not a readable image
            detail = f"not a {suffix.lstrip('.').upper()} image, or a damaged one"
        raise UserInputError(f"cannot read {path}: {detail}") from err
    if suffix == ".gif":
        if image.ndim >= 3 and image.shape[0] == 1:
            image = image[0]
        image = _grey_if_grey(image)
    return image


def _grey_if_grey(image: np.ndarray) -> np.ndarray:
    """GIFs are palette images that decoders hand back as RGB(A): one whose colours are all
    grey (and opaque) is a grey image, and comes back as one channel."""
    if image.ndim not in (3, 4) or image.shape[-1] not in (3, 4):
        return image
    if image.shape[-1] == 4 and not np.all(image[..., 3] == image[..., 3].max()):
        return image  # real transparency: keep the colour channels as they are
    return np.ascontiguousarray(image[..., 0]) if _grey_channels(image) else image


def _grey_channels(image: np.ndarray) -> bool:
    """Whether the red, green and blue channels (last axis) are equal: a grey image."""
    rgb = image[..., :3]
    return np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])


@contextlib.contextmanager
def _quiet_tifffile():
    """tifffile logs what it repairs or cannot read ("invalid offset to first page"); the
    reader's one error line (or a good image) is what the user should see, not its log."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _open_zarr(path: Path):
    try:
        import zarr
    except ImportError as err:
        raise UserInputError(
            f"reading {path.name} needs the zarr package: pip install zarr"
        ) from err
    try:
        return zarr.open_array(path, mode="r")
    except Exception as err:
        raise UserInputError(f"cannot read the zarr array {path}: {err}") from err


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Read a label image; a grey image saved as RGB(A) (equal channels) becomes one channel."""
    labels = read_image(path)
    if labels.ndim == 3 and labels.shape[-1] in (3, 4) and _grey_channels(labels):
        labels = np.ascontiguousarray(labels[..., 0])
    return labels


def default_permissions(path: str | os.PathLike) -> None:
    """Give a file made by ``tempfile.mkstemp`` (mode 0600) the permissions a normally created
    file would get under the current umask, so atomically written files are not private."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, flush it to disk, then rename
    it over ``path``: readers see the old file or the new one, never half of one. On any
    failure (Ctrl-C included) the temporary file is removed and ``path`` is untouched; a
    failure of the file system (disk full, read-only folder) becomes a :class:`UserInputError`
    that says so. Temporary files left by a process killed outright (``kill -9``, power cut)
    are removed by the next write to the same path."""
    path = Path(path)
    _remove_orphaned_temporaries(path)
    tmp = None
    try:
        fd, name = tempfile.mkstemp(
            prefix=f".{path.name}.{os.getpid()}.", suffix=path.suffix or ".tmp", dir=path.parent
        )
        os.close(fd)
        tmp = Path(name)
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        default_permissions(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise UserInputError(_write_failure(path, err)) from err
        raise
    return path


def _write_failure(path: Path, err: OSError) -> str:
    kept = "the existing file is untouched" if path.exists() else "nothing was written"
    return f"cannot write {path}: {describe_os_error(err, path.parent)}; {kept}"


def describe_os_error(err: OSError, folder: Path | None = None) -> str:
    """What a failed file operation means for the user: a full disk, a read-only folder, a
    name too long... (the CLI's one line for any OSError uses the same table). With
    ``folder``, a write into that folder failed, and the message says where."""
    import errno

    if folder is not None:  # a write: the cases its message names, else the system's words
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            return "the disk is full"
        if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return f"no permission to write in {folder} (read-only?)"
        return err.strerror or str(err)
    reasons = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "the file system is read-only",
        errno.ENAMETOOLONG: "the file name is too long for this file system; choose a shorter one",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EISDIR: "it is a folder; give a file name",
        errno.ENOENT: "no such file or folder",
        errno.EEXIST: "it already exists",
    }
    return reasons.get(err.errno or 0, err.strerror or str(err))


def _remove_orphaned_temporaries(path: Path) -> None:
    """Delete ``.<name>.<pid>.*`` files (and staged folders) beside ``path`` whose writing
    process is gone."""
    try:
        candidates = list(path.parent.glob(f".{glob.escape(path.name)}.*"))
    except OSError:
        return
    for candidate in candidates:
        pid = candidate.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            _discard(candidate)


def _discard(path: Path) -> None:
    """Remove a temporary file or staged folder of ours, quietly (a read-only folder refuses
    even to unlink what is not there)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Output:
    """One output of a set written by :func:`write_outputs`: ``write(tmp)`` writes it to a
    temporary path; ``folder`` outputs (OME-Zarr images) are folders, replaced only when
    ``is_ours`` says the existing folder is one this command writes (``kind`` names it)."""

    path: Path
    write: Callable[[Path], object]  # what it returns is ignored
    folder: bool = False
    is_ours: Callable[[Path], bool] | None = None
    kind: str = "an output of this command"


def write_outputs(outputs: list[Output], *, overwrite: bool = False, what: str = "") -> None:
    """Write a set of outputs all or none: each to a temporary path beside its target first,
    and only when every one is complete are they renamed into place. On a failure (disk full,
    Ctrl-C) the temporaries are removed and no target has changed; the error says so for
    ``what`` (e.g. the input image's name)."""
    from .safe_paths import check_output_tree, remove_output_tree

    for out in outputs:  # every refusal before any work
        if out.path.exists() or out.path.is_symlink():
            if not overwrite:
                raise UserInputError(f"{out.path} already exists; pass --overwrite to replace it")
            if out.folder:
                check_output_tree(out.path, root=out.path.parent, is_ours=_ours(out), kind=out.kind)
            elif out.path.is_dir() and not out.path.is_symlink():  # a link is replaced itself
                raise UserInputError(
                    f"refusing to replace {out.path}: it is a folder or link, not {out.kind}"
                )
    staged: list[tuple[Output, Path]] = []
    try:
        for out in outputs:
            _remove_orphaned_temporaries(out.path)
            tmp = out.path.with_name(
                f".{out.path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{out.path.suffix or '.tmp'}"
            )
            staged.append((out, tmp))
            out.write(tmp)
            if not out.folder:
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
                default_permissions(tmp)
    except BaseException as err:
        for _, tmp in staged:
            _discard(tmp)
        if isinstance(err, OSError):
            failed = staged[-1][0].path if staged else outputs[0].path
            message = _write_failure(failed, err)
            if len(outputs) > 1:
                message += f"; none of the {len(outputs)} outputs{' of ' + what if what else ''} was written"
            raise UserInputError(message) from err
        raise
    for out, tmp in staged:  # renames: no new space needed, so nothing fails half-way here
        if out.folder and out.path.exists():
            remove_output_tree(out.path, root=out.path.parent, is_ours=_ours(out), kind=out.kind)
        os.replace(tmp, out.path)


def _ours(out: Output) -> Callable[[Path], bool]:
    return out.is_ours or (lambda _: True)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, but belongs to someone else
    return True


def write_tiff(path: str | os.PathLike, data: np.ndarray) -> None:
    """A zlib-compressed TIFF of grey planes (labels, probabilities: never a colour photo,
    even when the first axis has 3 entries), written where asked (no atomicity here)."""
    import tifffile

    tifffile.imwrite(path, data, compression="zlib", photometric="minisblack")


def write_image(path: str | os.PathLike, data: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write a TIFF (zlib-compressed) or PNG atomically; refuse to replace a file unless asked.

    TIFFs are written as grey planes: what we write (labels, probabilities) is never a colour
    photograph, even when its first axis has 3 entries (3 slices, 3 classes).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise UserInputError(f"{path} already exists; pass --overwrite to replace it")
    if path.suffix.lower() in (".tif", ".tiff"):
        return atomic_write(path, lambda tmp: write_tiff(tmp, data))
    import imageio.v3 as iio

    return atomic_write(path, lambda tmp: iio.imwrite(tmp, data))


def list_images(folder_or_files: list[str | os.PathLike] | str | os.PathLike) -> list[Path]:
    """Image files from files and/or folders (folders are not searched recursively)."""
    items = (
        [folder_or_files] if isinstance(folder_or_files, (str, os.PathLike)) else folder_or_files
    )
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if is_zarr_array(path) or is_ome_zarr(path):
            found.append(path)
        elif path.is_dir():
            found += sorted(p for p in path.iterdir() if is_image_file(p))
        elif path.is_file():
            found.append(path)
        elif path.exists():
            raise UserInputError(f"{path} is not a regular file or folder (a device, a pipe?)")
        else:
            raise UserInputError(f"{path} does not exist")
    if not found:
        raise UserInputError(
            f"no image files ({', '.join(IMAGE_SUFFIXES)}, .zarr) found in {', '.join(map(str, items))}"
        )
    return found


@dataclass(frozen=True)
class ImagePair:
    image: Path
    labels: Path
    key: str


def file_key(
    path: Path, pattern: re.Pattern[str] | None = None, strip_suffixes: tuple[str, ...] = ()
) -> str | None:
    """The name a file is matched by: its stem (minus any of ``strip_suffixes``), or the part
    of the stem ``pattern`` extracts (its first group, else the whole match); None if no match."""
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    for suffix in strip_suffixes:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            stem = stem[: -len(suffix)]
            break
    if pattern is None:
        return stem
    match = pattern.search(stem)
    if match is None:
        return None
    return match.group(1) if match.groups() else match.group(0)


def index_folder(
    folder: str | os.PathLike,
    pattern: str | None = None,
    what: str = "files",
    strip_suffixes: tuple[str, ...] = (),
    select: Callable[[Path], bool] | None = None,
) -> dict[str, Path]:
    """Image files of ``folder`` (those ``select`` accepts) by :func:`file_key`; errors name
    files that do not fit."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserInputError(f"{what} folder {folder} does not exist")
    try:
        regex = re.compile(pattern) if pattern else None
    except re.error as err:
        raise UserInputError(
            f"pattern {pattern!r} is not a valid regular expression: {err}"
        ) from err
    index: dict[str, Path] = {}
    for path in sorted(
        p for p in folder.iterdir() if is_image_file(p) and (select is None or select(p))
    ):
        key = file_key(path, regex, strip_suffixes)
        if key is None:
            raise UserInputError(f"pattern {pattern!r} does not match the {what} file {path.name}")
        if key in index:
            raise UserInputError(
                f"two {what} files have the key {key!r}: {index[key].name} and {path.name}"
            )
        index[key] = path
    if not index:
        raise UserInputError(
            f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {what} folder {folder}"
        )
    return index


def unmatched_message(keys: dict[str, dict[str, Path]], pattern: str | None) -> str | None:
    """None when every key appears in every index, else a message listing the strays."""
    common = set.intersection(*(set(v) for v in keys.values()))
    strays = [
        f"{what} {index[k].name}"
        for what, index in keys.items()
        for k in sorted(set(index) - common)
    ]
    if not strays:
        return None
    shown = ", ".join(strays[:10]) + (f" and {len(strays) - 10} more" if len(strays) > 10 else "")
    hint = (
        ""
        if pattern
        else " (files are matched by name without extension; give a pattern to match differently named files)"
    )
    return f"{len(strays)} file(s) without a partner: {shown}{hint}"


def find_pairs(
    images_dir: str | os.PathLike, labels_dir: str | os.PathLike, pattern: str | None = None
) -> list[ImagePair]:
    """Match images to labels by file stem, or by the part of the stem ``pattern`` extracts.

    ``pattern`` is a regular expression searched in both stems; its first group (or the whole
    match) is the key: ``^\\d+`` pairs DRIVE's ``21_training.tif`` with ``21_manual1.gif``.
    Every image must have labels and vice versa; otherwise the error lists what is unmatched.
    """
    images = index_folder(images_dir, pattern, "image")
    labels = index_folder(labels_dir, pattern, "labels")
    problem = unmatched_message({"image": images, "labels": labels}, pattern)
    if problem:
        raise UserInputError(problem)
    return [ImagePair(images[k], labels[k], k) for k in sorted(images)]
