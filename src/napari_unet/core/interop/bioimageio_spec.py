"""Opening a bioimage.io package safely: finding and bounding its description (size,
nesting, YAML alias expansion, no Python tags), unzipping without escaping, and validating it
with bioimageio.spec. What the package holds is read by bioimageio_import."""

from __future__ import annotations

import contextlib
import io as _io
import os
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserInputError

DESCRIPTION_NAMES = ("bioimageio.yaml", "rdf.yaml")


def _description_in(folder: Path) -> Path | None:
    for name in DESCRIPTION_NAMES:
        if (folder / name).is_file():
            return folder / name
    found = sorted(folder.glob("*.bioimageio.yaml"))
    return found[0] if found else None


def is_package(path: str | os.PathLike) -> bool:
    """True for a bioimage.io package: its folder, its zip, or its description file."""
    path = Path(path)
    if path.is_dir():
        return _description_in(path) is not None
    if path.is_file() and path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return False
        return any(n in DESCRIPTION_NAMES or n.endswith(".bioimageio.yaml") for n in names)
    return path.is_file() and (
        path.name in DESCRIPTION_NAMES or path.name.endswith(".bioimageio.yaml")
    )


@dataclass
class Package:
    """An opened package: its validated description and the folder its files are in."""

    path: Path
    root: Path
    descr: Any
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    def file(self, source: Any) -> Path:
        """Local path of a file the description names; URLs are refused (no downloads)."""
        text = str(getattr(source, "source", source))
        if "://" in text:
            raise UserInputError(
                f"the package {self.path.name} points to {text} instead of holding the file; "
                "napari-unet does not download: use the package's zip, which holds its files"
            )
        path = (self.root / text).resolve()
        if not path.is_file():
            raise UserInputError(f"the package {self.path.name} lacks its file {text}")
        return path


def _extract(path: Path, into: Path) -> None:
    """Unzip without letting a member escape ``into`` (absolute paths, '..')."""
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            target = (into / member.filename).resolve()
            if not target.is_relative_to(into.resolve()):
                raise UserInputError(f"{path} holds a file outside the package ({member.filename})")
        archive.extractall(into)


def needs_bioimageio() -> None:
    """Raise a clear error when the optional bioimage.io packages are missing."""
    try:
        import bioimageio.spec  # noqa: F401
    except ImportError as err:
        raise UserInputError(
            "bioimage.io packages need the bioimageio extra: "
            "pip install 'napari-unet-torch[bioimageio]'"
        ) from err


# A model description is a few kB of YAML. These bounds refuse, before any YAML library
# expands it, a file built to exhaust memory or time ("billion laughs": aliases of aliases).
DESCRIPTION_MAX_BYTES = 1_000_000
DESCRIPTION_MAX_DEPTH = 64
DESCRIPTION_MAX_NODES = 1_000_000  # values once every alias is expanded


def check_description_size(path: Path) -> None:
    """Refuse a description file that is too large, too deeply nested, expands (through YAML
    aliases) to too many values, or holds tags that plain YAML does not know. The nesting is
    scanned event by event and the expansion counted on the composed graph, where an alias is
    one shared node: time and memory stay linear in the file's size."""
    import yaml

    size = path.stat().st_size
    if size > DESCRIPTION_MAX_BYTES:
        raise UserInputError(
            f"{path.name} is {size:,} bytes; a model description is a few kB "
            f"(at most {DESCRIPTION_MAX_BYTES:,} read): not a bioimage.io package"
        )
    try:
        text = path.read_text(encoding="utf-8")
        depth = deepest = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                deepest = max(deepest, depth)
                if deepest > DESCRIPTION_MAX_DEPTH:
                    raise UserInputError(
                        f"{path.name} nests more than {DESCRIPTION_MAX_DEPTH} levels deep: "
                        "refused, as a file built to exhaust memory would be"
                    )
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
        expanded = _expanded_size(yaml.compose(text, Loader=yaml.SafeLoader))
        if expanded > DESCRIPTION_MAX_NODES:
            raise UserInputError(
                f"{path.name} expands through YAML aliases to {expanded:,} values (at most "
                f"{DESCRIPTION_MAX_NODES:,} read): refused, as a file built to exhaust memory "
                "would be"
            )
        yaml.safe_load(text)  # bounded now; refuses tags such as !!python/object
    except UnicodeDecodeError as err:
        raise UserInputError(f"{path.name} is not UTF-8 text: not a model description") from err
    except yaml.YAMLError as err:
        detail = " ".join(str(err).split())
        raise UserInputError(f"{path.name} is not valid YAML: {detail[:200]}") from err


def _expanded_size(root: Any) -> int:
    """Values in the YAML graph once its aliases (shared nodes) are expanded: each node's size
    computed once (iteratively, children first), so a billion laughs costs its few nodes."""
    import yaml

    sizes: dict[int, int] = {}
    stack = [(root, False)] if root is not None else []
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            sizes[id(node)] = 1
            continue
        if children_done:
            sizes[id(node)] = min(1 + sum(sizes[id(c)] for c in children), 2**62)
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes.get(id(root), 0)


def open_package(path: str | os.PathLike) -> Package:
    """Validate and open a package (folder, zip or description file), or raise one clear error."""
    needs_bioimageio()
    from bioimageio.spec import load_model_description

    path = Path(path)
    if not path.exists():
        raise UserInputError(f"model {path} does not exist")
    tmp = None
    if path.is_file() and path.suffix.lower() == ".zip":
        tmp = tempfile.TemporaryDirectory(prefix="napari-unet-package-")
        try:
            _extract(path, Path(tmp.name))
        except zipfile.BadZipFile as err:
            tmp.cleanup()
            raise UserInputError(f"{path} is not a readable zip file ({err})") from err
        root = Path(tmp.name)
    else:
        root = path if path.is_dir() else path.parent
    rdf = _description_in(root) if root.is_dir() and (path.is_dir() or tmp) else path
    if rdf is None:
        raise UserInputError(f"{path} holds no bioimageio.yaml or rdf.yaml")
    try:
        check_description_size(rdf)
    except UserInputError:
        if tmp is not None:
            tmp.cleanup()
        raise
    with warnings.catch_warnings(), contextlib.redirect_stderr(_io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            descr = load_model_description(rdf, format_version="latest", perform_io_checks=True)
        except ValueError as err:
            raise UserInputError(
                f"{path} is not a valid bioimage.io model package: {_validation_detail(err)}"
            ) from err
    if not hasattr(descr, "weights"):
        raise UserInputError(f"{path} describes a bioimage.io {descr.type}, not a model")
    return Package(path, root, descr, tmp)


def _validation_detail(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    useful = [
        line.removeprefix(": ").removeprefix("Value error, ")
        for line in lines
        if not line.startswith("For further information") and not line.endswith(":")
    ]
    return "; ".join(useful[:3]) or type(err).__name__
