"""What the driver knows of a plugin learner, found in a throw-away process.

Resolving a learner spec imports its class, and checking it builds the learner: a plugin that
patches scikit-learn, numpy or imlbench when imported would patch the driver, and every worker
forked from a process that imported it. So the driver resolves imlbench's own learners only
(`trusted`); for any other, a fresh Python (`probe`) resolves, validates and describes it and answers
with plain data: the spec, the views the learner reads, its tags, its class's relative_cost, and
which heavy libraries it imported (the workers import those, never the plugin).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys
from typing import Any

from imlbench.core.errors import ImlbenchError
from imlbench.core.protocol import LearnerTags
from imlbench.core.registry import LEARNERS, Registry
from imlbench.core.specs import STAND_INS, Spec, _raw_spec, load_target, resolve, split_overrides, target_class
from imlbench.harness import processes, sandbox
from imlbench.harness.remote import plain_loads

PROBE = "import json, sys; sys.path[:] = json.loads(sys.argv[1]); from imlbench.harness.probe import answer; answer()"
FACTS: dict[tuple[str, str], dict[str, Any]] = {}  # (target, params) of a plugin learner -> what the probe found
COSTS: dict[str, float] = {}  # target -> its class's relative_cost


def module_of(target: str, registry: Registry = LEARNERS) -> str | None:
    """The module of a target (a learner's, or of `registry`) that is imlbench's own (an entry point
    of imlbench's, in a module of imlbench), without importing it; None for any other."""
    point = registry.entry_points().get(target)
    dist = getattr(point, "dist", None)
    if point is None or not point.module.startswith("imlbench.") or (dist is not None and dist.name != "imlbench"):
        return None
    return point.module


def trusted(name: str, pairs: list[tuple[str, Any]] = ()) -> bool:
    """Whether resolving a learner name runs imlbench's code only (a learner of imlbench's wrapping,
    like tag-blind's `base`, only such learners), or a learner registered in this process."""
    try:
        raw = _raw_spec("learner", name)[0]
    except ImlbenchError:
        return True  # resolving it fails before any import: the error is raised where it was
    if raw["learner"] in LEARNERS._local:  # noqa: SLF001 - registered here, so imported here already
        return True
    bases = [v for k, v in [*raw.get("params", {}).items(), *pairs] if k in ("base", "learner.base")]
    return module_of(raw["learner"]) is not None and all(b == name or trusted(str(b)) for b in bases)


def resolve_pair(task: str, learner: str, pairs: list[tuple[str, Any]], only_where_known: bool) -> tuple[dict, dict]:
    """(task overrides, learner overrides) of a named pair. With `only_where_known`, a parameter
    applies where it exists (a suite-wide one)."""
    task_cls, learner_cls = target_class("task", task), target_class("learner", learner)
    if only_where_known:
        known = {**task_cls.param_defaults(), **learner_cls.param_defaults()}
        pairs = [(k, v) for k, v in pairs if k.split(".")[-1] in known]
    return split_overrides(pairs, task_cls, learner_cls)


def probe(queries: list[tuple]) -> list[dict[str, Any]]:
    """Answers from a throw-away process: ("pair", task, learner, pairs, only_where_known) ->
    {"task_over", "spec", "views", "tags", "cost"} or {"error"[, "task_over"]}; ("cost", target) -> {"cost"}."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(sys.path)], input=pickle.dumps(queries), stdout=subprocess.PIPE
    )
    if done.returncode or not done.stdout:
        names = sorted({q[2] if q[0] == "pair" else q[1] for q in queries})
        raise ImlbenchError(
            f"resolving learner {', '.join(names)} ended its process (exit status {done.returncode}); "
            "its error is printed above"
        )
    answers, heavy = plain_loads(done.stdout)
    processes.preload(heavy)
    return answers


def answer() -> None:
    """The throw-away process: answer the queries on stdin with plain data on stdout (what a plugin
    prints goes to stderr), and leave no process behind."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sandbox.prctl(sandbox.PR_SET_CHILD_SUBREAPER, 1)
    answers = [_answer(query) for query in pickle.loads(sys.stdin.buffer.read())]
    processes.kill_tree(os.getpid())
    out.write(pickle.dumps((answers, sorted({m.split(".")[0] for m in sys.modules} & set(processes.HEAVY)))))
    out.flush()
    os._exit(0)  # no exit handler of a plugin's runs


def _answer(query: tuple) -> dict[str, Any]:
    found: dict[str, Any] = {}
    try:
        if query[0] == "cost":
            return {"cost": float(load_target("learner", query[1]).tags.relative_cost)}
        _, task, name, pairs, only_where_known = query
        found["task_over"], learner_over = resolve_pair(task, name, pairs, only_where_known)
        spec = resolve("learner", name, learner_over)
        learner = spec.build()
        found.update(spec=dataclasses.asdict(spec), views=list(learner.supported_views()))
        found.update(tags=dataclasses.asdict(learner.get_tags()), cost=float(type(learner).tags.relative_cost))
        found.update(defaults=type(learner).param_defaults(), search=dict(learner.search_space))
    except ImlbenchError as exc:
        found["error"] = str(exc)
    except Exception as exc:  # noqa: BLE001 - a plugin's own failure, reported as one line
        found["error"] = f"learner {query[-3]!r} failed to load: {type(exc).__name__}: {exc}"
    return found


def learner_spec(name: str, found: dict[str, Any]) -> Spec:
    """The spec of a probe's answer for a learner name, its facts kept for `described`,
    `relative_costs` and `target_class` (a stand-in that knows the class's parameter defaults)."""
    spec, defaults = Spec(**found["spec"]), found["defaults"]
    FACTS[(spec.target, repr(spec.params))], COSTS[spec.target] = found, found["cost"]
    stand_in = {"param_defaults": staticmethod(lambda: dict(defaults)), "search_space": found["search"]}
    STAND_INS[("learner", name)] = type(name, (), stand_in)
    return spec


class Described:
    """A plugin learner as `plan` checks it: its views and tags as the probe found them."""

    def __init__(self, found: dict[str, Any]):
        self.found = found

    def get_tags(self):
        return LearnerTags.from_dict(self.found["tags"])

    def supported_views(self) -> tuple[str, ...]:
        return tuple(self.found["views"])

    def supports(self, capability: str) -> bool:
        return bool(getattr(self.get_tags(), capability, False))


def described(spec: Spec) -> Any:
    """A learner for `plan` to check: a plugin's as the probe described it, imlbench's built."""
    found = FACTS.get((spec.target, repr(spec.params)))
    return Described(found) if found else spec.build()


def relative_costs(specs: list[Spec]) -> dict[str, float]:
    """target -> its class's `relative_cost`: imlbench's read here, a plugin's found by the probe."""
    for target in {s.target for s in specs} - set(COSTS):
        if module_of(target) or target in LEARNERS._local:  # noqa: SLF001
            try:
                COSTS[target] = float(load_target("learner", target).tags.relative_cost)
            except ImlbenchError:
                COSTS[target] = 1.0
    missing = sorted({s.target for s in specs} - set(COSTS))
    if missing:
        COSTS.update(zip(missing, (a.get("cost", 1.0) for a in probe([("cost", t) for t in missing]))))
    return COSTS
