"""Names -> fully parameterized learners and tasks (`Spec`).

A name resolves, in this order, to: a path to a .toml spec; a suite spec (`learners/NAME.toml`,
`tasks/NAME.toml`, shipped in the wheel and read from a checkout); a name of the registry
(`core.registry`: entry points, where built-ins register exactly like plugins), with its defaults;
or `package.module:Class`.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import math
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from imlbench.core.errors import ImlbenchError, did_you_mean
from imlbench.core.pipelines import pipeline_names
from imlbench.core.registry import REGISTRIES, Registry

KINDS = ("learner", "task")
# Keys a learner/task spec file may hold. `timeout` (seconds) is a learner's default wall-clock limit
# per run; like `description` it is not part of a run's identity. A learner's `[pipelines.NAME]`
# tables set parameters for that pipeline's runs only (a one-stage budget apart from stage 1's).
SPEC_KEYS = {
    "learner": ("name", "version", "description", "learner", "params", "timeout", "search", "pipelines"),
    "task": ("name", "version", "description", "task", "params"),
}


@dataclass(frozen=True)
class Spec:
    """A resolved, fully parameterized learner or task. Its dict form is part of a run's key."""

    kind: str
    name: str
    target: str
    params: dict[str, Any]
    version: int = 1
    source: str = field(default="", compare=False)
    timeout: float | None = field(default=None, compare=False)  # seconds; a learner spec's default limit
    code: str = ""  # the version of its class's code (`code_version`): part of a run's key, not of to_dict
    neutral: dict[str, Any] = field(default_factory=dict, compare=False)  # the class's `identity_neutral`
    pipelines: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False)  # [pipelines.NAME] tables

    def for_pipeline(self, pipeline: str) -> Spec:
        """The spec a run of this pipeline gets: its `[pipelines.NAME]` parameters applied (those the
        user set are left out of the tables when resolving: the user's value wins)."""
        if not self.pipelines.get(pipeline):
            return self
        return replace(self, params={**self.params, **self.pipelines[pipeline]})

    def build(self):
        return load_target(self.kind, self.target)(**self.params)

    def to_dict(self) -> dict[str, Any]:
        """The spec as part of a run's identity: parameters at their `identity_neutral` value are left out."""
        params = {k: v for k, v in self.params.items() if not (k in self.neutral and self.neutral[k] == v)}
        return {"name": self.name, "target": self.target, "version": self.version, "params": params}


def check_keys(what: str, raw: dict[str, Any], valid: Iterable[str]) -> None:
    """A key the reader does not know is a typo that would silently run defaults: reject it."""
    valid = list(valid)
    for key in raw:
        if key not in valid:
            raise ImlbenchError(f"unknown key {key!r} in {what}; valid: {', '.join(valid)}{did_you_mean(key, valid)}")


def suite_dirs(kind: str) -> list[Path]:
    """Folders holding the suite's .toml specs: the checkout's, then the copy inside the wheel."""
    folder = f"{kind}s"
    candidates = [Path(__file__).resolve().parents[2] / folder]
    try:
        candidates.append(Path(str(resources.files("imlbench") / "suite" / folder)))
    except (ModuleNotFoundError, TypeError):
        pass
    return [d for d in candidates if d.is_dir()]


