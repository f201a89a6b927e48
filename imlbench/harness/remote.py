"""A run's learner in its own process: the answer key never lives where the learner's code runs.

`RemoteLearner` is the harness's handle on a learner executing in a process of its own, forked by the
worker this harness process was forked from (`imlbench.execution.workers`), which owns its limits
and every process it starts. It offers what the runner uses of a
`Learner` (fit and continue_fit as generators whose next() advances the learner's by one checkpoint)
as messages over a socket. The learner receives training data and target-free queries only; replies
are read with an unpickler that builds only plain data and numpy arrays, so a learner cannot make the
harness run code. Plugin code runs in learner processes only (the driver asks `harness.probe`);
diagnostics read a learner's internals and run it in the harness process.
"""

from __future__ import annotations

import builtins
import dataclasses
import io
import os
import pickle
import resource
import traceback
from collections.abc import Iterator
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import recv_handle
from typing import Any

import numpy as np

from imlbench.core.errors import ImlbenchError
from imlbench.core.protocol import LearnerTags
from imlbench.harness import sandbox
from imlbench.harness.pipelines import checked_fit, close_fit
from imlbench.harness.processes import LearnerDied

SAFE_GLOBALS = {
    *((m, n) for m in ("numpy._core.multiarray", "numpy.core.multiarray") for n in ("_reconstruct", "scalar")),
    *((m, "_frombuffer") for m in ("numpy._core.numeric", "numpy.core.numeric")),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    *(("builtins", n) for n in ("set", "frozenset", "complex", "slice", "range", "bytearray")),
    ("collections", "OrderedDict"),
}


class LearnerError(Exception):
    """Stands for an exception of a learner's own class, raised in its process (named alike)."""


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"the learner process sent a {module}.{name}; the harness accepts plain data and numpy arrays only"
        )


def plain_loads(data: bytes) -> Any:
    return _PlainUnpickler(io.BytesIO(data)).load()


HOST: Connection | None = None  # in a run's harness process: to the worker that forked it


def _next(kind: str, pid: int | None = None) -> Any:
    """The last field of the worker's next message if it is of this kind (and learner), else None."""
    try:
        message = HOST.recv()
    except (EOFError, OSError):
        raise LearnerDied("the learner's worker process died") from None
    return message[-1] if message[0] == kind and pid in (None, message[1]) else None


# --------------------------------------------------------------------------------------------
# the harness side


class RemoteLearner:
    """The harness's proxy of one run's learner, built from its spec in a fresh learner process that
    its worker forks (and limits)."""

    def __init__(self, spec: Any):
        if HOST is None:
            raise RuntimeError("a learner process is started by a worker: run through imlbench.execution.workers")
        HOST.send(("learner",))
        while (pid := _next("learner")) is None:
            pass
        self._conn, self.pid = Connection(recv_handle(HOST)), pid
        self._busy, self._tags = True, None
        try:
            # what the learner process's sandbox held, sent before any learner code ran there
            self.protections = {k: v is True for k, v in dict(self._reply()).items() if k in sandbox.STEPS}
            if self._call("setup", spec):
                self.predict_scores = self._predict_scores  # offered only where the learner has it
        except BaseException:
            self.close()
            raise

    def _call(self, *message: Any) -> Any:
        if self._busy:
            raise LearnerDied("the learner process was interrupted mid-call")
        self._busy = True
        try:
            self._conn.send(message)
        except OSError:
            pass  # it died: _reply says how
        return self._reply()

    def _reply(self) -> Any:
        """The learner's answer (its exception raised here), or LearnerDied when it ended instead."""
        while self._conn not in wait([self._conn, HOST]):
            if (why := _next("ended", self.pid)) is not None:  # else one about an earlier learner
                raise LearnerDied(why)
        try:
            kind, *rest = plain_loads(self._conn.recv_bytes())
        except (EOFError, OSError):
            while (why := _next("ended", self.pid)) is None:
                pass
            raise LearnerDied(why) from None
        self._busy = False
        if kind == "error":
            raise rebuild(*rest)
        return rest[0]

    def get_params(self) -> dict[str, Any]:
        return self._call("call", "get_params", (), {})

    def set_params(self, **params: Any) -> RemoteLearner:
        self._call("call", "set_params", (), params)
        return self

    def get_tags(self) -> LearnerTags:
        if self._tags is None:  # plain data over the socket, the tags object rebuilt here
            self._tags = LearnerTags.from_dict(self._call("tags"))
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
            if not self._busy:
                self._call("close")

    def predict(self, queries: Any) -> np.ndarray:
        return self._call("array", "predict", queries)

    def _predict_scores(self, queries: Any, candidates: np.ndarray) -> np.ndarray:
        return self._call("array", "predict_scores", queries, candidates)

    def close(self) -> None:
        """End the learner's process and everything it started."""
        try:
            HOST.send(("release",))
        except OSError:
            pass  # the worker is gone, and its learners with it
        self._conn.close()

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


def serve_learner(conn: Connection) -> None:
    """A learner process (in a session of its own, away from the terminal's Ctrl-C): build the
    learner, then answer the harness until it goes. The sandbox goes up first, and the harness
    hears what held before any learner code runs (IMLBENCH_NO_SANDBOX=1 leaves it down)."""
    os.setsid()
    held = {} if os.environ.get("IMLBENCH_NO_SANDBOX") == "1" else sandbox.apply()
    conn.send_bytes(pickle.dumps(("ok", held), protocol=5))
    state: dict[str, Any] = {}
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        try:
            payload = pickle.dumps(("ok", _answer(state, *message)), protocol=5)
        except BaseException as exc:  # noqa: BLE001 - everything the learner raises goes to the harness
            args = tuple(a for a in exc.args if isinstance(a, (str, int, float, bool, type(None))))
            trace = "".join(traceback.format_exception(exc))
            payload = pickle.dumps(("error", type(exc).__module__, type(exc).__qualname__, args, str(exc), trace))
        conn.send_bytes(payload)


def _answer(state: dict[str, Any], kind: str, *args: Any) -> Any:
    learner, end = state.get("learner"), object()
    if kind == "setup":  # import path, environment and folder are the driver's, through the worker
        state["learner"] = args[0].build()
        return callable(getattr(state["learner"], "predict_scores", None))
    if kind in ("start", "close"):
        close_fit(state.pop("fit", None))
        state["fit"] = checked_fit(getattr(learner, args[0])(args[1]), learner, args[0]) if kind == "start" else None
        return None
    if kind == "next":
        return next(state["fit"], end) is not end
    if kind == "call":
        result = getattr(learner, args[0])(*args[1], **args[2])
        return None if args[0] == "set_params" else result
    if kind == "attribute":
        return getattr(learner, args[0], None)
    if kind == "array":
        predicted = np.asarray(getattr(learner, args[0])(*args[1:]))
        # an object array would carry arbitrary objects; the harness rejects its dtype as it is
        return np.full(predicted.shape, None, dtype=object) if predicted.dtype == object else predicted
    if kind == "tags":
        return dataclasses.asdict(learner.get_tags())
    if kind == "peak_rss_mb":
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    raise ValueError(f"unknown message {kind!r}")
