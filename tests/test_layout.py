"""The package's layout: folders are layers and imports go one way, no import cycle, modules a reader
can hold.

Imports are read from the source with `ast`, function-level imports included (a function-level import
is still a dependency, only a later one). The checking functions take plain data, so the tests at the
end feed them a synthetic violation to show that they can fail.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "imlbench"
ROOT = "imlbench"  # the package itself: importing it runs imlbench/__init__.py, which imports the api
MAX_LINES = 350


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_in(source: str, name: str, is_package: bool, known: set[str] | dict) -> dict[str, int]:
    """The modules of `known` that the source of module `name` imports, anywhere (function bodies
    included), each with the line of its first import. `from a.b import c` is the module a.b.c where
    that is a module, else a.b."""
    package = name if is_package else name.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x / from ..x import y
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            if target in known and target != name:
                found.setdefault(target, node.lineno)
    return found


def imported(name: str) -> dict[str, int]:
    path = MODULES[name]
    return imports_in(path.read_text(), name, path.name == "__init__.py", MODULES)


GRAPH = {name: imported(name) for name in MODULES}


def find_cycle(graph: dict[str, dict[str, int] | set[str]]) -> list[str] | None:
    """One import cycle of the graph as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = 1
        for other in sorted(graph.get(name, ())):
            if state.get(other) == 1:
                return path[path.index(other):] + [other]
            if other not in state:
                cycle = visit(other, path + [other])
                if cycle:
                    return cycle
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            cycle = visit(name, [name])
            if cycle:
                return cycle
    return None


def within(name: str, prefix: str) -> bool:
    """`name` is the module or package `prefix` or lies inside it; the root matches only itself."""
    return name == prefix or (prefix != ROOT and name.startswith(prefix + "."))


@dataclass(frozen=True)
class Rule:
    """Modules inside any of `importers` import nothing inside `forbidden` and, where `only` is
    given, nothing of the package outside `only`."""

    why: str
    importers: tuple[str, ...]
    forbidden: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None

    def breaks(self, importer: str, target: str) -> bool:
        if not any(within(importer, p) for p in self.importers):
            return False
        if any(within(target, p) for p in self.forbidden):
            return True
        return self.only is not None and not any(within(target, p) for p in self.only)


ABOVE_VIEWS = ("imlbench.harness", "imlbench.diagnostics", "imlbench.execution", "imlbench.store", "imlbench.scoring", "imlbench.outputs",
               "imlbench.api", "imlbench.cli", "imlbench.sweep", ROOT)
RULES = (
    Rule("core is the bottom layer", ("imlbench.core",), only=("imlbench.core",)),
    Rule("protocol.py is at the bottom of core: plugins import it", ("imlbench.core.protocol",), only=()),
    Rule("views, tasks and learners sit below the harness and everything above it",
         ("imlbench.views", "imlbench.tasks", "imlbench.learners"), forbidden=ABOVE_VIEWS),
    Rule("the harness runs one run in one process, below execution, outputs and the api",
         ("imlbench.harness",), forbidden=("imlbench.execution", "imlbench.outputs", "imlbench.api", "imlbench.cli",
                                           "imlbench.sweep", ROOT)),
    Rule("the harness finds built-in learners and diagnostics through entry points, as it finds plugins",
         ("imlbench.harness",), forbidden=("imlbench.learners", "imlbench.diagnostics")),
    Rule("the built-in diagnostics extend the harness and draw with outputs; they never run anything",
         ("imlbench.diagnostics",), forbidden=("imlbench.execution", "imlbench.api", "imlbench.cli", "imlbench.sweep",
                                               ROOT)),
    Rule("records, scoring and outputs read results; they never run anything",
         ("imlbench.store", "imlbench.scoring", "imlbench.outputs"), forbidden=("imlbench.execution",)),
)


def violations(graph: dict[str, dict[str, int]], rules=RULES) -> list[str]:
    return [f"{importer} imports {target} (line {line}): {rule.why}"
            for importer, targets in sorted(graph.items()) for target, line in sorted(targets.items())
            for rule in rules if rule.breaks(importer, target)]


# --- the package --------------------------------------------------------------------------------


def test_no_import_cycle_inside_the_package():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_go_one_way_between_layers():
    found = violations(GRAPH)
    assert not found, "\n".join(found)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_too_long_to_hold_in_mind(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(PACKAGE.parent)} has {lines} lines (at most {MAX_LINES})"


# --- the checker itself ---------------------------------------------------------------------------


def test_the_import_walk_sees_function_level_and_relative_imports():
    source = ("import os\n"
              "from . import b\n"
              "from .c import thing\n"
              "from ..d import e\n"
              "def f():\n"
              "    import p.q.r\n"
              "    if True:\n"
              "        from p.q import s\n")
    known = {"p.q.a", "p.q.b", "p.q.c", "p.d", "p.d.e", "p.q.r", "p.q", "p.q.s"}
    found = imports_in(source, "p.q.a", False, known)
    assert set(found) == {"p.q.b", "p.q.c", "p.d.e", "p.q.r", "p.q.s"} and found["p.q.r"] == 6
    # a package's `from . import x` is relative to the package itself
    assert set(imports_in("from . import b\n", "p.q", True, known)) == {"p.q.b"}


def test_the_import_walk_sees_a_function_level_import_of_the_package():
    """tagged_digits imports the registry inside a function only, and the walk still finds it."""
    source = MODULES["imlbench.tasks.tagged_digits"].read_text()
    top_level = {n.module for n in ast.parse(source).body if isinstance(n, ast.ImportFrom)}
    assert "imlbench.core.registry" not in top_level
    assert "imlbench.core.registry" in GRAPH["imlbench.tasks.tagged_digits"]


def test_a_cycle_is_found():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"x.y"}, "x.y": {"x.z"}, "x.z": {"x.y"}}) == ["x.y", "x.z", "x.y"]


def test_a_layer_violation_is_found():
    graph = {
        "imlbench.core.seeds": {"imlbench.views.base": 3},  # core above its layer
        "imlbench.core.registry": {"imlbench.core.errors": 1},  # fine
        "imlbench.store.results": {"imlbench.execution.engines": 40},  # a function-level import counts alike
        "imlbench.harness.runner": {"imlbench.learners.forest": 9, "imlbench.store.records": 2},
        "imlbench.learners.mlp": {ROOT: 5},  # the root runs the api
        "imlbench.api": {"imlbench.execution.engines": 1, "imlbench.learners.forest": 1},  # the top may
    }
    assert violations(graph) == [
        "imlbench.core.seeds imports imlbench.views.base (line 3): core is the bottom layer",
        "imlbench.harness.runner imports imlbench.learners.forest (line 9): the harness finds built-in learners and diagnostics "
        "through entry points, as it finds plugins",
        "imlbench.learners.mlp imports imlbench (line 5): views, tasks and learners sit below the harness and "
        "everything above it",
        "imlbench.store.results imports imlbench.execution.engines (line 40): records, scoring and outputs read "
        "results; they never run anything",
    ]
    assert not within("imlbench.api", ROOT) and within("imlbench.core.seeds", "imlbench.core")
    assert not within("imlbench.coredump", "imlbench.core")
