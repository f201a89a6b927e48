"""Learners that go after the answer key (tests/test_answers.py), and a task that leaves it in memory.

`Regenerates` recovers its run's seed (from its `random_state`, or by matching its training data
against the public generator's output for small seeds) and answers from the regenerated task.
`ReadsMemory` scans the memory of every process it can read for the answer key `MarkedDefs` keeps in
the harness (a stand-in for finding the target array, which an attacker can do with more patience).
Both fall back to an honest learner that knows nothing (`Spy`: the first training label).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator

import numpy as np
from testplugins import Spy

from imlbench.core import seeds
from imlbench.core.protocol import TaskData
from imlbench.tasks.synthetic_defs import SyntheticDefs
from imlbench.views.base import table_columns

MARK = b"IMLBENCH-TEST-" + b"ANSWER-KEY:{"  # built, so that only the key itself holds the whole mark
KEPT: list[bytes] = []  # the answer keys this (harness) process generated


def row_key(row) -> str:
    return "|".join(map(str, row))


def answer_key(data: TaskData) -> dict[str, int]:
    rows = table_columns(data, data.test).itertuples(index=False)
    return {row_key(r): int(t) for r, t in zip(rows, data.test.target.tolist())}


class MarkedDefs(SyntheticDefs):
    """synthetic-defs, keeping its answer key in this process's memory behind a mark."""

    def generate(self, seed: int) -> TaskData:
        data = super().generate(seed)
        KEPT.append(MARK[:-1] + json.dumps(answer_key(data)).encode() + b"\0")
        return data


class _Cheat(Spy):
    answers_: dict[str, int]

    def fit(self, data) -> Iterator[None]:
        self.answers_ = self.find_answers(data) or {}
        yield from super().fit(data)

    def find_answers(self, data) -> dict[str, int] | None:
        raise NotImplementedError

    def predict(self, queries) -> np.ndarray:
        honest = super().predict(queries)
        rows = queries.X.itertuples(index=False)
        return np.array([self.answers_.get(row_key(r), h) for r, h in zip(rows, honest.tolist())], dtype=np.int64)


class Regenerates(_Cheat):
    def __init__(self, view: str = "table", n_entities: int = 100, random_state: int = 0):
        super().__init__(view)
        self.n_entities, self.random_state = n_entities, random_state

    def find_answers(self, data) -> dict[str, int] | None:
        from_state = [s for s in range(1 << 16) if seeds.derive_seed(s, seeds.LEARNER) == self.random_state]
        for seed in from_state + list(range(64)):
            candidate = SyntheticDefs(n_entities=self.n_entities).generate(seed)
            if np.array_equal(candidate.stage1.target, np.asarray(data.y)):
                return answer_key(candidate)
        return None


class ReadsMemory(_Cheat):
    def find_answers(self, data) -> dict[str, int] | None:
        for pid in (int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()):
            try:
                found = self.scan(pid)
            except OSError:
                continue  # not ours to read
            if found is not None:
                return found
        return None

    @staticmethod
    def scan(pid: int) -> dict[str, int] | None:
        with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
            for line in maps:
                match = re.match(r"([0-9a-f]+)-([0-9a-f]+) rw", line)
                if not match or "[vvar" in line:
                    continue
                start, end = int(match[1], 16), int(match[2], 16)
                try:
                    chunk = os.pread(mem.fileno(), end - start, start)
                except OSError:
                    continue
                at = chunk.find(MARK)
                while at >= 0:  # a freed copy may be overwritten in part: the next one may be whole
                    with contextlib.suppress(ValueError):
                        return json.loads(chunk[at + len(MARK) - 1 : chunk.index(b"\0", at)])
                    at = chunk.find(MARK, at + 1)
        return None


class Writes(Spy):
    """Tries to write beside the records (`target`) and in its temporary folder; says what happened
    in `run_info_` (the record's learner_info)."""

    def __init__(self, view: str = "table", target: str = ""):
        super().__init__(view)
        self.target = target

    def fit(self, data) -> Iterator[None]:
        import tempfile

        self.run_info_ = {"tmpdir": tempfile.gettempdir()}
        for name, path in (("beside_records", self.target), ("in_tmpdir", os.path.join(tempfile.gettempdir(), "x"))):
            try:
                with open(path, "w") as out:
                    out.write("forged")
                self.run_info_[name] = "written"
            except OSError as exc:
                self.run_info_[name] = type(exc).__name__
        yield from super().fit(data)
