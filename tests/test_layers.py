"""The core's rooms and the direction of its arrows (docs/architecture.md): every import in
napari_unet.core, at the top of a module or inside a function, points to the same room or to
one below it; the core never imports the GUI or the CLI; no two modules import each other,
directly or around a circle."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "src" / "napari_unet" / "core"

# Bottom to top. A room may import itself and the rooms with a lower number.
LEVELS = {
    "errors": 0,
    "limits": 1,
    "metrics": 1,
    "network": 2,
    "data": 3,
    "models": 4,
    "interop": 5,
    "predict": 6,
    "train": 7,
    "cluster": 8,
    "model": 9,  # the compatibility name old bioimage.io packages import (core/model.py)
    "__init__": 10,  # napari_unet.core's re-exports
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of the napari_unet modules ``path`` imports, anywhere in it."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            else:
                module = node.module or ""
            if not module.startswith("napari_unet"):
                continue
            for alias in node.names:  # "from . import io" imports a module
                candidate = f"{module}.{alias.name}"
                if (CORE.parent.parent / Path(*candidate.split("."))).with_suffix(
                    ".py"
                ).exists() or (CORE.parent.parent / Path(*candidate.split("."))).is_dir():
                    found.add(candidate)
                else:
                    found.add(module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("napari_unet")}
    return found


def _room(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] != ["napari_unet", "core"]:
        return None
    return parts[2] if len(parts) > 2 else "__init__"


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted(CORE.rglob("*.py"))}


def test_every_room_is_known():
    rooms = {_room(m) for m in _graph()}
    assert rooms <= set(LEVELS), f"a room without a level: {rooms - set(LEVELS)}"


def test_arrows_point_down():
    wrong = []
    for module, imported in _graph().items():
        here = _room(module)
        for target in imported - {"napari_unet"}:  # the top package holds only __version__
            there = _room(target)
            if there is None:
                wrong.append(f"{module} imports {target} (outside the core)")
            elif there != here and LEVELS[there] >= LEVELS[here]:
                wrong.append(f"{module} ({here}) imports {target} ({there}): an arrow up")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    graph = _graph()
    modules = set(graph)
    edges = {m: {t for t in graph[m] if t in modules and t != m} for m in graph}
    # A package's __init__ importing its own modules is not a cycle of logic.
    for m in edges:
        edges[m] = {t for t in edges[m] if not m.startswith(t + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for module in sorted(edges):
        if module not in state and (cycle := visit(module)):
            raise AssertionError("import cycle: " + " -> ".join(cycle))


def test_modules_and_functions_fit_the_house_rules():
    """No module over 500 lines unless its docstring says why ("Over 500 lines: ..."), no
    function over 80 lines (docs/architecture.md, "Rules of the house")."""
    package = CORE.parent
    too_long = []
    for path in sorted(package.rglob("*.py")):
        text = path.read_text()
        tree = ast.parse(text)
        where = path.relative_to(package)
        lines = text.count("\n")
        if lines > 500 and "Over 500 lines:" not in (ast.get_docstring(tree) or ""):
            too_long.append(f"{where}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 80:
                    too_long.append(f"{where}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, "over the house's limits: " + "; ".join(too_long)
