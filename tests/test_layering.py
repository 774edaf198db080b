"""The architecture's layering, checked from the source: every import statement, wherever it
stands (module level, under ``TYPE_CHECKING``, inside a function), is an edge.

* ``runtime`` imports only the standard library, msgpack and pynacl (and itself);
* ``genesis`` imports ``runtime``; ``p2p`` imports ``runtime`` (never ``node``, ``client`` or
  ``genesis``); ``client`` imports ``runtime`` (never ``node``, ``p2p`` or ``genesis``);
* no module of ``node`` imports ``node.cli`` (the command line is the top of the node);
* no two modules of ``node`` import each other in a circle, directly or through others: a
  part receives what it needs from whoever wires it.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("runtime", "genesis", "p2p", "node", "client")
RUNTIME_THIRD_PARTY = {"msgpack", "nacl"}
# Which of the project's packages each package may import (besides itself).
ALLOWED = {
    "runtime": set(),
    "genesis": {"runtime"},
    "p2p": {"runtime"},
    "client": {"runtime"},
    "node": {"runtime", "genesis", "p2p", "client"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def imported(path: Path) -> Iterator[tuple[str, int]]:
    """(module imported, line) for every import statement in the file."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path.parent)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield (candidate if candidate in MODULES else base), node.lineno


def project_edges() -> dict[str, list[tuple[str, int]]]:
    """Each project module's imports of project modules (deepest module named)."""
    edges: dict[str, list[tuple[str, int]]] = {}
    for name, path in MODULES.items():
        found = []
        for target, line in imported(path):
            while target and target not in MODULES and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in MODULES and target != name:
                found.append((target, line))
        edges[name] = found
    return edges


EDGES = project_edges()


def test_the_walk_sees_the_project() -> None:
    assert {"runtime.codec", "node.core", "node.service", "node.cli", "client.rpc",
            "p2p.network", "genesis.spec"} <= set(MODULES)
    assert ("node.core", 25) in [(t, line) for t, line in EDGES["node.service"]] or any(
        target == "node.core" for target, _ in EDGES["node.service"])


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_only_the_layers_below(package: str) -> None:
    wrong = [f"{name}:{line} imports {target}"
             for name, edges in EDGES.items() if name.split(".")[0] == package
             for target, line in edges
             if target.split(".")[0] != package and target.split(".")[0] not in ALLOWED[package]]
    assert not wrong, "\n".join(wrong)


def test_runtime_imports_only_the_standard_library_msgpack_and_pynacl() -> None:
    stdlib = set(sys.stdlib_module_names)
    wrong = []
    for name, path in MODULES.items():
        if not name.startswith("runtime"):
            continue
        for target, line in imported(path):
            top = target.split(".")[0]
            if top and top not in stdlib and top not in RUNTIME_THIRD_PARTY and top != "runtime":
                wrong.append(f"{name}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_nothing_in_node_imports_the_command_line() -> None:
    wrong = [f"{name}:{line} imports {target}" for name, edges in EDGES.items()
             if name.startswith("node.") and not name.startswith("node.cli")
             for target, line in edges if target == "node.cli" or target.startswith("node.cli.")]
    assert not wrong, "\n".join(wrong)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycles_finds_a_circle() -> None:  # the check itself can fail
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_among_node_modules() -> None:
    graph = {name: {target for target, _ in edges if target.startswith("node")}
             for name, edges in EDGES.items() if name.startswith("node")}
    circles = cycles(graph)
    detail = []
    for component in circles:
        members = set(component)
        detail.append(" ↔ ".join(component) + ":\n" + "\n".join(
            f"    {name}:{line} imports {target}" for name in component
            for target, line in EDGES[name] if target in members))
    assert not circles, "import circles:\n" + "\n".join(detail)
