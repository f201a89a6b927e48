"""What a grid shows while it runs, on stderr.

On a terminal: one tqdm bar (runs done / total, failures, the current run's stage and checkpoint),
with each finished run written above it; its ETA appears once a run computed here has finished, as
the time per computed run so far times the runs left (a bar's own rate would count the instant
cached runs and the workers' start-up). Elsewhere (a file, a pipe, a CI log): no bar and no carriage
returns, one plain line per finished run: `[3/10] rf x synthetic-defs two-stage seed 2: effect +4.1 (1.2s)`.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

from tqdm.auto import tqdm

from imlbench.core.errors import one_line

POLL_SECONDS = 0.2  # a learner may report very often: the bar's postfix changes at most this often
BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def say(line: str, stream: TextIO | None = None) -> None:
    """One line on stderr that leaves a live progress bar intact."""
    tqdm.write(line, file=stream or sys.stderr)


class Progress:
    """The progress of `total` runs: `finished` once per run, `stage` while one runs, `close` at the end."""

    def __init__(self, total: int, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total, self.quiet, self.terminal = total, quiet, is_terminal(self.stream)
        self.done = self.failed = self.computed = 0
        self.created = time.monotonic()
        self.first_start: float | None = None  # when the first run reported progress (after start-up)
        self.current, self.shown = "", 0.0
        self.bar = tqdm(
            total=total,
            unit="run",
            disable=quiet or not self.terminal,
            file=self.stream,
            dynamic_ncols=True,
            bar_format=BAR_FORMAT,
        )

    def finished(self, label: str, summary: str | None = None, seconds: float | None = None, error: str = "") -> None:
        """A run ended: `summary` of its record (None when it failed, with `error`), `seconds` it
        took (None when its record was reused)."""
        self.done += 1
        if error or summary is None:
            self.failed += 1
        elif seconds is not None:
            self.computed += 1
        self.current = ""
        self._refresh()
        if not self.quiet:
            how = "cached" if seconds is None else f"{seconds:.1f}s"
            text = f"{label}: failed: {one_line(error)}" if summary is None else f"{label}: {summary} ({how})"
            if self.terminal:
                if summary is not None:  # a failure is listed after the grid, with the others
                    self.bar.write(text, file=self.stream)
            else:
                print(f"[{self.done}/{self.total}] {text}", file=self.stream, flush=True)
        self.bar.update(1)

    def stage(self, label: str, stage: str, checkpoint: int, detail: str) -> None:
        """Where a running run is (on a terminal only; a plain log gets finished runs alone)."""
        now = time.monotonic()
        if self.first_start is None:
            self.first_start = now
        if self.quiet or not self.terminal or now - self.shown < POLL_SECONDS:
            return
        self.current, self.shown = f"{label}: {stage} checkpoint {checkpoint} {detail}".rstrip(), now
        self._refresh(refresh=True)

    def eta(self) -> float | None:
        """Seconds left: the time per computed run so far times the runs left; None before one finished."""
        if not self.computed:
            return None
        per_run = (time.monotonic() - (self.first_start or self.created)) / self.computed
        return per_run * (self.total - self.done)

    def _refresh(self, refresh: bool = False) -> None:
        if self.bar.disable:
            return
        parts = [f"failed={self.failed}"] if self.done else []
        left = self.eta()
        if left is not None and not math.isnan(left):
            parts.append(f"eta {tqdm.format_interval(left)}")
        if self.current:
            parts.append(self.current)
        self.bar.set_postfix_str(", ".join(parts), refresh=refresh)

    def close(self) -> None:
        self.bar.close()
