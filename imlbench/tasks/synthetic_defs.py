"""`synthetic-defs`: aliases defined by tagged sources, and questions about what they stand for.

Entities and variables are opaque tokens; every variable aliases one entity. A definition
`<tag> <variable> <entity>` says which; a question `<phrasing> <variable>` asks for the entity
(identity mode) or for one of its attributes (attributes mode, where facts `<entity> <phrasing>
<value>` state attributes by entity name, so answering needs variable -> entity -> attribute).
"""

from __future__ import annotations

import numpy as np

from imlbench.protocol import (
    DEFINITION,
    FACT,
    QUESTION,
    SUBSET_CODE,
    Examples,
    Task,
    TaskData,
    Vocab,
)
from imlbench.views import PAD

DEFAULT_FRACTIONS = {
    "qd1consis": 0.3,
    "qd2incons": 0.3,
    "q": 0.1,
    "d1consis": 0.1,
    "d2consis": 0.1,
    "d3consis": 0.1,
    "no_qd_baseline": 0.05,
}
QUESTION_MODES = ("identity", "attributes")


def subset_weights(fractions: dict | None, tag_reliability: float) -> dict[str, float]:
    """Check the parameters every tagged task shares; return the subset weights in use."""
    if not 0.5 <= tag_reliability <= 1.0:
        raise ValueError(f"tag_reliability={tag_reliability} must lie in [0.5, 1]")
    weights = dict(DEFAULT_FRACTIONS if fractions is None else fractions)
    if set(weights) - set(DEFAULT_FRACTIONS) or any(v < 0 for v in weights.values()):
        raise ValueError(f"fractions must be non-negative weights for {', '.join(DEFAULT_FRACTIONS)}")
    return {k: v for k, v in weights.items() if v > 0}


