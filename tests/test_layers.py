"""Imports run one way: every module under ``longvid/`` imports only its own layer or a lower one,
and no two parts import each other (directly or around a loop).

Parts are the top-level modules and subpackages of ``longvid``. Every import statement counts,
also those inside functions and under ``if TYPE_CHECKING:``. A new top-level part must be given a
layer here before its modules can import or be imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "longvid"

# Bottom to top; a part may import parts of its own layer or below.
LAYERS: dict[str, float] = {
    "__init__": 1,  # the package itself (``from longvid import __version__``)
    "errors": 1,
    "schema": 1,
    "config": 1,
    "storage": 2,
    "media": 3,
    "shards": 4,
    "stages": 5,
    "samples": 6,
    "ingest": 7,
    "segment": 8,
    "annotate": 9,
    "dedup": 9.5,
    "audit": 10,
    "pipelines": 11,
    "training": 12,
    "cli": 13,
    "demo": 13,
}


def module_name(path: Path, package_dir: Path) -> str:
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_of(dotted: str) -> str:
    """``longvid.x.y`` → ``x``; ``longvid`` → ``__init__``."""
    names = dotted.split(".")
    return names[1] if len(names) > 1 else "__init__"


def imported_modules(path: Path, package_dir: Path) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of every ``longvid`` module or name that ``path`` imports."""
    module = module_name(path, package_dir)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                # ``from longvid import storage`` imports the part ``storage``;
                # ``from longvid import __version__`` the package itself
                is_part = source != "longvid" or is_module(package_dir / alias.name)
                found.append((node.lineno, f"{source}.{alias.name}" if is_part else source))
    return [(line, name) for line, name in found if name.split(".")[0] == "longvid"]


def is_module(stem: Path) -> bool:
    return stem.with_suffix(".py").is_file() or (stem / "__init__.py").is_file()


def import_edges(package_dir: Path) -> list[tuple[str, int, str, str]]:
    """(file, line, importing part, imported part) for every import between two parts."""
    edges = []
    for path in sorted(package_dir.rglob("*.py")):
        here = part_of(module_name(path, package_dir))
        for line, name in imported_modules(path, package_dir):
            there = part_of(name)
            if there != here:
                edges.append((str(path.relative_to(package_dir.parent)), line, here, there))
    return edges


def layer_violations(edges: list[tuple[str, int, str, str]]) -> list[str]:
    problems = []
    for file, line, here, there in edges:
        for part in (here, there):
            if part not in LAYERS:
                problems.append(f"{file}:{line}: longvid.{part} has no layer in tests/test_layers.py")
        if here in LAYERS and there in LAYERS and LAYERS[there] > LAYERS[here]:
            problems.append(
                f"{file}:{line}: longvid.{here} (layer {LAYERS[here]}) imports "
                f"longvid.{there} (layer {LAYERS[there]}, above it)"
            )
    return sorted(set(problems))


def part_cycles(edges: list[tuple[str, int, str, str]]) -> list[list[str]]:
    """Every set of two or more parts that reach each other (Tarjan's strongly connected
    components over the part graph)."""
    graph: dict[str, set[str]] = {}
    for _, _, here, there in edges:
        graph.setdefault(here, set()).add(there)
        graph.setdefault(there, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_every_part_has_a_layer():
    parts = {
        p.stem if p.is_file() else p.name
        for p in PACKAGE_DIR.iterdir()
        if (p.suffix == ".py") or (p.is_dir() and (p / "__init__.py").exists())
    }
    assert parts - LAYERS.keys() == set()


def test_no_import_from_a_higher_layer():
    edges = import_edges(PACKAGE_DIR)
    assert len(edges) > 100  # the walk saw the real package
    assert layer_violations(edges) == []


def test_no_cycle_between_parts():
    assert part_cycles(import_edges(PACKAGE_DIR)) == []


@pytest.mark.parametrize(
    ("file", "source", "expected"),
    [
        # a function-level import from above
        (
            "media/probe.py",
            "def f():\n    from longvid.pipelines import config\n",
            "longvid.media (layer 3) imports longvid.pipelines (layer 11, above it)",
        ),
        # a part imported as a name of the package
        (
            "shards/extra.py",
            "from longvid import training\n",
            "longvid.shards (layer 4) imports longvid.training (layer 12, above it)",
        ),
        # a relative import resolved against the package
        (
            "storage/extra.py",
            "from ..annotate import stages\n",
            "longvid.storage (layer 2) imports longvid.annotate (layer 9, above it)",
        ),
    ],
)
def test_a_planted_violation_is_found(tmp_path, file, source, expected):
    package = tmp_path / "longvid"
    for sub in ("media", "shards", "storage", "pipelines", "annotate", "training"):
        (package / sub).mkdir(parents=True)
        (package / sub / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / file).write_text(source)
    problems = layer_violations(import_edges(package))
    assert len(problems) == 1 and problems[0].endswith(expected), problems


def test_a_planted_cycle_is_found(tmp_path):
    package = tmp_path / "longvid"
    for sub in ("media", "shards", "storage"):
        (package / sub).mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "media" / "__init__.py").write_text("from longvid.shards import index\n")
    (package / "shards" / "__init__.py").write_text("from longvid.storage import local\n")
    (package / "storage" / "__init__.py").write_text("import longvid.media.probe\n")
    assert part_cycles(import_edges(package)) == [["media", "shards", "storage"]]
