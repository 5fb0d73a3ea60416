"""The HTTP layer's modules import one another without a cycle, type-only imports included.

Read from the source (every ``import`` statement, those under ``TYPE_CHECKING`` too), so a cycle
fails here before it fails, or hides, at import time in some order of first imports.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import service

ROOT = Path(service.__file__).parent.parent
LAYER = "service.http"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``path`` imports (a name from a package: its module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            targets = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target:
                found.add(target)
    return found


def test_the_http_layer_has_no_import_cycle() -> None:
    paths = {module_name(path): path for path in (ROOT / "service").rglob("*.py")}
    known = set(paths)
    graph = {
        name: {
            target
            for target in imports_of(path, known)
            # A package's __init__ runs before its modules: importing it is no cycle.
            if target != name and not name.startswith(f"{target}.")
        }
        for name, path in paths.items()
    }
    layer = {name for name in graph if name == LAYER or name.startswith(f"{LAYER}.")}
    assert len(layer) > 10
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as error:
        cycle = error.args[1]
        assert not layer & set(cycle), f"import cycle: {' -> '.join(cycle)}"