def suite_specs(kind: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in suite_dirs(kind):
        for path in sorted(folder.glob("*.toml")):
            found.setdefault(path.stem, path)
    return found


def registry(kind: str) -> Registry:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    return REGISTRIES[kind]


def available(kind: str) -> list[str]:
    return sorted(set(suite_specs(kind)) | set(registry(kind).names()))


def load_target(kind: str, target: str) -> type:
    """A registered name or `package.module:Class` -> the class, checked to be a Learner/Task."""
    if target in registry(kind) or ":" not in target:
        return registry(kind).get(target)
    module, _, qualname = target.partition(":")
    try:
        cls = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
    except Exception as exc:  # a plugin that fails to import
        raise ImlbenchError(f"{kind} {target!r} failed to load: {type(exc).__name__}: {exc}") from exc
    return registry(kind).checked(target, cls)


def code_version(kind: str, target: str, cls: type) -> str:
    """What version of a class's code runs: an entry point's distribution and version (for the
    built-ins, imlbench's own package version, which an editable install never bumps), else a hash
    of the source file of the class's module (`package.module:Class`)."""
    point = registry(kind).entry_points().get(target)
    if point is not None:
        dist = getattr(point, "dist", None)
        return f"{dist.name}=={dist.version}" if dist is not None else "unknown"
    try:
        source = Path(inspect.getfile(sys.modules[cls.__module__])).read_bytes()
    except (KeyError, TypeError, OSError):  # a class without a source file (built in a notebook)
        return "unknown"
    return "sha256:" + hashlib.sha256(source).hexdigest()[:16]


def _read_toml(kind: str, path: Path) -> dict[str, Any]:
    try:
        spec = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ImlbenchError(f"cannot read {kind} spec {path}: {exc}") from exc
    if kind not in spec:
        raise ImlbenchError(f'{kind} spec {path} has no `{kind} = "..."` line naming its {kind}')
    check_spec(kind, spec, f"{kind} spec {path}")
    return spec


def _text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# what each spec key must hold: (test, how to say it)
SPEC_TYPES = {
    "name": (_text, "a non-empty string"),
    "description": (lambda v: isinstance(v, str), "a string"),
    "version": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "a positive integer"),
    "params": (lambda v: isinstance(v, dict), "a table ([params])"),
    "timeout": (lambda v: _number(v) and 0 < v < math.inf, "a positive, finite number of seconds"),
    "search": (lambda v: isinstance(v, dict), "a table ([search]) of parameter = {low, high[, log]} or {choices}"),
    "pipelines": (
        lambda v: isinstance(v, dict) and all(isinstance(t, dict) for t in v.values()),
        "tables [pipelines.NAME] of parameter = value",
    ),
    "learner": (_text, "a non-empty string"),
    "task": (_text, "a non-empty string"),
}


def check_spec(kind: str, spec: dict[str, Any], what: str) -> None:
    """Every key known and of the right type, so a typo never runs defaults under the user's name."""
    check_keys(what, spec, SPEC_KEYS[kind])
    for key, value in spec.items():
        test, expected = SPEC_TYPES[key]
        if not test(value):
            raise ImlbenchError(f"bad {key!r} in {what}: expected {expected}, got {value!r}")


def _raw_spec(kind: str, name: str) -> tuple[dict[str, Any], str]:
    """A name -> (its spec as written, where it came from), in the resolution order above."""
    specs = suite_specs(kind)
    if name.endswith(".toml"):
        if not Path(name).is_file():
            raise ImlbenchError(f"{kind} spec file {name!r} does not exist")
        return _read_toml(kind, Path(name)), name
    if name in specs:
        return _read_toml(kind, specs[name]), str(specs[name])
    if name in registry(kind) or ":" in name:
        return {kind: name}, name
    valid = available(kind)
    raise ImlbenchError(
        f"unknown {kind} {name!r}; valid: {', '.join(valid)} "
        f"(or a .toml path, or package.module:Class){did_you_mean(name, valid)}"
    )


# classes this process must not import, by (kind, name): a plugin learner in the driver, which knows
# it from a throw-away process (`imlbench.harness.probe`) as its parameter defaults
STAND_INS: dict[tuple[str, str], type] = {}


def target_class(kind: str, name: str) -> type:
    """The class a name resolves to, without building it (to know which parameters it takes)."""
    return STAND_INS.get((kind, name)) or load_target(kind, _raw_spec(kind, name)[0][kind])


def resolve(kind: str, name: str, overrides: dict[str, Any] | None = None) -> Spec:
    """Resolve a name to a Spec with every parameter filled in and checked."""
    raw, source = _raw_spec(kind, name)
    path = Path(name)
    cls = load_target(kind, raw[kind])
    target = raw[kind] if raw[kind] in registry(kind) else f"{cls.__module__}:{cls.__qualname__}"
    display = raw.get("name", path.stem if name.endswith(".toml") else name)
    params = cls.param_defaults()
    params.update(check_params(kind, display, cls, raw.get("params", {})))
    params.update(check_params(kind, display, cls, overrides or {}))
    per_pipeline = {}
    for pipeline, table in raw.get("pipelines", {}).items():
        if pipeline not in (valid := pipeline_names()):
            raise ImlbenchError(f"unknown pipeline {pipeline!r} in [pipelines] of {source}; valid: {', '.join(valid)}")
        table = check_params(kind, display, cls, table)
        per_pipeline[pipeline] = {k: v for k, v in table.items() if k not in (overrides or {})}
    if overrides:  # a variant is its own leaderboard row: name it by what was changed
        display += "[" + ",".join(f"{k}={v}" for k, v in sorted(overrides.items())) + "]"
    spec = Spec(
        kind,
        display,
        target,
        params,
        raw.get("version", 1),
        source,
        raw.get("timeout"),
        code_version(kind, target, cls),
        dict(getattr(cls, "identity_neutral", {})),
        per_pipeline,
    )
    for variant in [spec, *(spec.for_pipeline(pipeline) for pipeline in per_pipeline)]:
        validate(variant)
    return spec


