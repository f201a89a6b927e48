"""The command line: `imlbench run|list|show|sweep|search|plot|report|diagnose|leaderboard|verify`."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from imlbench.cli.parser import build_parser
from imlbench.core.errors import ImlbenchError, one_line
from imlbench.scoring.verdicts import check_margin


def check_args(args: argparse.Namespace) -> None:
    """Values argparse accepts that no command can use, refused before any run starts."""
    for name in ("out", "output"):
        value = getattr(args, name, None)
        if value is not None and not str(value).strip():
            raise ImlbenchError(f"--{name} is empty; name a path")
    if hasattr(args, "margin"):
        check_margin(args.margin)


@contextmanager
def sigterm_as_interrupt() -> Iterator[dict[str, bool]]:
    """SIGTERM (`kill`, a scheduler's stop) ends a command as Ctrl-C does, through the SIGINT
    handler, so that a run in progress tells it from a KeyboardInterrupt a learner raised."""
    state = {"terminated": False}

    def stop(signum, frame):
        state["terminated"] = True
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield state
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with sigterm_as_interrupt() as signalled:
        try:
            check_args(args)
            return args.func(args)
        except ImlbenchError as exc:
            print(f"imlbench: error: {one_line(str(exc))}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            how = "terminated (SIGTERM)" if signalled["terminated"] else "interrupted"
            print(f"\nimlbench: {how}; finished runs are saved and will be reused", file=sys.stderr)
            return 143 if signalled["terminated"] else 130
        except OSError as exc:  # a full disk, a folder that became unwritable: one line, not a traceback
            print(f"imlbench: error: {one_line(f'{type(exc).__name__}: {exc}')}", file=sys.stderr)
            return 2
