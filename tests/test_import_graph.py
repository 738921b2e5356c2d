"""Imports point one way, three floors: flows → engine → registry. No arrow up, no circle, no process importing
another (a process starts another by its deployment's name)."""

from __future__ import annotations

import ast
from pathlib import Path

from engine.deployments import PROJECT_ROOT

FLOORS = {"registry": 0, "engine": 1, "flows": 2, "demo": 3}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _ours() -> dict[str, Path]:
    return {_module_name(p): p for floor in FLOORS for p in (PROJECT_ROOT / floor).rglob("*.py")
            if "migrations" not in p.parts}


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in FLOORS}


def _process_of(module: str) -> str | None:
    """The process package a module belongs to; None for the engine, the registry, and what a domain's processes
    share (flows/<domain>/<module>.py)."""
    parts = module.split(".")
    if parts[0] != "flows" or len(parts) < 3 or not (PROJECT_ROOT / Path(*parts[:3]) / "__init__.py").exists():
        return None
    return ".".join(parts[:3])


def test_no_import_points_up_a_floor() -> None:
    up = []
    for module, path in _ours().items():
        floor = FLOORS[module.split(".")[0]]
        up += [f"{module} → {name}" for name in sorted(_imports(path, top_level_only=False))
               if FLOORS[name.split(".")[0]] > floor]
    assert up == []


def test_no_process_imports_another() -> None:
    across = []
    for module, path in _ours().items():
        own = _process_of(module)
        if own is None:
            continue
        across += [f"{module} → {name}" for name in sorted(_imports(path, top_level_only=False))
                   if (other := _process_of(name)) is not None and other != own]
    assert across == []


def test_no_circle_among_module_level_imports() -> None:
    modules = _ours()
    graph = {module: {name if name in modules else name.rsplit(".", 1)[0] for name in
                      _imports(path, top_level_only=True)} & modules.keys() - {module}
             for module, path in modules.items()}
    # A package's __init__ re-exporting its own submodules is not a circle worth naming.
    for module, deps in graph.items():
        graph[module] = {d for d in deps if not (module.startswith(f"{d}.") and d.count(".") < module.count("."))}
    seen: dict[str, int] = {}
    circles: list[str] = []

    def visit(module: str, path: list[str]) -> None:
        if seen.get(module) == 1:
            circles.append(" → ".join([*path[path.index(module):], module]))
            return
        if seen.get(module) == 2:
            return
        seen[module] = 1
        for dep in sorted(graph[module]):
            visit(dep, [*path, module])
        seen[module] = 2

    for module in sorted(graph):
        visit(module, [])
    assert circles == []
