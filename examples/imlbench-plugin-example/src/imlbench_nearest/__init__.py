"""A complete imlbench learner plugin in one file.

`LastDefinition` remembers the value most recently defined for each variable, whatever the tag,
and answers every question about the variable with it (falling back to the most frequent answer
seen for that variable, then to the overall most frequent label). It trusts every source equally,
so its IML effect should be zero.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import numpy as np

from imlbench import Learner
from imlbench.protocol import LearnerTags, TableData, TableQueries


class LastDefinition(Learner):
    views = ("table",)  # the views it reads, in order of preference
    tags = LearnerTags(continue_training=True)  # it can take part in the two-stage pipeline

    def __init__(self, use_questions: bool = True):  # hyperparameters only, as in scikit-learn
        self.use_questions = use_questions

    def fit(self, data: TableData) -> Iterator[None]:
        self.defined_: dict[str, int] = {}
        self.answers_: dict[str, Counter] = {}
        self.overall_: Counter = Counter()
        yield from self.continue_fit(data)

    def continue_fit(self, data: TableData) -> Iterator[None]:
        kinds, subjects = data.X["kind"].astype(str), data.X["subject"].astype(str)
        for kind, subject, label in zip(kinds, subjects, data.y.tolist()):
            if kind == "definition":
                self.defined_[subject] = label
            elif self.use_questions:
                self.answers_.setdefault(subject, Counter())[label] += 1
            self.overall_[label] += 1
        yield  # one checkpoint: the harness evaluates here

    def predict(self, queries: TableQueries) -> np.ndarray:
        fallback = self.overall_.most_common(1)[0][0]
        answers = []
        for subject in queries.X["subject"].astype(str):
            if subject in self.defined_:
                answers.append(self.defined_[subject])
            elif subject in self.answers_:
                answers.append(self.answers_[subject].most_common(1)[0][0])
            else:
                answers.append(fallback)
        return np.asarray(answers, dtype=np.int64)
