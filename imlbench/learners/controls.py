"""Controls whose verdict must be `none`: a learner that ignores its input, and any learner with the
tag removed (without the tag, reliable and unreliable definitions look the same)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from imlbench.protocol import Learner, TableData, TableQueries, TokenData, TokenQueries
from imlbench.views import n_rows, training_labels


class Majority(Learner):
    """Always answers the most frequent training label (ties: the smallest id)."""

    views = ("table", "tokens", "image")
    capabilities = frozenset({"continue_training"})
    is_control = True

    def fit(self, data) -> Iterator[None]:
        self.counts_: dict[int, int] = {}
        yield from self.continue_fit(data)

    def continue_fit(self, data) -> Iterator[None]:
        labels, counts = np.unique(training_labels(data), return_counts=True)
        for label, count in zip(labels.tolist(), counts.tolist()):
            self.counts_[label] = self.counts_.get(label, 0) + count
        self.answer_ = min(self.counts_, key=lambda label: (-self.counts_[label], label))
        yield

    def predict(self, queries) -> np.ndarray:
        return np.full(n_rows(queries), self.answer_, dtype=np.int64)


class TagBlind(Learner):
    """Wraps another learner (`base`, any name the registry resolves) and hides the tag from it:
    the table view loses its `tag` column, the tokens view maps every tag to one token."""

    hides_tags = True
    is_control = True

    def __init__(self, base: str = "mlp", base_params: dict | None = None, random_state: int = 0):
        self.base = base
        self.base_params = base_params
        self.random_state = random_state

    def _base(self) -> Learner:
        if not hasattr(self, "_base_learner"):
            from imlbench.registry import resolve

            spec = resolve("learner", self.base, self.base_params or {})
            self._base_learner = spec.build()
            if "random_state" in self._base_learner.get_params():
                self._base_learner.set_params(random_state=self.random_state)
        return self._base_learner

    def validate(self) -> None:
        self._base()

    def set_params(self, **params):
        self.__dict__.pop("_base_learner", None)
        return super().set_params(**params)

    def supported_views(self) -> tuple[str, ...]:
        return tuple(v for v in self._base().supported_views() if v in ("table", "tokens"))

    def supports(self, capability: str) -> bool:
        return self._base().supports(capability)

    def fit(self, data) -> Iterator[None]:
        return self._base().fit(blind(data))

    def continue_fit(self, data) -> Iterator[None]:
        return self._base().continue_fit(blind(data))

    def predict(self, queries) -> np.ndarray:
        return self._base().predict(blind(queries))


def blind(data):
    """The same data without tag information."""
    if isinstance(data, (TableData, TableQueries)):
        if "tag" not in data.X.columns:
            raise ValueError("tag-blind needs a `tag` column to remove, and this table has none")
        return replace(data, X=data.X.drop(columns="tag"))
    if isinstance(data, (TokenData, TokenQueries)):
        tokens = np.where(np.isin(data.tokens, data.tag_ids), data.tag_ids[0], data.tokens)
        return replace(data, tokens=tokens)
    raise TypeError(f"tag-blind cannot hide tags in {type(data).__name__}")
