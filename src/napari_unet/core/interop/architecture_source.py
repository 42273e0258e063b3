"""The U-Net as one self-contained Python file (plain torch), for bioimage.io packages.

A package's ``pytorch_state_dict`` weights name the code that rebuilds the network. Naming
``napari_unet.core.network.unet`` would make every package need napari-unet installed; instead the
package carries this file (``architecture: source: napari_unet_architecture.py, sha256,
callable: build_unet``), so ``bioimageio test`` and any bioimage.io runner rebuild the network
with torch alone.

The file is generated from the package's own ``network/unet.py`` and ``network/mobilenet.py`` (one source of
truth): their relative imports are resolved into the one file and ``UserInputError`` becomes a
local ``ValueError``. ``tests/core/test_architecture_source.py`` checks that the file imports
nothing but the standard library and torch, and that its network gives the same output as
napari-unet's for every kind of architecture.

napari-unet itself never runs this file when it opens a package: it rebuilds its own network
from the architecture's settings (data), as before.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

ARCHITECTURE_FILE = "napari_unet_architecture.py"
ARCHITECTURE_CALLABLE = "build_unet"
_NETWORK = Path(__file__).resolve().parent.parent / "network"
# Names of mobilenet.py that model.py also defines: renamed in the combined file.
_RENAMED = {"receptive_radius": "_mobilenet_receptive_radius"}
_RELATIVE_IMPORT = re.compile(r"^(?P<indent>\s*)from \.+(?P<module>\w+) import (?P<names>.+)$")

_HEADER = '''"""napari-unet's U-Net (2D/3D, same or valid padding, optional MobileNetV2 encoder) in one
file that needs only PyTorch: the architecture of this bioimage.io package's
pytorch_state_dict weights. Generated from napari_unet.core.network.unet and .mobilenet
(napari-unet-torch {version}); `build_unet(**kwargs)` rebuilds the network.
"""

from __future__ import annotations


class UserInputError(ValueError):
    """Settings the network cannot be built from."""

'''


def _strip(text: str, renames: dict[str, str]) -> str:
    """The module's code without its docstring, its future import and its relative imports
    (names imported from the sibling module are in the same file; an alias is assigned)."""
    # Drop the module docstring (the first statement) and the future import.
    body = text.split('"""', 2)[2] if text.lstrip().startswith('"""') else text
    lines = []
    for line in body.splitlines():
        if line.startswith("from __future__ import"):
            continue
        match = _RELATIVE_IMPORT.match(line)
        if match is None:
            lines.append(line)
            continue
        indent = match["indent"]
        assigned = []
        for part in match["names"].split(","):
            name, _, alias = (p.strip() for p in part.strip().partition(" as "))
            source = renames.get(name, name) if match["module"] == "mobilenet" else name
            if alias or source != name:
                assigned.append(f"{indent}{alias or name} = {source}")
        lines.extend(assigned or ([f"{indent}pass"] if indent else []))
    return "\n".join(lines).strip("\n") + "\n"


def standalone_source() -> str:
    """The network's code as one module's text (see the module docstring)."""
    from ... import __version__

    mobilenet = (_NETWORK / "mobilenet.py").read_text()
    for old, new in _RENAMED.items():
        mobilenet = re.sub(rf"\b{old}\b", new, mobilenet)
    model = (_NETWORK / "unet.py").read_text()
    return (
        _HEADER.format(version=__version__)
        + "\n# ---- from napari_unet/core/network/mobilenet.py\n"
        + _strip(mobilenet, {})
        + "\n\n# ---- from napari_unet/core/network/unet.py\n"
        + _strip(model, _RENAMED)
    )


def write_standalone_source(folder: Path) -> tuple[str, str]:
    """Write :data:`ARCHITECTURE_FILE` into ``folder``; returns (file name, sha256)."""
    data = standalone_source().encode()
    (folder / ARCHITECTURE_FILE).write_bytes(data)
    return ARCHITECTURE_FILE, hashlib.sha256(data).hexdigest()
