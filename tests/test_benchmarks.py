"""The benchmarks' targets (benchmarks/targets.py) fail when missed: a deliberately slowed variant of a
timed path, measured in the same test as its baseline, fails the check the benchmark uses, and every
target's threshold is met by its calibration value and missed at twice the cost."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import pytest

TARGETS_FILE = Path(__file__).resolve().parent.parent / "benchmarks" / "targets.py"
_spec = importlib.util.spec_from_file_location("benchmark_targets", TARGETS_FILE)
targets = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = targets  # dataclasses look their module up while building the class
_spec.loader.exec_module(targets)

SLOW_S = 0.2  # the baseline's sleep; the timed path sleeps SLOW_S scaled by the target's calibration


def sleeper(seconds: float) -> Callable[[], None]:
    return lambda: time.sleep(seconds)


def slowed(fn: Callable[[], None]) -> Callable[[], None]:
    """`fn` twice as slow: the regression the targets are chosen to catch."""

    def regressed() -> None:
        fn()
        fn()

    return regressed


def seconds(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_a_speedup_target_is_met_and_its_slowed_variant_misses_it():
    """Kept votes (the fast path) against re-voting every tree, as bench_evaluation times them; sleeps
    stand for both, the fast one at the ratio the threshold was calibrated on."""
    target, bench = targets.TARGETS["evaluation/rf"], SimpleNamespace(extra_info={})
    kept_votes, revoting = sleeper(SLOW_S / target.measured), sleeper(SLOW_S)
    targets.check_speedup(bench, "evaluation/rf", seconds(kept_votes), seconds(revoting))
    with pytest.raises(AssertionError, match=r"^evaluation/rf: measured .*, target >= 3 \("):
        targets.check_speedup(bench, "evaluation/rf", seconds(slowed(kept_votes)), seconds(revoting))
    assert bench.extra_info["targets"]["evaluation/rf"]["measured"] < target.at_least  # the miss is recorded


def test_an_overhead_target_is_met_and_its_slowed_variant_misses_it():
    """An isolated run against the same run in process, as bench_isolation times them."""
    target = targets.TARGETS["isolation"]
    in_process, isolated = sleeper(SLOW_S / target.measured), sleeper(SLOW_S)
    targets.check_target(None, "isolation", seconds(isolated) / seconds(in_process))
    with pytest.raises(AssertionError, match="^isolation: measured .*, target <= 2.5 "):
        targets.check_target(None, "isolation", seconds(slowed(isolated)) / seconds(in_process))


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_each_threshold_passes_its_calibration_and_fails_at_twice_the_cost(name):
    target = targets.TARGETS[name]
    targets.check_target(None, name, target.measured)
    regressed = target.measured / 2 if target.at_most is None else target.measured * 2
    with pytest.raises(AssertionError, match=f"^{name}: measured "):
        targets.check_target(None, name, regressed)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TARGETS_FILE), *args], capture_output=True, text=True)


def test_the_command_line_exits_1_with_the_same_line_when_missed():
    assert run("versus", "1.08").returncode == 0
    missed = run("versus", "2.99")
    assert missed.returncode == 1 and missed.stderr.startswith("versus: measured 2.99, target <= 1.25 (")
    assert run("no-such-target", "1").returncode == 2
