"""The folders' layering, read from every import of the production code (imports inside functions
and under ``TYPE_CHECKING`` included): an import runs downwards or within a level, no package or
module imports itself back through others, and the ingest's decoders import nothing of the store.
The levels are the README's (Architecture: the folders, top to bottom)."""
from __future__ import annotations

import ast
from collections import defaultdict

from tests.conftest import ROOT

LEVELS = (
    ("center",),  # the process entry points: nothing imports them
    ("bench",),
    ("web", "ingest", "simulators", "field"),  # the edges
    ("services",),
    ("store",),
    ("servers",),
    ("messaging",),
    ("config", "runtime"),
    ("command",),  # the domain
    ("gis",),
)
LEVEL = {package: level for level, packages in enumerate(LEVELS) for package in packages}
DECODERS = ("ingest.nmea", "ingest.fixes", "ingest.plausibility", "ingest.readings", "ingest.sparkplug",
            "ingest.alarms", "ingest.jt808", "ingest.jt808_items")


def modules() -> dict[str, str]:
    """Dotted module name -> its path, for every .py file of the packages in LEVELS."""
    found = {}
    for package in LEVEL:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = str(path.relative_to(ROOT))
    return found


def imports() -> dict[str, set[tuple[str, int]]]:
    """Module -> the project's modules it imports, each with the line of the import."""
    known = modules()
    edges: dict[str, set[tuple[str, int]]] = defaultdict(set)
    for name, path in known.items():
        package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
        for node in ast.walk(ast.parse((ROOT / path).read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([node.module] if node.module else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in known:  # ``import a.b.c`` of a module a.b: a.b
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges[name].add((target, node.lineno))
    return edges


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while (top := stack.pop()) != node:
                component.append(top)
            if component:
                found.append(sorted(component + [node]))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_levels_name_every_package_and_the_imports_are_read():
    top = {path.parent.name for path in ROOT.glob("*/__init__.py")} - {"tests"}
    assert top <= set(LEVEL), f"packages without a level: {sorted(top - set(LEVEL))}"
    assert "store.live" in {target for target, _ in imports()["ingest.service"]}  # a sample edge


def test_no_import_runs_up_a_level():
    upward = sorted(f"{name} -> {target} (line {line})" for name, targets in imports().items()
                    for target, line in targets
                    if LEVEL[target.split(".")[0]] < LEVEL[name.split(".")[0]])
    assert upward == []


def test_no_import_cycles_between_packages_or_modules():
    edges = imports()
    packages: dict[str, set[str]] = defaultdict(set)
    for name, targets in edges.items():
        packages[name.split(".")[0]].update(t.split(".")[0] for t, _ in targets if t.split(".")[0] != name.split(".")[0])
    assert cycles(packages) == []
    assert cycles({name: {target for target, _ in targets} for name, targets in edges.items()}) == []


def test_the_decoders_import_nothing_of_the_store():
    edges = imports()
    assert sorted(f"{name} -> {target}" for name in DECODERS for target, _ in edges[name]
                  if target.split(".")[0] == "store") == []
