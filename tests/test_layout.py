"""The package's layout: folders are layers and imports go one way, no import cycle, modules a reader
can hold.

Imports are read from the source with `ast`, function-level imports included (a function-level import
is still a dependency, only a later one). The checking functions take plain data, so the tests at the
end feed them a synthetic violation to show that they can fail.
"""

from __future__ import annotations

import ast
import subprocess
import sys
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


def parents(name: str) -> list[str]:
    """The packages whose `__init__` runs before module `name` does: importing a.b.c runs a and a.b."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def graph_of(sources: dict[str, tuple[str, bool]]) -> dict[str, dict[str, int]]:
    """module -> (source, is_package) to module -> what importing it runs of the package: each module
    it imports, anywhere in its source, and the `__init__` of every package above that module (the
    edge that a circle through a package's `__init__` hides behind)."""
    graph = {}
    for name, (source, is_package) in sources.items():
        found = imports_in(source, name, is_package, sources)
        for target, line in list(found.items()):
            for package in parents(target):
                if package in sources and package != name and not within(name, package):
                    found.setdefault(package, line)
        graph[name] = found
    return graph


def find_cycle(graph: dict[str, dict[str, int] | set[str]]) -> list[str] | None:
    """One import cycle of the graph as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = 1
        for other in sorted(graph.get(name, ())):
            if state.get(other) == 1:
                return path[path.index(other) :] + [other]
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


# The layers, bottom first: (name, the modules in it, what it is). A module may import its own
# layer and any layer below it; nothing above. The README's architecture page is drawn from this
# table (`architecture_lines`), so the picture and the rule are one.
LAYERS = (
    ("core", ("imlbench.core", ROOT), "protocol types, errors, names, seeds, the registry, pipelines as data"),
    ("views", ("imlbench.views",), "how examples become a learner's input"),
    ("built-ins", ("imlbench.tasks", "imlbench.learners"), "tasks and learners, registered as plugins are"),
    ("store", ("imlbench.store",), "RunRecord: checked, written, read; provenance; claims"),
    ("scoring", ("imlbench.scoring",), "per-run scores recomputed from records; verdicts; trends"),
    ("harness", ("imlbench.harness",), "one run in one process: stages, evaluation, the learner's process"),
    ("outputs", ("imlbench.outputs",), "leaderboard tables, figures, report"),
    ("diagnostics", ("imlbench.diagnostics",), "built-in diagnostics: extend the harness, draw with outputs"),
    ("execution", ("imlbench.execution",), "engines: workers, dask, slurm; planning the order of runs"),
    ("api", ("imlbench.api", "imlbench.testing", "imlbench.protocol"), "the Python API, the plugin checker"),
    (
        "tools",
        ("imlbench.search", "imlbench.search_results", "imlbench.sweep", "imlbench.verify"),
        "elicitation search, sweeps, verify",
    ),
    ("cli", ("imlbench.cli", "imlbench.__main__"), "the command line"),
)
# Same-floor pairs that must not import each other either way, each with its reason.
APART = (
    (("imlbench.outputs",), ("imlbench.harness",), "outputs read records; they never run anything"),
    (("imlbench.tasks",), ("imlbench.learners",), "a task never knows a learner, nor a learner a task"),
    (("imlbench.learners",), ("imlbench.tasks",), "a task never knows a learner, nor a learner a task"),
)


def layer_of(name: str) -> int | None:
    for level, (_, prefixes, _) in enumerate(LAYERS):
        if any(within(name, p) for p in prefixes):
            return level
    return None


@dataclass(frozen=True)
class Rule:
    """Modules inside any of `importers` import nothing inside `forbidden`."""

    why: str
    importers: tuple[str, ...]
    forbidden: tuple[str, ...] = ()

    def breaks(self, importer: str, target: str) -> bool:
        return any(within(importer, p) for p in self.importers) and any(within(target, p) for p in self.forbidden)


def layer_rules() -> tuple[Rule, ...]:
    """One rule per layer (nothing above it) plus the apart pairs: every layer pair has a direction."""
    rules = []
    for level, (name, prefixes, _) in enumerate(LAYERS):
        above = tuple(p for _, ps, _ in LAYERS[level + 1 :] for p in ps)
        if above:
            rules.append(Rule(f"{name} sits below {', '.join(n for n, _, _ in LAYERS[level + 1 :])}", prefixes, above))
    rules += [Rule(why, importers, forbidden) for importers, forbidden, why in APART]
    rules.append(
        Rule(
            "the harness finds built-in learners and tasks through the registry, as it finds plugins",
            ("imlbench.harness", "imlbench.execution"),
            ("imlbench.learners", "imlbench.tasks"),
        )
    )
    allowed = {"imlbench.core.protocol", "imlbench.core.viewdata", *parents("imlbench.core.protocol")}
    rules.append(
        Rule(
            "protocol.py is the bottom of core (with the view data it re-exports): plugins import it",
            ("imlbench.core.protocol", "imlbench.core.viewdata"),
            tuple(m for m in MODULES if m not in allowed),
        )
    )
    return tuple(rules)


RULES = layer_rules()
GRAPH = graph_of({name: (path.read_text(), path.name == "__init__.py") for name, path in MODULES.items()})


def architecture_lines() -> list[str]:
    """The layer picture of docs/architecture.md, top layer first, from LAYERS."""
    lines = []
    for name, prefixes, what in reversed(LAYERS):
        modules = ", ".join(p.removeprefix("imlbench.") if p != ROOT else "imlbench/__init__" for p in prefixes)
        lines.append(f"{name:<12} {modules:<46} {what}")
    return lines


def violations(graph: dict[str, dict[str, int]], rules=RULES) -> list[str]:
    return [
        f"{importer} imports {target} (line {line}): {rule.why}"
        for importer, targets in sorted(graph.items())
        for target, line in sorted(targets.items())
        for rule in rules
        if rule.breaks(importer, target)
    ]


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
    source = (
        "import os\n"
        "from . import b\n"
        "from .c import thing\n"
        "from ..d import e\n"
        "def f():\n"
        "    import p.q.r\n"
        "    if True:\n"
        "        from p.q import s\n"
    )
    known = {"p.q.a", "p.q.b", "p.q.c", "p.d", "p.d.e", "p.q.r", "p.q", "p.q.s"}
    found = imports_in(source, "p.q.a", False, known)
    assert set(found) == {"p.q.b", "p.q.c", "p.d.e", "p.q.r", "p.q.s"} and found["p.q.r"] == 6
    # a package's `from . import x` is relative to the package itself
    assert set(imports_in("from . import b\n", "p.q", True, known)) == {"p.q.b"}


def test_the_import_walk_sees_a_function_level_import_of_the_package():
    """controls imports the spec resolver inside a function only, and the walk still finds it."""
    source = MODULES["imlbench.learners.controls"].read_text()
    top_level = {n.module for n in ast.parse(source).body if isinstance(n, ast.ImportFrom)}
    assert "imlbench.core.specs" not in top_level
    assert "imlbench.core.specs" in GRAPH["imlbench.learners.controls"]


def test_a_cycle_is_found():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"x.y"}, "x.y": {"x.z"}, "x.z": {"x.y"}}) == ["x.y", "x.z", "x.y"]


def test_a_layer_violation_is_found():
    graph = {
        "imlbench.core.seeds": {"imlbench.views.base": 3},  # core above its layer
        "imlbench.core.registry": {"imlbench.core.errors": 1},  # fine
        "imlbench.store.records": {"imlbench.scoring.runs": 40},  # a function-level import counts alike
        "imlbench.outputs.report": {"imlbench.harness.diagnostics": 7},  # same floor, kept apart
        "imlbench.harness.runner": {"imlbench.learners.forest": 9, "imlbench.store.records": 2},
        "imlbench.api": {"imlbench.execution.engines": 1, "imlbench.store.records": 1},  # the top may
    }
    found = violations(graph)
    assert [f.partition(":")[0] for f in found] == [
        "imlbench.core.seeds imports imlbench.views.base (line 3)",
        "imlbench.harness.runner imports imlbench.learners.forest (line 9)",
        "imlbench.outputs.report imports imlbench.harness.diagnostics (line 7)",
        "imlbench.store.records imports imlbench.scoring.runs (line 40)",
    ]
    assert "store sits below scoring" in found[3] and "outputs read records" in found[2]
    assert not within("imlbench.api", ROOT) and within("imlbench.core.seeds", "imlbench.core")
    assert not within("imlbench.coredump", "imlbench.core")


def test_a_function_level_import_that_closes_a_circle_through_a_package_init_is_found():
    """store.records imports scoring.runs inside a function; scoring's `__init__` imports verdicts,
    which imports store.records: no two modules import each other, yet importing one runs the other."""
    sources = {
        "imlbench.store": ("", True),
        "imlbench.store.records": ("def recompute():\n    from imlbench.scoring.runs import run_scores\n", False),
        "imlbench.scoring": ("from imlbench.scoring.verdicts import summarize\n", True),
        "imlbench.scoring.runs": ("import math\n", False),
        "imlbench.scoring.verdicts": ("from imlbench.store.records import Record\n", False),
    }
    graph = graph_of(sources)
    assert "imlbench.scoring" in graph["imlbench.store.records"]  # the package `__init__` runs first
    assert find_cycle(graph) == [
        "imlbench.scoring",
        "imlbench.scoring.verdicts",
        "imlbench.store.records",
        "imlbench.scoring",
    ]
    sources["imlbench.store.records"] = ("import math\n", False)
    assert find_cycle(graph_of(sources)) is None


def test_every_module_is_in_a_layer():
    assert [name for name in MODULES if layer_of(name) is None] == []


def test_importing_the_protocol_loads_no_harness_scoring_or_heavy_library():
    """A plugin's `import imlbench.protocol` stays cheap: the package `__init__` is lazy."""
    code = (
        "import sys, imlbench.protocol; print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('imlbench', 'scipy', 'tqdm', 'pandas', 'torch', 'sklearn'))))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == [
        "imlbench",
        "imlbench.core",
        "imlbench.core.protocol",
        "imlbench.core.viewdata",
        "imlbench.protocol",
    ]


def test_the_architecture_page_draws_the_layers_of_this_table():
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    assert "\n".join(architecture_lines()) in page, "regenerate with: python tests/test_layout.py"


if __name__ == "__main__":  # redraw the layer picture of docs/architecture.md from LAYERS
    page = PACKAGE.parent / "docs" / "architecture.md"
    head, _, rest = page.read_text().partition("```\n")
    _, _, tail = rest.partition("```\n")
    page.write_text(head + "```\n" + "\n".join(architecture_lines()) + "\n```\n" + tail)
