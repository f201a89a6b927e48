"""Learners for the diagnostics tests (apart from testplugins, which must not import torch: the
runs of tests that use only testplugins' learners start without it)."""

from __future__ import annotations

import os
import time

from imlbench.core import seeds as _seeds
from imlbench.learners.mlp import MLP


class ProbeFailsOnSeed1(MLP):
    """An mlp whose hidden states raise for run seed 1; with SLOW_SEED1 set they hang there instead
    (so that a driver can be killed while seed 1 is still running)."""

    def hidden_states(self, queries):
        if self.random_state == _seeds.derive_seed(1, _seeds.LEARNER):
            if os.environ.get("SLOW_SEED1"):
                time.sleep(600)
            raise RuntimeError("probe failed on purpose")
        return super().hidden_states(queries)


class DiesLeavingAChild(MLP):
    """An mlp whose hidden states start a child that keeps every inherited descriptor (the harness's
    socket to its worker among them) and then end the process they run in: a diagnostic's harness."""

    def hidden_states(self, queries):
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
        os._exit(3)
