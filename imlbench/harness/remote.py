"""A run's learner in its own process: the answer key never lives where the learner's code runs.

`RemoteLearner` is the harness's handle on a learner that executes in a fresh child process (forked
from the fork server of `imlbench.harness.processes`, in a process group of its own). It offers what
the runner uses of a `Learner` (get_params/set_params, get_tags, supports, supported_views,
fit/continue_fit as generators whose next() advances the child's generator by one checkpoint,
predict, run_info_) as messages over a pipe. The child receives training data and target-free
queries only; the `Evaluator` stays in the harness, so no stack walk or heap scan in the learner can
find the targets, and whatever the learner patches in its process dies with it.

The harness reads the child's replies with an unpickler that builds only plain data and numpy
arrays: a learner cannot make the harness run code by sending it a crafted object.

Diagnostics (`imlbench.harness.diagnostics`) read a learner's internals (gradients, hidden states)
and still run the learner in the harness process.
"""

from __future__ import annotations

import builtins
import dataclasses
import io
import os
import pickle
import resource
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np

from imlbench.core.errors import ImlbenchError
from imlbench.core.protocol import LearnerTags
from imlbench.harness import processes
from imlbench.harness.processes import LearnerDied


class LearnerError(Exception):
    """Stands for an exception of a learner's own class, raised in its process (named alike)."""


# A supervised worker sets this to tell its supervisor each learner process group it starts, so
# that a time limit kills the group along with the worker.
announce: Callable[[int], None] | None = None

SAFE_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.numeric", "_frombuffer"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "complex"),
    ("builtins", "slice"),
    ("builtins", "range"),
    ("builtins", "bytearray"),
    ("collections", "OrderedDict"),
}


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"the learner process sent a {module}.{name}; the harness accepts plain data and numpy arrays only"
        )


def plain_loads(data: bytes) -> Any:
    return _PlainUnpickler(io.BytesIO(data)).load()


# --------------------------------------------------------------------------------------------
# the harness side


class RemoteLearner:
    """The harness's proxy of one run's learner, built from its spec in a fresh child process."""

    def __init__(self, spec: Any, memory_limit: int | None = None):
        ctx = processes.context()
        self._conn, child_conn = ctx.Pipe()
        alive_r, self._alive = ctx.Pipe(duplex=False)  # EOF in the child: the harness is gone
        self._proc = ctx.Process(target=serve, args=(child_conn, alive_r), name="imlbench-learner")
        with processes.children_allowed():
            self._proc.start()
        child_conn.close()
        alive_r.close()
        self._why: str | None = None  # set by the memory watch before it kills the group
        self._busy, self._watch, self.pgid, self._tags = True, None, None, None
        try:
            self.pgid = self._reply()
            if announce:
                announce(self.pgid)
            if memory_limit:
                self._watch = processes.MemoryWatch(
                    lambda: processes.group_rss(self.pgid), memory_limit, self._exceeded
                )
            if self._call("setup", list(sys.path), dict(os.environ), os.getcwd(), spec):
                self.predict_scores = self._predict_scores  # offered only where the learner has it
        except BaseException:
            self.close()
            raise

    def _exceeded(self, why: str) -> None:
        self._why = why
        processes.kill_group(self.pgid)

    # -- messages

    def _call(self, *message: Any) -> Any:
        if self._busy:
            raise LearnerDied("the learner process was interrupted mid-call")
        self._busy = True
        try:
            self._conn.send(message)
        except (BrokenPipeError, ConnectionResetError, EOFError):
            pass  # it died: _reply says how
        return self._reply()

    def _reply(self) -> Any:
        """The child's answer (its exception raised here), or LearnerDied when it ended instead."""
        while True:
            ready = wait([self._conn, self._proc.sentinel])
            if self._conn in ready:
                try:
                    kind, *rest = plain_loads(self._conn.recv_bytes())
                except (EOFError, OSError):
                    raise LearnerDied(self._death()) from None
                self._busy = False
                if kind == "error":
                    raise rebuild(*rest)
                return rest[0]
            if not self._proc.is_alive():
                raise LearnerDied(self._death())

    def _death(self) -> str:
        self._proc.join(5)
        self._proc.kill()
        if self.pgid:
            processes.kill_group(self.pgid)
        if self._why:
            return self._why
        code = self._proc.exitcode
        if code is not None and code < 0:
            return f"the worker process died (killed by signal {signal.Signals(-code).name})"
        return f"the worker process died (exit status {code})"

    # -- the Learner interface the runner uses

    def get_params(self) -> dict[str, Any]:
        return self._call("call", "get_params", (), {})

    def set_params(self, **params: Any) -> RemoteLearner:
        self._call("call", "set_params", (), params)
        return self

    def get_tags(self) -> LearnerTags:
        if self._tags is None:  # plain data over the pipe, the tags object rebuilt here
            self._tags = LearnerTags(**self._call("tags"))
        return self._tags

    def supports(self, capability: str) -> bool:
        return bool(getattr(self.get_tags(), capability, False))

    def supported_views(self) -> tuple[str, ...]:
        return tuple(self._call("call", "supported_views", (), {}))

    @property
    def run_info_(self) -> Any:
        return self._call("attribute", "run_info_")

    def peak_rss_mb(self) -> float:
        return self._call("peak_rss_mb")

    def fit(self, data: Any) -> Iterator[None]:
        return self._fit("fit", data)

    def continue_fit(self, data: Any) -> Iterator[None]:
        return self._fit("continue_fit", data)

    def _fit(self, method: str, data: Any) -> Iterator[None]:
        self._call("start", method, data)
        try:
            while self._call("next"):
                yield
        finally:
            if not self._busy and self._proc.is_alive():
                self._call("close")

    def predict(self, queries: Any) -> np.ndarray:
        return self._call("array", "predict", queries)

    def _predict_scores(self, queries: Any, candidates: np.ndarray) -> np.ndarray:
        return self._call("array", "predict_scores", queries, candidates)

    # -- lifetime

    def close(self) -> None:
        """Kill the learner's whole process group (nothing it started survives the run)."""
        if self._watch:
            self._watch.stop()
        if self.pgid:
            processes.kill_group(self.pgid)
        self._proc.kill()
        self._proc.join()
        self._conn.close()
        self._alive.close()

    def __enter__(self) -> RemoteLearner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def rebuild(module: str, name: str, args: tuple, message: str, trace: str) -> BaseException:
    """The learner's exception, as the harness can hold it: a builtin one as itself, an
    ImlbenchError as one, any other as a LearnerError of the same name; its traceback attached."""
    builtin = getattr(builtins, name, None)
    if module == "builtins" and isinstance(builtin, type) and issubclass(builtin, BaseException):
        try:
            exc = builtin(*args)
        except Exception:  # noqa: BLE001 - a builtin with unusual arguments: keep its text
            exc = builtin(message)
    elif name == "ImlbenchError":
        exc = ImlbenchError(message)
    else:
        exc = type(name, (LearnerError,), {"__module__": module})(message)
    exc.learner_traceback = trace
    return exc


