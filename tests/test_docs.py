"""docs/architecture.md matches the code: every file or folder it names exists, and every room
of the core is described there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "napari_unet"


def test_every_path_the_architecture_page_names_exists():
    text = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`((?:core|_napari|cli)/[\w/]+(?:\.py)?/?)`", text))
    # bare module names in a room's row ("`unet.py`") belong to that room's folder
    for row in re.findall(r"^\| `core/(\w+)/` \| (.+)$", text, flags=re.M):
        room, cells = row
        named |= {f"core/{room}/{name}" for name in re.findall(r"`(\w+\.py)`", cells)}
    missing = sorted(p for p in named if not (PACKAGE / p.rstrip("/")).exists())
    assert not missing, f"docs/architecture.md names what does not exist: {missing}"
    assert len(named) > 30


def test_every_room_is_on_the_page():
    text = (ROOT / "docs" / "architecture.md").read_text()
    rooms = {p.name for p in (PACKAGE / "core").iterdir() if (p / "__init__.py").exists()}
    absent = sorted(r for r in rooms if f"`core/{r}/`" not in text)
    assert not absent, f"rooms missing from docs/architecture.md: {absent}"