def split_counts(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """Variables per subset: fractions are weights (normalized), every subset gets at least 2."""
    total = sum(fractions.values())
    counts = {name: max(2, int(round(n * f / total))) for name, f in fractions.items()}
    excess = sum(counts.values()) - n
    largest = max(counts, key=counts.get)
    counts[largest] -= excess
    if counts[largest] < 2:
        raise ValueError(f"n_entities={n} is too small for {len(fractions)} subsets")
    return counts


def assign_subsets(n: int, fractions: dict[str, float], tag_reliability: float,
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Variables 0..n-1 -> subsets. With tag_reliability p, a fraction 1 - p of the stage-1 defined
    variables get the reverse (qd1incons, qd2consis): the paper's correlation ablation."""
    counts = split_counts(n, fractions)
    order = rng.permutation(n)
    members, start = {}, 0
    for name in DEFAULT_FRACTIONS:
        members[name] = np.sort(order[start: start + counts.get(name, 0)])
        start += counts.get(name, 0)
    for reliable, flipped in (("qd1consis", "qd1incons"), ("qd2incons", "qd2consis")):
        group = members[reliable]
        flip = rng.choice(len(group), size=int(round((1.0 - tag_reliability) * len(group))), replace=False)
        members[flipped] = np.sort(group[flip])
        members[reliable] = np.delete(group, flip)
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


class SyntheticDefs(Task):
    """The default task of the benchmark (PROTOCOL §6)."""

    views = ("tokens", "table")

    def __init__(
        self,
        n_entities: int = 1000,
        n_phrasings: int = 8,
        n_train_phrasings: int = 4,
        questions: str = "identity",
        tag_reliability: float = 1.0,
        n_attribute_values: int = 10,
        fractions: dict | None = None,
    ):
        self.n_entities = n_entities
        self.n_phrasings = n_phrasings
        self.n_train_phrasings = n_train_phrasings
        self.questions = questions
        self.tag_reliability = tag_reliability
        self.n_attribute_values = n_attribute_values
        self.fractions = fractions

    def validate(self) -> dict[str, float]:
        """Raise ValueError for a bad parameter; return the subset weights in use."""
        if self.questions not in QUESTION_MODES:
            raise ValueError(f"questions={self.questions!r} is not a question mode; valid: "
                             f"{', '.join(QUESTION_MODES)}")
        if not 1 <= self.n_train_phrasings < self.n_phrasings:
            raise ValueError(f"n_train_phrasings={self.n_train_phrasings} must lie in "
                             f"[1, n_phrasings={self.n_phrasings})")
        if self.n_entities < 20:
            raise ValueError(f"n_entities={self.n_entities} is too small; use at least 20")
        return subset_weights(self.fractions, self.tag_reliability)

    def generate(self, seed: int) -> TaskData:
        fractions = self.validate()
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5D]))
        n, n_phr = self.n_entities, self.n_phrasings
        attributes = self.questions == "attributes"
        groups = {
            "special": [PAD],
            "tag": ["tag1", "tag2", "tag3"],
            "phrasing": [f"ask{j}" for j in range(n_phr)],
            "variable": [f"v{i:04d}" for i in range(n)],
            "entity": [f"e{i:04d}" for i in range(n)],
        }
        if attributes:
            groups["value"] = [f"a{j}={m}" for j in range(n_phr) for m in range(self.n_attribute_values)]
        vocab = Vocab.build(groups)
        tag_id = dict(zip(groups["tag"], vocab.roles["tag"]))
        phrasing_ids, variable_ids, entity_ids = (vocab.roles[r] for r in ("phrasing", "variable", "entity"))

        entity_of = rng.permutation(n)  # variable i aliases entity entity_of[i]
        attribute = rng.integers(self.n_attribute_values, size=(n, n_phr))  # entity x phrasing
        phrasing_order = rng.permuted(np.tile(np.arange(n_phr), (n, 1)), axis=1)
        train_phr, heldout_phr = phrasing_order[:, : self.n_train_phrasings], phrasing_order[:, self.n_train_phrasings:]

        def answer(variables: np.ndarray, phrasings: np.ndarray) -> np.ndarray:
            entities = entity_of[variables]
            if not attributes:
                return entity_ids[entities]
            return vocab.roles["value"][phrasings * self.n_attribute_values + attribute[entities, phrasings]]

        def questions(variables: np.ndarray, phrasings: np.ndarray, subset: str) -> Examples:
            rows = np.repeat(variables, phrasings.shape[1])
            phr = phrasings.reshape(-1)
            return make_examples(QUESTION, phrasing_ids[phr], variable_ids[rows], answer(rows, phr), subset)

        def definitions(variables: np.ndarray, tag: str, subset: str, values: np.ndarray | None = None) -> Examples:
            values = entity_ids[entity_of[variables]] if values is None else values
            return make_examples(DEFINITION, np.full(len(variables), tag_id[tag]), variable_ids[variables], values, subset)

        members = assign_subsets(n, fractions, self.tag_reliability, rng)

        all_phr = np.tile(np.arange(n_phr), (n, 1))
        stage1, stage2, test = [], [], []
        for name, tag, consistent in (("qd1consis", "tag1", True), ("qd1incons", "tag1", False),
                                      ("qd2incons", "tag2", False), ("qd2consis", "tag2", True)):
            v = members[name]
            if len(v) == 0:
                continue
            true_values = entity_ids[entity_of[v]]
            values = true_values if consistent else derangement(true_values, rng, entity_ids)
            stage1 += [questions(v, train_phr[v], name), definitions(v, tag, name, values)]
            test.append(questions(v, heldout_phr[v], name))
        if len(members["q"]):
            stage1.append(questions(members["q"], train_phr[members["q"]], "q"))
            test.append(questions(members["q"], heldout_phr[members["q"]], "q"))
        for name, tag in (("d1consis", "tag1"), ("d2consis", "tag2"), ("d3consis", "tag3")):
            v = members[name]
            stage2.append(definitions(v, tag, name))
            test.append(questions(v, all_phr[v], name))
        test.append(questions(members["no_qd_baseline"], all_phr[members["no_qd_baseline"]], "no_qd_baseline"))
        if attributes:
            entities = np.repeat(np.arange(n), n_phr)
            phr = np.tile(np.arange(n_phr), n)
            values = vocab.roles["value"][phr * self.n_attribute_values + attribute[entities, phr]]
            stage1.append(Examples(np.full(len(entities), FACT), phrasing_ids[phr], entity_ids[entities],
                                   values, np.full(len(entities), -1)))

        stage1_ex, stage2_ex, test_ex = (shuffled(Examples.concat(p), rng) for p in (stage1, stage2, test))
        assert_no_test_leak(stage1_ex, stage2_ex, test_ex)
        label_space = np.sort(np.concatenate([entity_ids, vocab.roles.get("value", np.zeros(0, np.int64))]))
        sizes = {name: int(len(v)) for name, v in members.items()}
        return TaskData(vocab, label_space, stage1_ex, stage2_ex, test_ex, info={"variables_per_subset": sizes})


def make_examples(kind: int, relation, subject, target, subset: str, operands=None) -> Examples:
    n = len(subject)
    return Examples(np.full(n, kind, dtype=np.int64), np.asarray(relation, dtype=np.int64),
                    np.asarray(subject, dtype=np.int64), np.asarray(target, dtype=np.int64),
                    np.full(n, SUBSET_CODE[subset], dtype=np.int64),
                    None if operands is None else np.asarray(operands, dtype=np.int64))


def shuffled(examples: Examples, rng: np.random.Generator) -> Examples:
    return examples.select(rng.permutation(len(examples)))


def assert_no_test_leak(stage1: Examples, stage2: Examples, test: Examples) -> None:
    """Test questions never appear in training (PROTOCOL §2)."""
    def keys(ex: Examples) -> set[tuple[int, int]]:
        mask = ex.kind == QUESTION
        return set(zip(ex.relation[mask].tolist(), ex.subject[mask].tolist()))

    leaked = keys(test) & (keys(stage1) | keys(stage2))
    if leaked:
        raise AssertionError(f"{len(leaked)} test questions also appear in training")
