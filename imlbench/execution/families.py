"""Families (PROTOCOL §5): the rows whose p-values are Holm-adjusted together. A family is declared
by the command that runs them (a suite, a study's `--family`, one command's grid) and named in each
record, never implied by rows that happen to share a folder."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from imlbench.core.errors import ImlbenchError
from imlbench.harness.runner import RunRequest
from imlbench.store.records import write_atomic


def grid_family(requests: list[RunRequest]) -> str:
    """The family of one command's grid: its learners and tasks by row name (pipelines where more than
    the default, counted: a name shown beside rows must not read as a pipeline), e.g. "transformer,rf on
    synthetic-defs"."""

    def names(values: Iterable[str]) -> str:
        return ",".join(dict.fromkeys(values))

    pipelines = list(dict.fromkeys(r.pipeline for r in requests))
    tail = f" ({len(pipelines)} pipelines)" if len(pipelines) > 1 else f" ({pipelines[0]})"
    tail = "" if pipelines == ["two-stage"] else tail
    return f"{names(r.learner.name for r in requests)} on {names(r.task.name for r in requests)}{tail}"


def declare_family(
    records: list[dict[str, Any]], requests: list[RunRequest], out: str | Path, family: str
) -> list[dict[str, Any]]:
    """Name `family` in each request's record (`families`, a list: a run reused by another command
    joins that command's family too) and return the records with it. A family is declared by the
    command, never implied by a shared folder (PROTOCOL §5)."""
    if not family or not isinstance(family, str):
        raise ImlbenchError(f"a family is a non-empty name, got {family!r}")
    by_key = {}
    for request in requests:
        path = request.path(Path(out))
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a run that left no record has nothing to join
        if family not in raw.get("families", []):
            raw["families"] = [*raw.get("families", []), family]
            write_atomic(path, lambda f, raw=raw: json.dump(raw, f, indent=1, sort_keys=True, allow_nan=True))
        by_key[raw.get("key")] = raw["families"]
    return [{**r, "families": by_key.get(r.get("key"), r.get("families", []))} for r in records]