def search_space_of(name: str) -> dict[str, Any]:
    """What `imlbench search` may vary for a learner: its spec's [search] table, else its class's."""
    raw, _ = _raw_spec("learner", name)
    stand_in = STAND_INS.get(("learner", name))  # a plugin's, as its probe found it
    if "search" in raw or stand_in is not None:
        return raw["search"] if "search" in raw else stand_in.search_space
    return resolve("learner", name).build().search_space


def validate(spec: Spec) -> None:
    try:
        spec.build().validate()
    except ImlbenchError:
        raise
    except (TypeError, ValueError) as exc:
        raise ImlbenchError(f"bad parameter for {spec.kind} {spec.name!r}: {exc}") from exc


def check_params(kind: str, name: str, cls: type, params: dict[str, Any]) -> dict[str, Any]:
    """Reject unknown names and values of the wrong type (judged by the default's type)."""
    defaults = cls.param_defaults()
    checked = {}
    for key, value in params.items():
        if key not in defaults:
            raise ImlbenchError(
                f"unknown parameter {key!r} for {kind} {name!r}; "
                f"valid: {', '.join(defaults) or '(none)'}{did_you_mean(key, defaults)}"
            )
        checked[key] = coerce(kind, name, key, value, defaults[key])
    return checked


# the largest magnitude of an integer parameter: what a C int holds, as the libraries below take them
INT_LIMIT = 2**31 - 1


def _too_large(value: Any) -> bool:
    """An integer (in a list or table too) past INT_LIMIT: an overflow deep in a library, or a run
    that never ends, unless refused here."""
    if isinstance(value, (list, tuple)):
        return any(_too_large(v) for v in value)
    if isinstance(value, dict):
        return any(_too_large(v) for v in value.values())
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_LIMIT


def coerce(kind: str, name: str, key: str, value: Any, default: Any) -> Any:
    if _too_large(value):
        raise ImlbenchError(
            f"bad value for {kind} {name!r} parameter {key!r}: {value!r} is out of range; "
            f"integer parameters lie within ±{INT_LIMIT} (2**31 - 1)"
        )
    if default is None or value is None:
        return value
    expected = type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected in (list, tuple) and isinstance(value, (list, tuple)):
        return expected(value)
    if isinstance(value, expected) and (expected is bool or not isinstance(value, bool)):
        return value
    raise ImlbenchError(
        f"bad value for {kind} {name!r} parameter {key!r}: expected "
        f"{expected.__name__}, got {value!r} ({type(value).__name__})"
    )


def parse_value(text: str) -> Any:
    """A command-line value as TOML (`3`, `0.5`, `true`, `[1, 2]`), else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_pair(text: str) -> tuple[str, Any]:
    """`key=value` from the command line -> (key, parsed value)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ImlbenchError(f"bad --param {text!r}; expected key=value (e.g. n_entities=200)")
    return key.strip(), parse_value(value.strip())


def split_overrides(pairs: list[tuple[str, Any]], task_cls: type, learner_cls: type) -> tuple[dict, dict]:
    """(key, value) pairs -> (task overrides, learner overrides).

    `task.key` and `learner.key` say where a parameter goes; a bare key goes to whichever of the
    two has it (an error if both or neither do).
    """
    task_over: dict[str, Any] = {}
    learner_over: dict[str, Any] = {}
    task_params, learner_params = task_cls.param_defaults(), learner_cls.param_defaults()
    for key, value in pairs:
        if key.startswith("task."):
            task_over[key[5:]] = value
        elif key.startswith("learner."):
            learner_over[key[8:]] = value
        elif key in task_params and key in learner_params:
            raise ImlbenchError(
                f"parameter {key!r} exists for both task and learner; write task.{key}= or learner.{key}="
            )
        elif key in task_params:
            task_over[key] = value
        elif key in learner_params:
            learner_over[key] = value
        else:
            valid = sorted(set(task_params) | set(learner_params))
            raise ImlbenchError(f"unknown parameter {key!r}; valid: {', '.join(valid)}{did_you_mean(key, valid)}")
    return task_over, learner_over