# --------------------------------------------------------------------------------------------
# the learner side


def serve(conn: Connection, alive: Connection) -> None:
    """A learner process: lead a new process group, then build the learner and answer the harness
    until it goes (the pipe closes) or kills the group."""
    os.setsid()
    _die_with_harness(alive)
    conn.send(("ok", os.getpid()))
    learner, fit = None, None
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            os._exit(0)
        try:
            if message[0] == "setup":
                learner = _setup(*message[1:])
                reply = callable(getattr(learner, "predict_scores", None))
            elif message[0] in ("start", "next", "close"):
                fit, reply = _step(learner, fit, message)
            else:
                reply = _answer(learner, message)
            payload = pickle.dumps(("ok", reply), protocol=5)
        except BaseException as exc:  # noqa: BLE001 - everything the learner raises goes to the harness
            payload = pickle.dumps(
                (
                    "error",
                    type(exc).__module__,
                    type(exc).__qualname__,
                    _simple_args(exc),
                    str(exc),
                    "".join(traceback.format_exception(exc)),
                ),
                protocol=5,
            )
        conn.send_bytes(payload)


def _setup(path: list[str], environ: dict[str, str], cwd: str, spec: Any) -> Any:
    """The harness's import path (so its entry points are this process's too), environment and
    folder, then the learner, built from its spec."""
    sys.path[:] = path
    os.environ.clear()
    os.environ.update(environ)
    os.chdir(cwd)
    return spec.build()


def close_fit(fit: Iterator[None] | None) -> None:
    """Close a generator; a plain iterator (which `Iterator[None]` allows) has nothing to close."""
    closer = getattr(fit, "close", None)
    if callable(closer):
        closer()


def _step(learner: Any, fit: Iterator[None] | None, message: tuple) -> tuple[Iterator[None] | None, Any]:
    if message[0] == "start":
        return getattr(learner, message[1])(message[2]), None
    if message[0] == "close":
        close_fit(fit)
        return None, None
    try:
        next(fit)
    except StopIteration:
        return fit, False
    return fit, True


def _answer(learner: Any, message: tuple) -> Any:
    kind = message[0]
    if kind == "call":
        result = getattr(learner, message[1])(*message[2], **message[3])
        return None if message[1] == "set_params" else result
    if kind == "attribute":
        return getattr(learner, message[1], None)
    if kind == "array":
        predicted = np.asarray(getattr(learner, message[1])(*message[2:]))
        # an object array would carry arbitrary objects; the harness rejects its dtype as it is
        return np.full(predicted.shape, None, dtype=object) if predicted.dtype == object else predicted
    if kind == "tags":
        return dataclasses.asdict(learner.get_tags())
    if kind == "peak_rss_mb":
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    raise ValueError(f"unknown message {kind!r}")


def _simple_args(exc: BaseException) -> tuple:
    return tuple(a for a in exc.args if isinstance(a, (str, int, float, bool, type(None))))


def _die_with_harness(alive: Connection) -> None:
    """When the harness process goes (killed at a time limit, its driver killed), end this group."""

    def watch() -> None:
        try:
            alive.recv_bytes()
        except (EOFError, OSError):
            pass
        processes.kill_group(0)

    threading.Thread(target=watch, daemon=True, name="imlbench-harness-watch").start()
