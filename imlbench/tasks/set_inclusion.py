"""`set-inclusion`: the paper's from-scratch numeric task (PROTOCOL §6).

Every variable stands for a number in 0..n_values-1. Questions ask whether it is in a list:
`% <var> 35 86 2 17 -> true|false` (the generic token layout: relation, subject, operands, answer).
Each variable has a *candidate set* of `n_candidates` numbers, its value among them. Its training
questions narrow the value down to the candidates and no further: every "true" list holds the whole
candidate set, every "false" list none of it. Its test questions separate the value from the other
candidates: every test list holds exactly one candidate, the value ("true") or another candidate
("false"), so knowing the candidates alone answers them at chance (50%) and only a definition
`<tag> <var> <value>` can lift a variable above it.

A `qd2incons` definition names a number *outside* the candidate set (as the reference code does): a
wrong candidate would agree with every training question and leave stage 1 no evidence that the
tag is unreliable.
"""

from __future__ import annotations

import numpy as np

from imlbench.protocol import DEFINITION, QUESTION, Examples, Task, TaskData, Vocab
from imlbench.tasks.synthetic_defs import assign_subsets, derangement, make_examples, shuffled, subset_weights
from imlbench.views import PAD

QUESTION_TOKEN = "%"
TRUE, FALSE = "true", "false"


