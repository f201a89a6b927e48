"""The shared builder of the tagged tasks: the subset design table (protocol.SUBSET_DESIGN) turned
into stage-1, stage-2 and test examples.

A task says only what its definitions and questions look like, as a `Content` (one per generated
instance); `assign_subsets` and `build` do the rest the same way for every task, drawing from the
task's random stream in a fixed order (so a task's data is a pure function of its seed).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from imlbench.core.protocol import QUESTION, SUBSET_CODE, SUBSET_DESIGN, Examples, SubsetDesign

TRAINED = "trained"  # questions of stage 1 (the test asks `SubsetDesign.tested_on`: "held-out" or "all")
# Subsets that take a share of the variables, in the order they take it; the rest reverse a share.
DEFAULT_FRACTIONS = {s.name: s.weight for s in SUBSET_DESIGN if s.reverse_of is None}


def check_design_params(fractions: dict | None, tag_reliability: float) -> None:
    """Raise ValueError for a bad value of the parameters every tagged task shares."""
    if not 0.5 <= tag_reliability <= 1.0:
        raise ValueError(f"tag_reliability={tag_reliability} must lie in [0.5, 1]")
    weights = DEFAULT_FRACTIONS if fractions is None else fractions
    if set(weights) - set(DEFAULT_FRACTIONS) or any(v < 0 for v in weights.values()):
        raise ValueError(f"fractions must be non-negative weights for {', '.join(DEFAULT_FRACTIONS)}")


def subset_weights(fractions: dict | None) -> dict[str, float]:
    """The subsets in use and their weights (`fractions`, or the design's defaults)."""
    weights = DEFAULT_FRACTIONS if fractions is None else fractions
    return {k: v for k, v in weights.items() if v > 0}


def split_counts(n: int, weights: dict[str, float]) -> dict[str, int]:
    """Variables per subset: weights are normalized, every subset gets at least 2."""
    total = sum(weights.values())
    counts = {name: max(2, int(round(n * f / total))) for name, f in weights.items()}
    excess = sum(counts.values()) - n
    largest = max(counts, key=counts.get)
    counts[largest] -= excess
    if counts[largest] < 2:
        raise ValueError(f"{n} variables are too few for {len(weights)} subsets")
    return counts


def assign_subsets(
    n: int, fractions: dict | None, tag_reliability: float, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Variables 0..n-1 -> subsets. With tag_reliability p, a share 1 - p of the variables of each
    subset that a reversed subset names moves there (the paper's correlation ablation)."""
    counts = split_counts(n, subset_weights(fractions))
    order = rng.permutation(n)
    members, start = {}, 0
    for name in DEFAULT_FRACTIONS:
        members[name] = np.sort(order[start : start + counts.get(name, 0)])
        start += counts.get(name, 0)
    for subset in SUBSET_DESIGN:
        if subset.reverse_of is not None:
            group = members[subset.reverse_of]
            flip = rng.choice(len(group), size=int(round((1.0 - tag_reliability) * len(group))), replace=False)
            members[subset.name] = np.sort(group[flip])
            members[subset.reverse_of] = np.delete(group, flip)
    return members


def derangement(values: np.ndarray, rng: np.random.Generator, pool: np.ndarray) -> np.ndarray:
    """Each variable gets another variable's value from the same group (a cyclic shift of a
    random order); a group of one draws a different value from `pool`."""
    if len(values) == 1:
        others = pool[pool != values[0]]
        return rng.choice(others, size=1)
    order = rng.permutation(len(values))
    wrong = np.empty_like(values)
    wrong[order] = values[np.roll(order, -1)]
    return wrong


def make_examples(kind: int, relation, subject, target, subset: str, operands=None) -> Examples:
    n = len(subject)
    return Examples(
        np.full(n, kind, dtype=np.int64),
        np.asarray(relation, dtype=np.int64),
        np.asarray(subject, dtype=np.int64),
        np.asarray(target, dtype=np.int64),
        np.full(n, SUBSET_CODE[subset], dtype=np.int64),
        None if operands is None else np.asarray(operands, dtype=np.int64),
    )


def shuffled(examples: Examples, rng: np.random.Generator) -> Examples:
    return examples.select(rng.permutation(len(examples)))


class Content(ABC):
    """What one generated instance of a task's definitions and questions look like. Methods that
    draw random numbers draw from the task's stream, in the order `build` calls them."""

    @abstractmethod
    def questions(self, variables: np.ndarray, which: str, subset: str) -> Examples:
        """Questions about `variables`: `which` is TRAINED (stage 1), "held-out" or "all"."""

    @abstractmethod
    def definitions(self, variables: np.ndarray, tag: str, values: np.ndarray, subset: str) -> Examples:
        """Definitions `<tag> <variable> <value>` (values are vocab ids)."""

    @abstractmethod
    def values(self, variables: np.ndarray) -> np.ndarray:
        """What a consistent definition of each variable states (vocab ids)."""

    @abstractmethod
    def wrong_values(self, variables: np.ndarray) -> np.ndarray:
        """What an inconsistent definition states: a value the questions contradict (vocab ids)."""


def build_order() -> list[SubsetDesign]:
    """The design's subsets, each followed by the subsets that reverse a share of it."""
    order = []
    for subset in SUBSET_DESIGN:
        if subset.reverse_of is None:
            order += [subset, *(s for s in SUBSET_DESIGN if s.reverse_of == subset.name)]
    return order


def build(
    content: Content,
    members: dict[str, np.ndarray],
    rng: np.random.Generator,
    extra_stage1: list[Examples] | None = None,
) -> tuple[Examples, Examples, Examples]:
    """(stage 1, stage 2, test) examples, each shuffled, as the design table says; `extra_stage1`
    (e.g. facts) joins stage 1. Checks that no test question appears in training."""
    stage1, stage2, test = [], [], []
    for subset in build_order():
        variables, defined = members[subset.name], None
        if subset.defined_in:  # before the questions: wrong values draw from the stream first
            values = content.values(variables) if subset.consistent else content.wrong_values(variables)
            defined = content.definitions(variables, subset.tag, values, subset.name)
        if subset.questions:
            stage1.append(content.questions(variables, TRAINED, subset.name))
        if defined is not None:
            (stage1 if subset.defined_in == 1 else stage2).append(defined)
        test.append(content.questions(variables, subset.tested_on, subset.name))
    stage1 += extra_stage1 or []
    splits = tuple(shuffled(Examples.concat(parts), rng) for parts in (stage1, stage2, test))
    assert_no_test_leak(*splits)
    return splits


def question_keys(examples: Examples) -> set[tuple[int, ...]]:
    """A question is its phrasing, its variable and the *set* of its operands (order does not make
    it new)."""
    mask = examples.kind == QUESTION
    if examples.operands is None:
        return set(zip(examples.relation[mask].tolist(), examples.subject[mask].tolist()))
    operands = np.sort(examples.operands[mask], axis=1)
    return {
        (r, s, *ops)
        for r, s, ops in zip(examples.relation[mask].tolist(), examples.subject[mask].tolist(), operands.tolist())
    }


def assert_no_test_leak(stage1: Examples, stage2: Examples, test: Examples) -> None:
    """Test questions never appear in training (PROTOCOL §2)."""
    leaked = question_keys(test) & (question_keys(stage1) | question_keys(stage2))
    if leaked:
        raise AssertionError(f"{len(leaked)} test questions also appear in training")
