"""What the learner and task checks share: the list of problems, building a plugin, the parameter contract."""

from __future__ import annotations

import copy
import inspect
from dataclasses import fields, is_dataclass
from typing import Any

import numpy as np
import pandas as pd

from imlbench.core.errors import one_line
from imlbench.core.protocol import Parameterized
from imlbench.core.specs import resolve

# Built-in tasks at the smallest sizes they accept: every stage and subset present, seconds per check.


PARAMS = "the constructor takes hyperparameters only and get_params() round-trips (scikit-learn's contract)"


class Problems(dict):
    """Check name -> its first failure: one line per check, however often it fails."""

    def add(self, check: str, what: Any, contract: str, when: str = "") -> None:
        """Note a failure (nothing where `what` is empty). Returns None, what a broken step returns."""
        if what:
            self.setdefault(check, f"{check}: {what}{' ' * bool(when)}{when}; {contract}")


def _build(kind: str, plugin: Any, params: dict[str, Any] | None) -> Any:
    """An instance from an instance, a class or a name (built-in tasks at their tiny size)."""
    if isinstance(plugin, str):
        overrides = params if params is not None else TINY_TASKS.get(plugin, {}) if kind == "task" else {}
        return resolve(kind, plugin, overrides).build()
    return plugin(**(params or {})) if isinstance(plugin, type) else plugin


def _fresh(plugin: Parameterized) -> Any:
    """An unfitted copy with the same parameters (a deep copy where the constructor cannot rebuild it)."""
    try:
        return type(plugin)(**plugin.get_params())
    except Exception:
        return copy.deepcopy(plugin)


def _built(kind: str, plugin: Any, params: dict[str, Any] | None, problems: Problems) -> Any:
    """The plugin, built, its parameters checked and validated; None where nothing could run it."""
    try:
        plugin = _build(kind, plugin, params)
    except Exception as exc:
        return problems.add("constructor", f"cannot build the {kind}: {_error(exc)}", PARAMS)
    if _params_round_trip(kind, plugin, problems) is None:
        return None
    try:
        plugin.validate()
    except Exception as exc:
        return problems.add("validate", f"rejects its own parameters: {_error(exc)}", PARAMS)
    return plugin


def _params_round_trip(kind: str, plugin: Parameterized, problems: Problems) -> dict[str, Any] | None:
    """Constructor arguments with defaults and no work done in it; get_params rebuilds an equal
    plugin and set_params takes it back. The parameters; None where get_params cannot rebuild it."""
    init = type(plugin).__init__
    for p in list(inspect.signature(init).parameters.values())[1:] if init is not object.__init__ else []:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            problems.add("constructor", f"takes {'*' if p.kind == p.VAR_POSITIONAL else '**'}{p.name}", PARAMS)
        elif p.default is p.empty:
            problems.add("constructor", f"parameter {p.name!r} has no default (plugins are built by name)", PARAMS)
    try:
        params = plugin.get_params()
        clone = type(plugin)(**params)
    except Exception as exc:
        return problems.add("get_params", f"cannot rebuild the {kind} from get_params(): {_error(exc)}", PARAMS)
    fitted = ", ".join(sorted(k for k in vars(clone) if k.endswith("_") and not k.startswith("_")))
    problems.add("constructor", fitted and f"sets fitted attribute(s) {fitted}: the work belongs in fit", PARAMS)
    again = clone.get_params()
    problems.add("get_params", not _same(again, params) and f"a copy reports {again!r}, not {params!r}", PARAMS)
    try:
        other = copy.deepcopy(plugin)
        other.set_params(**params)
        problems.add("set_params", not _same(other.get_params(), params) and "changed the parameters", PARAMS)
    except Exception as exc:
        problems.add("set_params", f"set_params(**get_params()) failed: {_error(exc)}", PARAMS)
    return params


# --- helpers
def _same(a: Any, b: Any) -> bool:
    """Deep equality over dataclasses, frames, arrays and containers (where `==` does not answer)."""
    if is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(_same(getattr(a, f.name), getattr(b, f.name)) for f in fields(a))
    if isinstance(a, pd.DataFrame):
        return isinstance(b, pd.DataFrame) and a.equals(b) and a.dtypes.equals(b.dtypes)  # categories too
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and a.dtype.kind == b.dtype.kind and bool(np.all((a == b) | ((a != a) & (b != b))))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b) or bool(a != a and b != b)  # NaN equals itself here
    except Exception:
        return a is b


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {one_line(exc)[:200]}"


def _span(space: np.ndarray) -> str:
    return f"{len(space)} ids in {space.min()}..{space.max()}" if len(space) else "none"


# Built-in tasks at the smallest sizes they accept: every stage and subset present, seconds per check.
TINY_TASKS: dict[str, dict[str, Any]] = {
    "synthetic-defs": {"n_entities": 20},
    "tagged-digits": {"n_entities": 20},
    "set-inclusion": {"n_variables": 20},
    "synthetic-defs-text": {"n_entities": 20},
}


class ConformanceError(AssertionError):
    """A plugin broke the contract; the message holds one line per failed check."""


def _raise(plugin: Any, problems: list[str]) -> None:
    if problems:
        name = plugin if isinstance(plugin, str) else getattr(plugin, "__name__", type(plugin).__name__)
        raise ConformanceError(f"{name} fails {len(problems)} conformance check(s):\n" + "\n".join(problems))