class SetInclusion(Task):
    """Numbers behind variables, narrowed to candidates by training questions, pinned by definitions."""

    views = ("tokens", "table")

    def __init__(
        self,
        n_variables: int = 1000,
        n_values: int = 100,
        n_candidates: int = 2,
        list_length: int = 4,
        n_train_questions: int = 12,
        n_test_questions: int = 12,
        tag_reliability: float = 1.0,
        fractions: dict | None = None,
    ):
        self.n_variables = n_variables
        self.n_values = n_values
        self.n_candidates = n_candidates
        self.list_length = list_length
        self.n_train_questions = n_train_questions
        self.n_test_questions = n_test_questions
        self.tag_reliability = tag_reliability
        self.fractions = fractions

    def validate(self) -> dict[str, float]:
        """Raise ValueError for a bad parameter; return the subset weights in use."""
        if self.n_variables < 20:
            raise ValueError(f"n_variables={self.n_variables} is too small; use at least 20")
        if not 2 <= self.n_candidates <= self.list_length:
            raise ValueError(f"n_candidates={self.n_candidates} must lie in [2, list_length={self.list_length}]: "
                             f"a true training list holds every candidate")
        # A test list needs list_length - 1 non-candidates besides the value's own slot, and a wrong
        # definition needs a number outside the candidates.
        if self.n_values < self.n_candidates + self.list_length + 1:
            raise ValueError(f"n_values={self.n_values} is too small for n_candidates={self.n_candidates} "
                             f"and list_length={self.list_length}")
        for name in ("n_train_questions", "n_test_questions"):
            value = getattr(self, name)
            if value < 2 or value % 2:
                raise ValueError(f"{name}={value} must be even and at least 2 (half true, half false)")
        return subset_weights(self.fractions, self.tag_reliability)

    def generate(self, seed: int) -> TaskData:
        fractions = self.validate()
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E7]))
        n, n_val, k, length = self.n_variables, self.n_values, self.n_candidates, self.list_length
        vocab = Vocab.build({
            "special": [PAD],
            "tag": ["tag1", "tag2", "tag3"],
            "phrasing": [QUESTION_TOKEN],
            "variable": [f"x{i:04d}" for i in range(n)],
            "operand": [str(v) for v in range(n_val)],
            "answer": [TRUE, FALSE],
        })
        tag_id = dict(zip(("tag1", "tag2", "tag3"), vocab.roles["tag"]))
        question_id = vocab.id(QUESTION_TOKEN)
        variable_ids, number_ids = vocab.roles["variable"], vocab.roles["operand"]
        true_id, false_id = vocab.id(TRUE), vocab.id(FALSE)

        # Candidate sets: k distinct numbers per variable; the value is the first.
        candidates = np.argsort(rng.random((n, n_val)), axis=1)[:, :k]
        value = candidates[:, 0]

        def lists(variables: np.ndarray, n_lists: int, fixed: np.ndarray, avoid: np.ndarray) -> np.ndarray:
            """Per variable, n_lists lists of `length` distinct numbers: the `fixed` ones (per
            variable, may be width 0) plus random numbers outside `avoid`, in random order."""
            out = np.empty((len(variables), n_lists, length), dtype=np.int64)
            allowed = np.ones((len(variables), n_val), dtype=bool)
            np.put_along_axis(allowed, avoid, False, axis=1)
            for j in range(n_lists):
                # Random keys; disallowed numbers sort last, so the first few are allowed draws.
                keys = np.where(allowed, rng.random(allowed.shape), 2.0)
                fill = np.argsort(keys, axis=1)[:, : length - fixed.shape[1]]
                chosen = np.concatenate([fixed, fill], axis=1)
                out[:, j] = rng.permuted(chosen, axis=1)
            return out

        def questions(variables: np.ndarray, split: str, subset: str) -> Examples:
            """Half true, half false, per variable (see the module docstring for what each holds)."""
            cand = candidates[variables]
            if split == "train":
                half = self.n_train_questions // 2
                true = lists(variables, half, cand, cand)
                false = lists(variables, half, cand[:, :0], cand)
            else:
                half = self.n_test_questions // 2
                true = lists(variables, half, cand[:, :1], cand)
                # One other candidate per false list, cycling through them.
                false = np.concatenate([
                    lists(variables, 1, cand[:, 1 + j % (k - 1): 2 + j % (k - 1)], cand) for j in range(half)
                ], axis=1)
            operands = number_ids[np.concatenate([true, false], axis=1).reshape(-1, length)]
            answers = np.tile(np.repeat([true_id, false_id], half), len(variables))
            rows = np.repeat(variables, 2 * half)
            return make_examples(QUESTION, np.full(len(rows), question_id), variable_ids[rows], answers, subset, operands)

        def definitions(variables: np.ndarray, tag: str, subset: str, numbers: np.ndarray | None = None) -> Examples:
            numbers = value[variables] if numbers is None else numbers
            none = np.full((len(variables), length), -1, dtype=np.int64)
            return make_examples(DEFINITION, np.full(len(variables), tag_id[tag]), variable_ids[variables],
                             number_ids[numbers], subset, none)

        def wrong_values(variables: np.ndarray) -> np.ndarray:
            """Another variable's value (a derangement within the subset), redrawn from outside the
            variable's candidate set wherever it falls inside it."""
            wrong = derangement(value[variables], rng, np.arange(n_val))
            for i, v in enumerate(variables):
                if wrong[i] in candidates[v]:
                    outside = np.setdiff1d(np.arange(n_val), candidates[v])
                    wrong[i] = rng.choice(outside)
            return wrong

        members = assign_subsets(n, fractions, self.tag_reliability, rng)

        stage1, stage2, test = [], [], []
        for name, tag, consistent in (("qd1consis", "tag1", True), ("qd1incons", "tag1", False),
                                      ("qd2incons", "tag2", False), ("qd2consis", "tag2", True)):
            v = members[name]
            if len(v) == 0:
                continue
            numbers = value[v] if consistent else wrong_values(v)
            stage1 += [questions(v, "train", name), definitions(v, tag, name, numbers)]
            test.append(questions(v, "test", name))
        if len(members["q"]):
            stage1.append(questions(members["q"], "train", "q"))
            test.append(questions(members["q"], "test", "q"))
        for name, tag in (("d1consis", "tag1"), ("d2consis", "tag2"), ("d3consis", "tag3")):
            if len(members[name]):
                stage2.append(definitions(members[name], tag, name))
                test.append(questions(members[name], "test", name))
        test.append(questions(members["no_qd_baseline"], "test", "no_qd_baseline"))

        stage1_ex, stage2_ex, test_ex = (shuffled(Examples.concat(p), rng) for p in (stage1, stage2, test))
        assert_no_question_leak(stage1_ex, stage2_ex, test_ex)
        label_space = np.sort(np.concatenate([number_ids, [true_id, false_id]]))
        sizes = {name: int(len(v)) for name, v in members.items()}
        return TaskData(vocab, label_space, stage1_ex, stage2_ex, test_ex,
                        info={"variables_per_subset": sizes, "candidates": number_ids[candidates]})


def question_keys(examples: Examples) -> set[tuple[int, ...]]:
    """A question is its variable and the *set* of numbers listed (order does not make it new)."""
    mask = examples.kind == QUESTION
    operands = np.sort(examples.operands[mask], axis=1)
    return {(s, *ops) for s, ops in zip(examples.subject[mask].tolist(), operands.tolist())}


def assert_no_question_leak(stage1: Examples, stage2: Examples, test: Examples) -> None:
    """Test questions never appear in training (PROTOCOL §2). They cannot by construction (a
    training list holds all candidates or none, a test list exactly one); this checks it."""
    leaked = question_keys(test) & (question_keys(stage1) | question_keys(stage2))
    if leaked:
        raise AssertionError(f"{len(leaked)} test questions also appear in training")
