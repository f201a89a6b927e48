import numpy as np
import pytest

from imlbench.core.protocol import DEFINITION, FACT, HIDDEN, QUESTION, SUBSET_CODE, SUBSETS, TokenQueries
from imlbench.tasks.design import assert_no_test_leak
from imlbench.tasks.synthetic_defs import SyntheticDefs
from imlbench.views.base import encode, table_columns


def arrays(ex):
    return [ex.kind, ex.relation, ex.subject, ex.target, ex.subset]


def test_generation_is_a_pure_function_of_params_and_seed():
    a, b, c = SyntheticDefs().generate(3), SyntheticDefs().generate(3), SyntheticDefs().generate(4)
    for split in ("stage1", "stage2", "test"):
        for x, y in zip(arrays(getattr(a, split)), arrays(getattr(b, split))):
            np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.test.target, c.test.target)


def test_subsets_stages_and_sizes():
    data = SyntheticDefs().generate(0)
    sizes = data.info["variables_per_subset"]
    assert sum(sizes.values()) == 1000
    assert sizes["qd1consis"] == sizes["qd2incons"] == 286 and sizes["d1consis"] == 95
    assert sizes["qd1incons"] == sizes["qd2consis"] == 0  # tag_reliability = 1
    stage1 = {SUBSETS[c] for c in np.unique(data.stage1.subset)}
    assert stage1 == {"qd1consis", "qd2incons", "q"}
    assert set(np.unique(data.stage2.kind)) == {DEFINITION}
    assert {SUBSETS[c] for c in np.unique(data.stage2.subset)} == {"d1consis", "d2consis", "d3consis"}
    assert set(np.unique(data.test.kind)) == {QUESTION}


def test_definitions_agree_or_contradict_by_tag():
    data = SyntheticDefs().generate(1)
    s1, vocab = data.stage1, data.vocab
    truth = {(int(v)): int(t) for v, t, k in zip(s1.subject, s1.target, s1.kind) if k == QUESTION}
    defs = s1.kind == DEFINITION
    for subset, tag, consistent in (("qd1consis", "tag1", True), ("qd2incons", "tag2", False)):
        rows = defs & (s1.subset == SUBSET_CODE[subset])
        assert set(s1.relation[rows]) == {vocab.id(tag)}
        agree = np.array([truth[int(v)] == int(t) for v, t in zip(s1.subject[rows], s1.target[rows])])
        assert agree.all() if consistent else not agree.any()
    # the wrong value is another variable's value from the same subset (a derangement)
    rows = defs & (s1.subset == SUBSET_CODE["qd2incons"])
    own = {truth[int(v)] for v in s1.subject[rows]}
    assert set(s1.target[rows].tolist()) == own


def test_tag_reliability_reverses_a_fraction_of_stage1_definitions():
    data = SyntheticDefs(tag_reliability=0.7).generate(0)
    sizes = data.info["variables_per_subset"]
    assert sizes["qd1incons"] == round(0.3 * 286) and sizes["qd2consis"] == round(0.3 * 286)
    s1 = data.stage1
    rows = (s1.kind == DEFINITION) & (s1.subset == SUBSET_CODE["qd1incons"])
    assert set(s1.relation[rows]) == {data.vocab.id("tag1")}
    with pytest.raises(ValueError, match="tag_reliability"):
        SyntheticDefs(tag_reliability=0.3).validate()


def test_test_questions_never_appear_in_training():
    for questions in ("identity", "attributes"):
        data = SyntheticDefs(questions=questions).generate(2)
        assert_no_test_leak(data.stage1, data.stage2, data.test)
        train = {
            (r, s) for r, s, k in zip(data.stage1.relation, data.stage1.subject, data.stage1.kind) if k == QUESTION
        }
        test = set(zip(data.test.relation, data.test.subject))
        assert not train & test
    leaky = data.stage1.select(data.stage1.kind == QUESTION)
    with pytest.raises(AssertionError, match="test questions"):
        assert_no_test_leak(leaky, data.stage2, leaky)


def test_attributes_mode_needs_composition():
    data = SyntheticDefs(questions="attributes").generate(0)
    vocab = data.vocab
    assert (data.stage1.kind == FACT).sum() == 1000 * 8
    values = set(vocab.roles["value"].tolist())
    assert set(data.test.target.tolist()) <= values
    assert set(data.stage2.target.tolist()) <= set(vocab.roles["entity"].tolist())
    assert set(data.label_space.tolist()) == values | set(vocab.roles["entity"].tolist())


def test_table_view_uses_fixed_categories_and_queries_have_no_targets():
    data = SyntheticDefs(n_entities=100).generate(0)
    t1, t2 = table_columns(data, data.stage1), table_columns(data, data.test)
    for column in ("kind", "tag", "relation", "subject"):
        assert list(t1[column].cat.categories) == list(t2[column].cat.categories)
    train = encode("table", data, data.stage1)
    np.testing.assert_array_equal(train.y, data.stage1.target)
    queries = encode("table", data, data.test.without_targets())
    assert not hasattr(queries, "y") and list(queries.X.columns) == ["kind", "tag", "relation", "subject"]
    with pytest.raises(ValueError, match="mix hidden"):
        mixed = data.test.select(np.arange(len(data.test)) < 10)
        encode("table", data, type(mixed)(*arrays(mixed)[:3], np.r_[mixed.target[:5], [HIDDEN] * 5], mixed.subset))


def test_tokens_view_loss_mask_and_queries():
    data = SyntheticDefs(n_entities=100).generate(0)
    train = encode("tokens", data, data.stage1)
    defs = data.stage1.kind == DEFINITION
    assert train.loss_mask[defs].sum(axis=1).tolist() == [2] * int(defs.sum())  # variable and value
    assert train.loss_mask[~defs].sum(axis=1).tolist() == [1] * int((~defs).sum())  # the answer
    np.testing.assert_array_equal(train.tokens[np.arange(len(train.tokens)), train.answer_pos], data.stage1.target)
    queries = encode("tokens", data, data.test.without_targets())
    assert isinstance(queries, TokenQueries)
    rows = np.arange(len(queries.tokens))
    assert (queries.tokens[rows, queries.answer_pos] == queries.pad_id).all()
    assert not np.isin(queries.tokens, data.test.target).any()
