"""Scoring (PROTOCOL §5): per-run scores, the standardized score across seeds, verdicts, the leaderboard."""

from imlbench.scoring.verdicts import (
    DEFAULT_MARGIN,
    SCORING_VERSION,
    VERDICTS,
    run_scores,
    standardized_score,
    summarize,
    write_leaderboard,
)

__all__ = [
    "DEFAULT_MARGIN",
    "SCORING_VERSION",
    "VERDICTS",
    "run_scores",
    "standardized_score",
    "summarize",
    "write_leaderboard",
]
