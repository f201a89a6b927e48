"""One registry for every kind of plugin: learners, tasks, views, pipelines and diagnostics.

Each kind is an entry-point group (`imlbench.learners`, ..., `imlbench.views`). The built-ins are
listed in imlbench's own `pyproject.toml` exactly like a plugin's, and a group is read lazily, on
the first lookup, so every process (the driver, a worker, the learner's own process) finds the same
objects by the same names without having imported the module that defines them. `register` adds an
object in one process only (a notebook, a test); whatever must reach other processes registers
through an entry point.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from imlbench.core.errors import ImlbenchError, did_you_mean


@dataclass
class Registry:
    """Names -> objects of one kind, checked against a base class on load.

    `base` is "module:Class", imported at the first check so that this module stays at the bottom
    of the package. `instances`: the registry holds instances (views, pipelines, diagnostics; an
    entry point naming a class is instantiated once); otherwise it holds classes (learners, tasks).
    """

    kind: str
    base: str
    instances: bool = False
    public: str = ""  # the base class's name as users import it, for messages
    _loaded: dict[str, Any] = field(default_factory=dict, repr=False)
    _local: dict[str, Any] = field(default_factory=dict, repr=False)
    _points: tuple[tuple[str, ...], dict[str, metadata.EntryPoint]] | None = field(default=None, repr=False)

    @property
    def group(self) -> str:
        return f"imlbench.{self.kind}s"

    def entry_points(self) -> dict[str, metadata.EntryPoint]:
        """The group's entry points, read once per import path: scanning every installed
        distribution takes milliseconds, and `view_of` asks on every fit and predict."""
        path = tuple(sys.path)
        if self._points is None or self._points[0] != path:
            self._points = (path, {ep.name: ep for ep in metadata.entry_points(group=self.group)})
        return self._points[1]

    def names(self) -> list[str]:
        """Every registered name, in registration order for local ones, then sorted entry points."""
        return list(self._local) + sorted(set(self.entry_points()) - set(self._local))

    def __contains__(self, name: object) -> bool:
        return name in self._local or name in self.entry_points()

    def get(self, name: str) -> Any:
        """The object registered as `name`, or one ImlbenchError line with the valid names."""
        if name in self._local:
            return self._local[name]
        if name in self._loaded:
            return self._loaded[name]
        points = self.entry_points()
        if name not in points:
            valid = self.names()
            raise ImlbenchError(
                f"unknown {self.kind} {name!r}; valid: {', '.join(valid) or '(none)'}{did_you_mean(name, valid)}"
            )
        try:
            obj = points[name].load()
        except Exception as exc:  # a plugin that fails to import
            raise ImlbenchError(f"{self.kind} {name!r} failed to load: {type(exc).__name__}: {exc}") from exc
        self._loaded[name] = obj = self.checked(name, obj)
        return obj

    def items(self) -> list[tuple[str, Any]]:
        return [(name, self.get(name)) for name in self.names()]

    def register(self, name: str, obj: Any) -> Any:
        """Add an object in this process only; the same name for another kind of object is an error."""
        obj = self.checked(name, obj)
        known = self._local.get(name) or (self.get(name) if name in self.entry_points() else None)
        if known is not None and type(known) is not type(obj) and known is not obj:
            raise ValueError(f"{self.kind} {name!r} is already registered ({_describe(known)})")
        self._local[name] = obj
        return obj

    def unregister(self, name: str) -> None:
        self._local.pop(name, None)
        self._loaded.pop(name, None)

    def checked(self, name: str, obj: Any) -> Any:
        """`obj` if it is of the registry's base (a class is instantiated for an instance registry)."""
        base = self.base_class()
        if self.instances and isinstance(obj, type) and issubclass(obj, base):
            obj = obj()
        ok = isinstance(obj, base) if self.instances else isinstance(obj, type) and issubclass(obj, base)
        if not ok:
            raise ImlbenchError(
                f"{self.kind} {name!r} is {_describe(obj)}, not "
                f"{'an instance' if self.instances else 'a subclass'} of {self.public or self.base.replace(':', '.')}"
            )
        return obj

    def base_class(self) -> type:
        module, _, qualname = self.base.partition(":")
        return getattr(importlib.import_module(module), qualname)


def _describe(obj: Any) -> str:
    return obj.__name__ if isinstance(obj, type) else f"a {type(obj).__name__} object"


LEARNERS = Registry("learner", "imlbench.core.protocol:Learner", public="imlbench.protocol.Learner")
TASKS = Registry("task", "imlbench.core.protocol:Task", public="imlbench.protocol.Task")
VIEWS = Registry("view", "imlbench.views.base:View", instances=True)
PIPELINES = Registry("pipeline", "imlbench.core.pipelines:Pipeline", instances=True)
DIAGNOSTICS = Registry("diagnostic", "imlbench.harness.diagnostics:Diagnostic", instances=True)
REGISTRIES = {r.kind: r for r in (LEARNERS, TASKS, VIEWS, PIPELINES, DIAGNOSTICS)}
