"""The text view: generic rendering from token names, natural-language synthetic-defs, tag hiding."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imlbench.core.protocol import DEFINITION, QUESTION
from imlbench.core.specs import resolve
from imlbench.tasks.set_inclusion import SetInclusion
from imlbench.tasks.synthetic_defs import SyntheticDefs
from imlbench.tasks.synthetic_defs_text import NATURAL_TAGS, TEMPLATES, SyntheticDefsText
from imlbench.views.text import (
    NEUTRAL_TAG,
    TEXT,  # noqa: E402
    TextData,
    TextQueries,
    TextView,
    hide_tags,
    render_generic,
)


@pytest.fixture(scope="module")
def defs():
    return SyntheticDefs(n_entities=40).generate(0)


@pytest.fixture(scope="module")
def natural():
    task = SyntheticDefsText(n_entities=60)
    return task, task.generate(3)


def encode_all(task, data):
    """Every split as the harness hands it over: training data, and target-free queries."""
    train = {s: task.encode(TEXT, data, getattr(data, s), s) for s in ("stage1", "stage2")}
    queries = {s: task.encode(TEXT, data, getattr(data, s).without_targets(), s) for s in ("stage2", "test")}
    return train, queries


def test_generic_rendering_follows_the_tokens_view(defs):
    names = defs.vocab.tokens
    x = render_generic(defs, defs.stage1)
    assert isinstance(x, TextData) and len(x.prompts) == len(defs.stage1)
    np.testing.assert_array_equal(x.y, defs.stage1.target)
    for i in range(len(defs.stage1)):
        relation, subject, target = (
            names[int(a[i])] for a in (defs.stage1.relation, defs.stage1.subject, defs.stage1.target)
        )
        if defs.stage1.kind[i] == DEFINITION:  # loss on the variable and the value
            assert (x.prompts[i], x.completions[i]) == (relation, f" {subject} {target}")
        else:  # loss on the answer
            assert (x.prompts[i], x.completions[i]) == (f"{relation} {subject}", f" {target}")
    assert x.label_texts == tuple(names[i] for i in defs.label_space)
    assert x.tag_texts == ("tag1", "tag2", "tag3")


def test_a_query_is_the_document_up_to_its_answer(defs):
    train = render_generic(defs, defs.stage2)
    queries = render_generic(defs, defs.stage2.without_targets())
    assert isinstance(queries, TextQueries) and not hasattr(queries, "completions")
    names = defs.vocab.tokens
    for prompt, completion, query, target in zip(train.prompts, train.completions, queries.prompts, defs.stage2.target):
        assert f"{query} {names[target]}" == prompt + completion


def test_generic_rendering_carries_operands():
    data = SetInclusion(n_variables=40).generate(0)
    x = render_generic(data, data.stage1.select(data.stage1.kind == QUESTION))
    names = data.vocab.tokens
    ops = [names[o] for o in data.stage1.operands[data.stage1.kind == QUESTION][0] if o >= 0]
    assert x.prompts[0].split()[2:] == ops and x.completions[0].strip() in ("true", "false")


def test_test_queries_hold_no_answers(defs):
    queries = render_generic(defs, defs.test.without_targets())
    answers = {defs.vocab.tokens[t] for t in defs.test.target}
    assert not any(word in answers for prompt in queries.prompts for word in prompt.split())


def test_synthetic_defs_text_has_the_same_examples_as_synthetic_defs():
    task = SyntheticDefsText(n_entities=60)
    text, plain = task.generate(4), SyntheticDefs(n_entities=60).generate(4)
    for split in ("stage1", "stage2", "test"):
        for field in ("kind", "relation", "subject", "target", "subset"):
            np.testing.assert_array_equal(getattr(getattr(text, split), field), getattr(getattr(plain, split), field))
    assert task.views[0] == "text" and "tokens" in task.views
    assert resolve("task", "synthetic-defs-text").build().views[0] == "text"


def test_natural_rendering(natural):
    task, data = natural
    train, queries = encode_all(task, data)
    stage1 = train["stage1"]
    definition = int(np.flatnonzero(data.stage1.kind == DEFINITION)[0])
    prompt, completion = stage1.prompts[definition], stage1.completions[definition]
    assert prompt.endswith(":") and prompt[:-1] in stage1.tag_texts
    alias, is_, first, last = completion.split()
    assert is_ == "is" and alias.islower() and first.istitle() and last.istitle()
    assert f"{first} {last}" == stage1.label_texts[list(stage1.label_space).index(data.stage1.target[definition])]
    question = int(np.flatnonzero(data.stage1.kind == QUESTION)[0])
    assert stage1.prompts[question].startswith("Q: ") and stage1.prompts[question].endswith("\nA:")
    assert stage1.completions[question].strip() in stage1.label_texts
    # names are person-like and unique; aliases and tags are distinct from each other and from template words
    rendering = data.info["text"]
    assert len(set(rendering["names"])) == task.n_entities
    assert all(len(name.split()) == 2 and name.istitle() for name in rendering["names"])
    words = {w.lower() for t in TEMPLATES for w in t.replace("?", " ").replace(".", " ").split()}
    aliases = set(rendering["aliases"])
    assert len(aliases) == task.n_entities and not aliases & words
    assert not aliases & {t.lower() for t in rendering["tags"]}
    # one template per phrasing id: phrasings render differently
    phrasings = data.vocab.roles["phrasing"]
    assert len({t.format("x") for t in rendering["templates"]}) == len(phrasings)


def test_natural_rendering_is_deterministic_and_seeded(natural):
    task, data = natural
    again = SyntheticDefsText(n_entities=60).generate(3)
    assert _same(encode_all(task, again), encode_all(task, data))
    other = SyntheticDefsText(n_entities=60).generate(4)
    assert set(other.info["text"]["names"]) != set(data.info["text"]["names"])
    assert other.info["text"]["tags"] != data.info["text"]["tags"]


def _same(a, b) -> bool:
    def plain(x):
        return {k: (v.prompts, getattr(v, "completions", None), v.label_texts, v.lexicon) for k, v in x.items()}

    return all(plain(a[i]) == plain(b[i]) for i in range(2))


def _digest() -> str:
    task = SyntheticDefsText(n_entities=60)
    data = task.generate(3)
    train, queries = encode_all(task, data)
    text = repr(
        [
            (x.prompts, getattr(x, "completions", ()), x.label_texts, x.lexicon)
            for x in (*train.values(), *queries.values())
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()


def test_natural_rendering_is_the_same_in_another_process():
    code = "from tests.test_text import _digest; print(_digest())"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout.strip()
    assert other == _digest()


def test_no_test_answer_reaches_training(natural):
    task, data = natural
    train, queries = encode_all(task, data)
    documents = {p + c for x in train.values() for p, c in zip(x.prompts, x.completions)}
    test = queries["test"]
    assert not hasattr(test, "completions")
    names = data.info["text"]["names"]
    for prompt, target, kind in zip(test.prompts, data.test.target, data.test.kind):
        assert kind == QUESTION
        answer = test.label_texts[list(test.label_space).index(target)]
        assert f"{prompt} {answer}" not in documents  # the test question, answered, was never trained on
        assert not any(name in prompt for name in names)  # a prompt names no entity
    # distinct abstract test questions render to distinct prompts (nothing merges with a trained one)
    keys = set(zip(data.test.relation.tolist(), data.test.subject.tolist()))
    assert len(set(test.prompts)) == len(keys)
    trained_prompts = {p for x in train.values() for p in x.prompts}
    assert not trained_prompts & set(test.prompts)
    # the lexicon lists words, never an alias next to its name
    lexicon = train["stage1"].lexicon
    assert lexicon == tuple(sorted(lexicon))
    aliases = set(data.info["text"]["aliases"])
    assert not any(set(entry.split()) & aliases and any(n in entry for n in names) for entry in lexicon)


def test_natural_sources_name_the_tags():
    task = SyntheticDefsText(n_entities=60, sources="natural")
    data = task.generate(0)
    x = task.encode(TEXT, data, data.stage2, "stage2")
    assert x.tag_texts == NATURAL_TAGS
    tags = [NATURAL_TAGS[i] for i in data.stage2.relation - data.vocab.roles["tag"][0]]
    assert [p[:-1] for p in x.prompts] == tags


@pytest.mark.parametrize("params", [{"sources": "wiki"}, {"n_phrasings": len(TEMPLATES) + 1}, {"alias_length": 2}])
def test_bad_parameters_are_rejected(params):
    with pytest.raises(ValueError):
        SyntheticDefsText(**params).validate()


def test_hide_tags_replaces_every_tag_and_nothing_else(natural):
    task, data = natural
    x = task.encode(TEXT, data, data.stage2, "stage2")
    hidden = hide_tags(x)
    assert hidden.tag_texts == (NEUTRAL_TAG,) and NEUTRAL_TAG in hidden.lexicon
    assert not set(x.tag_texts) & set(hidden.lexicon)
    assert set(hidden.prompts) == {f"{NEUTRAL_TAG}:"} and hidden.completions == x.completions
    np.testing.assert_array_equal(hidden.y, x.y)
    # multi-word sources, and whole words only: a tag inside another word stays
    text = TextData(
        ("Anonymous rumor: ab", "ab Newsletterx Newsletter"),
        (" x", " Anonymous rumor"),
        np.array([1, 2]),
        np.array([1, 2]),
        ("x", "y"),
        NATURAL_TAGS,
    )
    hidden = hide_tags(text)
    assert hidden.prompts == (f"{NEUTRAL_TAG}: ab", f"ab Newsletterx {NEUTRAL_TAG}")
    assert hidden.completions == (" x", f" {NEUTRAL_TAG}")
    queries = hide_tags(render_generic(*_generic_queries()))
    assert isinstance(queries, TextQueries) and all(p.startswith(NEUTRAL_TAG) for p in queries.prompts)


def _generic_queries():
    data = SyntheticDefs(n_entities=40).generate(0)
    return data, data.stage2.without_targets()


def test_text_view_object(defs):
    view = TextView()
    x = view.encode(defs, defs.stage1)
    assert view.name == "text" and view.tagged and isinstance(x, view.data_class)
    assert view.n_rows(x) == len(defs.stage1)
    np.testing.assert_array_equal(view.labels(x), defs.stage1.target)
    assert isinstance(view.encode(defs, defs.test.without_targets()), view.queries_class)
    assert view.hide_tags(x).tag_texts == (NEUTRAL_TAG,)


def test_label_texts_must_match_the_label_space():
    with pytest.raises(ValueError, match="label texts"):
        TextQueries(("p",), np.array([1, 2]), ("a",), ())
    with pytest.raises(ValueError, match="distinct"):
        TextQueries(("p",), np.array([1, 2]), ("a", " a"), ())
