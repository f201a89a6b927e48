"""The set-inclusion task: determinism, no leak, and the list semantics the experiment relies on."""

from __future__ import annotations

import numpy as np
import pytest

from imlbench.core.protocol import DEFINITION, HIDDEN, QUESTION, SUBSET_CODE, TableData, TokenData, TokenQueries
from imlbench.core.specs import ImlbenchError, resolve
from imlbench.tasks.design import question_keys
from imlbench.tasks.set_inclusion import SetInclusion
from imlbench.views.base import encode


@pytest.fixture(scope="module")
def task() -> SetInclusion:
    return SetInclusion(n_variables=200, n_train_questions=8, n_test_questions=8)


@pytest.fixture(scope="module")
def data(task):
    return task.generate(3)


def _number(data, token_id: int) -> int:
    return int(data.vocab.tokens[token_id])


def _candidates(data) -> dict[int, set[int]]:
    """variable id -> its candidate numbers (vocab ids)."""
    variable_ids = data.vocab.roles["variable"]
    return {int(v): set(c.tolist()) for v, c in zip(variable_ids, data.info["candidates"])}


def test_same_seed_same_data_other_seed_other_data(task, data):
    again = task.generate(3)
    for split in ("stage1", "stage2", "test"):
        a, b = getattr(data, split), getattr(again, split)
        for field in ("kind", "relation", "subject", "target", "subset", "operands"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    other = task.generate(4)
    assert not np.array_equal(other.stage1.operands, data.stage1.operands)


def test_no_test_question_in_training(data):
    assert question_keys(data.test).isdisjoint(question_keys(data.stage1) | question_keys(data.stage2))
    assert not (data.stage2.kind == QUESTION).any()


def test_training_lists_narrow_to_candidates(data):
    cands, true_id = _candidates(data), data.vocab.id("true")
    questions = data.stage1.select(data.stage1.kind == QUESTION)
    for subject, operands, target in zip(questions.subject, questions.operands, questions.target):
        listed = set(operands.tolist())
        assert len(listed) == len(operands)  # distinct numbers
        if target == true_id:
            assert cands[int(subject)] <= listed
        else:
            assert not cands[int(subject)] & listed


def test_test_lists_separate_value_from_other_candidates(data):
    cands, true_id = _candidates(data), data.vocab.id("true")
    variable_ids = data.vocab.roles["variable"]
    value = {int(v): int(c[0]) for v, c in zip(variable_ids, data.info["candidates"])}
    for subject, operands, target in zip(data.test.subject, data.test.operands, data.test.target):
        listed = set(operands.tolist())
        inside = listed & cands[int(subject)]
        assert len(inside) == 1  # exactly one candidate: knowing the candidates alone is chance
        assert (value[int(subject)] in listed) == (target == true_id)
    # balanced: half true, half false in every subset
    for code in np.unique(data.test.subset):
        targets = data.test.target[data.test.subset == code]
        assert (targets == true_id).mean() == pytest.approx(0.5)


def test_definitions(data):
    cands = _candidates(data)
    variable_ids = data.vocab.roles["variable"]
    value = {int(v): int(c[0]) for v, c in zip(variable_ids, data.info["candidates"])}
    tag = {name: data.vocab.id(name) for name in ("tag1", "tag2", "tag3")}
    defs = data.stage1.select(data.stage1.kind == DEFINITION)
    incons = defs.subset == SUBSET_CODE["qd2incons"]
    assert incons.sum() > 0 and (defs.relation[incons] == tag["tag2"]).all()
    for subject, target in zip(defs.subject[incons], defs.target[incons]):
        assert target not in cands[int(subject)]  # outside the candidate set
        assert 0 <= _number(data, target) < 100
    consis = defs.subset == SUBSET_CODE["qd1consis"]
    assert (defs.relation[consis] == tag["tag1"]).all()
    assert all(value[int(s)] == t for s, t in zip(defs.subject[consis], defs.target[consis]))
    stage2 = data.stage2
    assert (stage2.kind == DEFINITION).all()
    for name, t in (("d1consis", "tag1"), ("d2consis", "tag2"), ("d3consis", "tag3")):
        sel = stage2.subset == SUBSET_CODE[name]
        assert sel.sum() > 0 and (stage2.relation[sel] == tag[t]).all()
        assert all(value[int(s)] == v for s, v in zip(stage2.subject[sel], stage2.target[sel]))


def test_label_space_holds_answers_and_numbers(data):
    targets = np.concatenate([data.stage1.target, data.stage2.target, data.test.target])
    assert np.isin(targets, data.label_space).all()
    assert data.vocab.id("true") in data.label_space and data.vocab.id("false") in data.label_space


def test_tag_reliability_flips_some_variables():
    data = SetInclusion(n_variables=400, tag_reliability=0.75, n_train_questions=2, n_test_questions=2).generate(0)
    sizes = data.info["variables_per_subset"]
    assert sizes["qd1incons"] > 0 and sizes["qd2consis"] > 0
    cands = _candidates(data)
    defs = data.stage1.select((data.stage1.kind == DEFINITION) & (data.stage1.subset == SUBSET_CODE["qd1incons"]))
    assert all(t not in cands[int(s)] for s, t in zip(defs.subject, defs.target))


def test_views(data):
    tokens = encode("tokens", data, data.stage1)
    assert isinstance(tokens, TokenData)
    questions = data.stage1.kind == QUESTION
    rows = np.arange(len(tokens.tokens))
    assert (tokens.tokens[rows, tokens.answer_pos] == data.stage1.target).all()
    assert (tokens.answer_pos[questions] == 6).all() and (tokens.answer_pos[~questions] == 2).all()
    queries = encode("tokens", data, data.test.without_targets())
    assert isinstance(queries, TokenQueries)
    assert (queries.tokens[np.arange(len(queries.tokens)), queries.answer_pos] == data.vocab.id("<pad>")).all()
    table = encode("table", data, data.stage1)
    assert isinstance(table, TableData)
    number_cols = [c for c in table.X.columns if c.startswith("op_")]
    assert len(number_cols) == 100
    hot = table.X[number_cols].to_numpy()
    assert (hot[questions].sum(axis=1) == 4).all() and (hot[~questions].sum(axis=1) == 0).all()
    assert (data.test.without_targets().target == HIDDEN).all()


def test_bad_parameters_are_rejected():
    with pytest.raises(ImlbenchError):
        resolve("task", "set-inclusion", {"n_candidates": 5})
    with pytest.raises(ImlbenchError):
        resolve("task", "set-inclusion", {"n_train_questions": 3})


def test_suite_specs_resolve():
    small, full = resolve("task", "set-inclusion-small"), resolve("task", "set-inclusion")
    assert full.params["n_variables"] == 4000 and full.params["n_train_questions"] == 12
    assert small.params["n_variables"] < full.params["n_variables"]
