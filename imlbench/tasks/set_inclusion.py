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

from imlbench.core import seeds
from imlbench.core.protocol import DEFINITION, QUESTION, TAGS, Examples, Task, TaskData, Vocab
from imlbench.tasks import design
from imlbench.views.base import PAD

QUESTION_TOKEN = "%"
TRUE, FALSE = "true", "false"


class SetInclusion(Task):
    """Numbers behind variables, narrowed to candidates by training questions, pinned by definitions."""

    views = ("tokens", "table", "text")

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

    def validate(self) -> None:
        if self.n_variables < 20:
            raise ValueError(f"n_variables={self.n_variables} is too small; use at least 20")
        if not 2 <= self.n_candidates <= self.list_length:
            raise ValueError(
                f"n_candidates={self.n_candidates} must lie in [2, list_length={self.list_length}]: "
                f"a true training list holds every candidate"
            )
        # A test list needs list_length - 1 non-candidates besides the value's own slot, and a wrong
        # definition needs a number outside the candidates.
        if self.n_values < self.n_candidates + self.list_length + 1:
            raise ValueError(
                f"n_values={self.n_values} is too small for n_candidates={self.n_candidates} "
                f"and list_length={self.list_length}"
            )
        for name in ("n_train_questions", "n_test_questions"):
            value = getattr(self, name)
            if value < 2 or value % 2:
                raise ValueError(f"{name}={value} must be even and at least 2 (half true, half false)")
        design.check_design_params(self.fractions, self.tag_reliability)

    def generate(self, seed: int) -> TaskData:
        self.validate()
        rng = seeds.rng(seed, seeds.SET_INCLUSION)
        vocab = Vocab.build(
            {
                "special": [PAD],
                "tag": list(TAGS),
                "phrasing": [QUESTION_TOKEN],
                "variable": [f"x{i:04d}" for i in range(self.n_variables)],
                "operand": [str(v) for v in range(self.n_values)],
                "answer": [TRUE, FALSE],
            }
        )
        content = Lists(self, vocab, rng)
        members = design.assign_subsets(self.n_variables, self.fractions, self.tag_reliability, rng)
        stage1, stage2, test = design.build(content, members, rng)
        label_space = np.sort(np.concatenate([vocab.roles["operand"], [vocab.id(TRUE), vocab.id(FALSE)]]))
        sizes = {name: int(len(v)) for name, v in members.items()}
        return TaskData(
            vocab,
            label_space,
            stage1,
            stage2,
            test,
            info={"variables_per_subset": sizes, "candidates": vocab.roles["operand"][content.candidates]},
        )


class Lists(design.Content):
    """Each variable's candidate set (`n_candidates` distinct numbers, the value first), and
    questions `% <var> <list> -> true|false` about it (see the module docstring)."""

    def __init__(self, task: SetInclusion, vocab: Vocab, rng: np.random.Generator):
        self.task, self.vocab, self.rng = task, vocab, rng
        self.candidates = np.argsort(rng.random((task.n_variables, task.n_values)), axis=1)[:, : task.n_candidates]
        self.value = self.candidates[:, 0]

    def lists(self, n_lists: int, fixed: np.ndarray, avoid: np.ndarray) -> np.ndarray:
        """Per variable (row of `fixed`), n_lists lists of `list_length` distinct numbers: the `fixed`
        ones (may be width 0) plus random numbers outside `avoid`, in random order."""
        length, rng = self.task.list_length, self.rng
        out = np.empty((len(fixed), n_lists, length), dtype=np.int64)
        allowed = np.ones((len(fixed), self.task.n_values), dtype=bool)
        np.put_along_axis(allowed, avoid, False, axis=1)
        for j in range(n_lists):
            # Random keys; disallowed numbers sort last, so the first few are allowed draws.
            keys = np.where(allowed, rng.random(allowed.shape), 2.0)
            fill = np.argsort(keys, axis=1)[:, : length - fixed.shape[1]]
            out[:, j] = rng.permuted(np.concatenate([fixed, fill], axis=1), axis=1)
        return out

    def questions(self, variables: np.ndarray, which: str, subset: str) -> Examples:
        """Half true, half false, per variable. Training lists hold all candidates or none; test
        lists ("held-out" and "all" alike) exactly one: the value, or another candidate."""
        cand, k = self.candidates[variables], self.task.n_candidates
        if which == design.TRAINED:
            half = self.task.n_train_questions // 2
            true = self.lists(half, cand, cand)
            false = self.lists(half, cand[:, :0], cand)
        else:
            half = self.task.n_test_questions // 2
            true = self.lists(half, cand[:, :1], cand)
            # One other candidate per false list, cycling through them.
            false = np.concatenate(
                [self.lists(1, cand[:, 1 + j % (k - 1) : 2 + j % (k - 1)], cand) for j in range(half)], axis=1
            )
        vocab = self.vocab
        operands = vocab.roles["operand"][np.concatenate([true, false], axis=1).reshape(-1, self.task.list_length)]
        answers = np.tile(np.repeat([vocab.id(TRUE), vocab.id(FALSE)], half), len(variables))
        rows = np.repeat(variables, 2 * half)
        return design.make_examples(
            QUESTION,
            np.full(len(rows), vocab.id(QUESTION_TOKEN)),
            vocab.roles["variable"][rows],
            answers,
            subset,
            operands,
        )

    def definitions(self, variables: np.ndarray, tag: str, values: np.ndarray, subset: str) -> Examples:
        none = np.full((len(variables), self.task.list_length), -1, dtype=np.int64)
        return design.make_examples(
            DEFINITION,
            np.full(len(variables), self.vocab.id(tag)),
            self.vocab.roles["variable"][variables],
            values,
            subset,
            none,
        )

    def values(self, variables: np.ndarray) -> np.ndarray:
        return self.vocab.roles["operand"][self.value[variables]]

    def wrong_values(self, variables: np.ndarray) -> np.ndarray:
        """Another variable's value (a derangement within the subset), redrawn from outside the
        variable's candidate set wherever it falls inside it."""
        numbers = np.arange(self.task.n_values)
        wrong = design.derangement(self.value[variables], self.rng, numbers)
        for i, v in enumerate(variables):
            if wrong[i] in self.candidates[v]:
                wrong[i] = self.rng.choice(np.setdiff1d(numbers, self.candidates[v]))
        return self.vocab.roles["operand"][wrong]
