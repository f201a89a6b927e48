"""The subset design table, the shared builder of the tagged tasks, and data that never drifts."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from imlbench.core.protocol import SUBSET_DESIGN, SUBSETS, TAGS, TaskData
from imlbench.tasks.design import DEFAULT_FRACTIONS, assign_subsets, build_order
from imlbench.tasks.set_inclusion import SetInclusion
from imlbench.tasks.synthetic_defs import SyntheticDefs
from imlbench.tasks.tagged_digits import TaggedDigits


def test_subset_codes_and_tags_are_fixed():
    """A subset's code is stored in every example and scored by name: the order is part of the data."""
    assert SUBSETS == (
        "qd1consis",
        "qd2incons",
        "qd1incons",
        "qd2consis",
        "q",
        "d1consis",
        "d2consis",
        "d3consis",
        "no_qd_baseline",
    )
    assert TAGS == ("tag1", "tag2", "tag3")
    assert DEFAULT_FRACTIONS == {
        "qd1consis": 0.3,
        "qd2incons": 0.3,
        "q": 0.1,
        "d1consis": 0.1,
        "d2consis": 0.1,
        "d3consis": 0.1,
        "no_qd_baseline": 0.05,
    }


def test_the_table_reads_like_its_names():
    """qd*: questions and a stage-1 definition; d*: a stage-2 definition; the number is the tag;
    consis/incons: whether the definition agrees; a reversed subset flips its source's consistency."""
    by_name = {s.name: s for s in SUBSET_DESIGN}
    for s in SUBSET_DESIGN:
        assert s.questions == s.name.startswith("q")
        assert s.defined_in == (1 if s.name.startswith("qd") else 2 if s.name.startswith("d") else 0)
        assert s.tag == (f"tag{s.name[s.name.index('d') + 1]}" if s.defined_in else None)
        assert s.consistent == (not s.name.endswith("incons"))
        assert s.tested_on == ("held-out" if s.questions else "all")
        if s.reverse_of:
            source = by_name[s.reverse_of]
            assert (s.tag, s.defined_in, s.consistent) == (source.tag, source.defined_in, not source.consistent)
            assert s.weight == 0
    assert [s.name for s in build_order()] == [
        "qd1consis",
        "qd1incons",
        "qd2incons",
        "qd2consis",
        "q",
        "d1consis",
        "d2consis",
        "d3consis",
        "no_qd_baseline",
    ]


def test_assigned_subsets_partition_the_variables():
    members = assign_subsets(300, None, 0.75, np.random.default_rng(0))
    assert set(members) == set(SUBSETS)
    everyone = np.concatenate(list(members.values()))
    assert sorted(everyone.tolist()) == list(range(300))
    assert len(members["qd1incons"]) == round(0.25 * (len(members["qd1incons"]) + len(members["qd1consis"])))


@pytest.mark.parametrize("task", [SyntheticDefs(), SetInclusion(), TaggedDigits()], ids=lambda t: type(t).__name__)
def test_validate_only_checks(task):
    assert task.validate() is None  # generate() reads the subset weights itself


def digest(data: TaskData, pictures: np.ndarray | None = None) -> str:
    h = hashlib.sha256()

    def add(name: str, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        h.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        h.update(array.tobytes())

    for split in ("stage1", "stage2", "test"):
        examples = getattr(data, split)
        for field in ("kind", "relation", "subject", "target", "subset", "operands"):
            if getattr(examples, field) is not None:
                add(f"{split}.{field}", getattr(examples, field))
    h.update("\n".join(data.vocab.tokens).encode())
    add("label_space", data.label_space)
    if pictures is not None:
        add("pictures", pictures)
    return h.hexdigest()[:16]


GOLDEN = {  # digests of generate(seed) (and the test pictures) as every earlier version produced them
    "synthetic-defs reliability 0.7": (SyntheticDefs(n_entities=60, tag_reliability=0.7), 1, "dabd6d7b7c4d0899"),
    "synthetic-defs attributes": (SyntheticDefs(n_entities=60, questions="attributes"), 0, "22b654a4bb0f8611"),
    "set-inclusion reliability 0.7": (
        SetInclusion(n_variables=60, tag_reliability=0.7, n_train_questions=4, n_test_questions=4),
        2,
        "423ceec06d507be4",
    ),
    "tagged-digits reliability 0.8": (TaggedDigits(n_entities=40, tag_reliability=0.8), 0, "d3f67690cbabf0ad"),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_same_seed_same_data_as_before(name):
    """Records of different versions compare only if a seed still gives the same data. A failure
    here means the data changed (a change to a task, or to numpy's random streams): say so in the
    README, and bump the task's spec version."""
    task, seed, expected = GOLDEN[name]
    data = task.generate(seed)
    pictures = task.render(data, data.test, "test") if isinstance(task, TaggedDigits) else None
    assert digest(data, pictures) == expected
