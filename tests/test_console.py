"""What the console says: one verdict sentence per row with its reason and, where the row cannot
inform, the command that would; the short legend; the progress of a grid on and off a terminal."""

from __future__ import annotations

import io
import math

import pytest

from imlbench.execution.progress import Progress
from imlbench.outputs.console import next_command, seeds_needed, short_legend, verdict_line, verdict_reason


def row(**changes):
    """A leaderboard row as `summarize` writes it: a measured, unguarded two-seed row by default."""
    base = {
        "task": "synthetic-defs",
        "learner": "mlp",
        "pipeline": "two-stage",
        "n_seeds": 2,
        "n_failed": 0,
        "n_definitions_not_learned": 0,
        "n_stage1_not_fit": 0,
        "n_floor": 0,
        "n_unattainable": 0,
        "by_construction": False,
        "effect_mean": 4.0,
        "ci_low": -20.0,
        "ci_high": 28.0,
        "p_difference": 0.4,
        "p_signflip": 0.5,
        "p_equivalence": 0.6,
        "mde": 30.0,
        "verdict": "inconclusive",
        "verdict_note": "",
        "seeds": "0;1",
        "q_over_baseline": 40.0,
        "retention": 1.0,
        "effect_before_stage2": 0.0,
        "margin": 10.0,
        "first_error": "",
    }
    return {**base, **changes}


def test_a_null_by_construction_says_why_and_names_the_pipeline_that_informs():
    line = verdict_line(
        row(learner="rf", task="synthetic-defs[n_entities=100]", by_construction=True, n_unattainable=2), "/tmp/r"
    )
    sentence, command = line.splitlines()
    assert sentence.startswith("rf two-stage on synthetic-defs[n_entities=100]: inconclusive — ")
    assert "stage 2 cannot depend on what stage 1 taught" in sentence and "null by construction" in sentence
    assert command == (
        "  Informative: imlbench run --learner rf --task synthetic-defs --pipeline one-stage --seeds 2 "
        "--param n_entities=100 --out /tmp/r"
    )
    # a flag read back from a leaderboard CSV is a string
    assert verdict_reason(row(by_construction="True"))[1] == "pipeline"


def test_a_guarded_row_points_to_search_and_keeps_task_parameters_only():
    floor = row(learner="mlp[epochs=1]", task="synthetic-defs[n_entities=100]", n_floor=2, verdict="inconclusive")
    reason, kind = verdict_reason(floor)
    assert kind == "search" and "floor" in reason and "2 of 2 seeds" in reason
    assert next_command(floor, kind) == "imlbench search --learner mlp --task synthetic-defs --param n_entities=100"
    # a learner without a search space (the majority control) gets the reason and no command
    control = row(learner="majority", q_over_baseline=0.0)
    assert "questions not learned" in verdict_line(control) and "Informative" not in verdict_line(control)


def test_a_censored_row_points_to_search():
    reason, kind = verdict_reason(row(n_unattainable=2))
    assert kind == "search" and "censored" in reason and "equivalence proves nothing" in reason


def test_too_few_seeds_point_to_a_run_with_enough():
    reason, kind = verdict_reason(row())
    assert kind == "seeds" and "sign-flip" in reason
    needed = seeds_needed(row())
    assert needed is not None and needed >= 6
    assert next_command(row(), kind).endswith(f"--pipeline two-stage --seeds {needed}")
    # the spread of these seeds decides how many: a wide one needs more than a narrow one
    assert seeds_needed(row(n_seeds=10, mde=25.0)) > seeds_needed(row(n_seeds=10, mde=12.0)) > 10
    assert seeds_needed(row(n_seeds=10, mde=1000.0)) is None  # hopeless: search instead
    assert next_command(row(n_seeds=10, mde=1000.0), "seeds").startswith("imlbench search --learner mlp")


@pytest.mark.parametrize("verdict, words", [("IML", "both reject no effect"), ("none", "within ±10")])
def test_an_informative_row_gives_its_tests_and_no_command(verdict, words):
    line = verdict_line(row(verdict=verdict, n_seeds=10, seeds=";".join(map(str, range(10))), mde=5.0))
    assert words in line and "\n" not in line


def test_an_override_that_both_sides_know_is_prefixed():
    over = row(learner="transformer[batch_size=16]", task="synthetic-defs[n_entities=100]", n_floor=2)
    # batch_size is the learner's only; n_entities the task's only: both stay bare
    assert "--param n_entities=100" in next_command(over, "pipeline")
    assert "--param batch_size=16" in next_command(over, "pipeline")


def test_no_finished_seed_says_so():
    reason, kind = verdict_reason(row(n_seeds=0, n_failed=2, first_error="RuntimeError: boom", effect_mean=math.nan))
    assert kind == "" and "no seed finished" in reason and "boom" in reason


def test_the_legend_is_short():
    import pandas as pd

    legend = short_legend(pd.DataFrame([row()]))
    assert len(legend) < 400 and legend.count("\n") == 1 and "±10" in legend


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_progress_is_one_plain_line_per_finished_run():
    stream = io.StringIO()
    progress = Progress(3, stream=stream)
    progress.stage("rf x synthetic-defs two-stage seed 0", "stage2", 3, "definitions 1.000")
    progress.finished("rf x synthetic-defs two-stage seed 0", "effect +4.1", None)
    progress.finished("rf x synthetic-defs two-stage seed 1", "effect +2.0", 1.25)
    progress.finished("rf x synthetic-defs two-stage seed 2", error="RuntimeError: boom")
    progress.close()
    assert stream.getvalue().splitlines() == [
        "[1/3] rf x synthetic-defs two-stage seed 0: effect +4.1 (cached)",
        "[2/3] rf x synthetic-defs two-stage seed 1: effect +2.0 (1.2s)",
        "[3/3] rf x synthetic-defs two-stage seed 2: failed: RuntimeError: boom",
    ]
    quiet = io.StringIO()
    Progress(1, quiet=True, stream=quiet).finished("x", "effect +1.0", 1.0)
    assert quiet.getvalue() == ""


def test_on_a_terminal_the_bar_shows_an_eta_only_once_a_computed_run_finished():
    stream = Terminal()
    progress = Progress(4, stream=stream)
    progress.finished("seed 0", "effect +1.0", None)  # cached: says nothing about the time a run takes
    progress.stage("seed 1", "stage2", 1, "")
    assert "eta" not in stream.getvalue() and progress.eta() is None
    progress.finished("seed 1", "effect +1.0", 2.0)
    assert progress.eta() is not None
    progress.bar.refresh()
    assert "eta " in stream.getvalue().rsplit("\r", 1)[-1]
    progress.close()
