"""Controls whose verdict must be `none`: a learner that ignores its input, and any learner with the
tag removed (without the tag, reliable and unreliable definitions look the same)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from imlbench.core.protocol import Learner, LearnerTags
from imlbench.core.registry import VIEWS
from imlbench.views.base import view_of


class Majority(Learner):
    """Always answers the most frequent training label (ties: the smallest id)."""

    tags = LearnerTags(continue_training=True, is_control=True, relative_cost=0.05)

    def supported_views(self) -> tuple[str, ...]:
        """Every view (it reads only labels and row counts, which every view has), the generic
        ones first in a fixed order: where a task offers several, the first is the one it reads."""
        generic = ("table", "tokens", "image", "text")
        return generic + tuple(v for v in VIEWS.names() if v not in generic)

    def fit(self, data) -> Iterator[None]:
        self.counts_: dict[int, int] = {}
        yield from self.continue_fit(data)

    def continue_fit(self, data) -> Iterator[None]:
        labels, counts = np.unique(view_of(data).labels(data), return_counts=True)
        for label, count in zip(labels.tolist(), counts.tolist()):
            self.counts_[label] = self.counts_.get(label, 0) + count
        self.answer_ = min(self.counts_, key=lambda label: (-self.counts_[label], label))
        yield

    def predict(self, queries) -> np.ndarray:
        return np.full(view_of(queries).n_rows(queries), self.answer_, dtype=np.int64)


class TagBlind(Learner):
    """Wraps another learner (`base`, any name the registry resolves) and hides the tag from it:
    each view hides it its own way (View.hide_tags: the table view drops its `tag` column, the
    tokens view maps every tag to one token)."""

    tags = LearnerTags(hides_tags=True, is_control=True)

    def __init__(self, base: str = "mlp", base_params: dict | None = None, random_state: int = 0):
        self.base = base
        self.base_params = base_params
        self.random_state = random_state

    def _base(self) -> Learner:
        if not hasattr(self, "_base_learner"):
            from imlbench.core.specs import resolve

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
        return tuple(v for v in self._base().supported_views() if v in VIEWS and VIEWS.get(v).tagged)

    def get_tags(self) -> LearnerTags:
        """Its base learner's capabilities (stage 2 uses stage 1 as the base's does), as a control that hides tags."""
        return replace(self._base().get_tags(), hides_tags=True, is_control=True)

    def fit(self, data) -> Iterator[None]:
        return self._base().fit(blind(data))

    def continue_fit(self, data) -> Iterator[None]:
        return self._base().continue_fit(blind(data))

    def predict(self, queries) -> np.ndarray:
        return self._base().predict(blind(queries))

    @property
    def search_space(self) -> dict:  # the base learner's: a control searched like what it controls
        return self._base().search_space

    def searched_params(self, values: dict) -> dict:
        return {"base_params": {**(self.base_params or {}), **self._base().searched_params(values)}}

    def __getattr__(self, name: str):
        """`predict_scores` exactly when the base learner has it (answer scores are optional)."""
        if name == "predict_scores" and callable(getattr(self._base(), "predict_scores", None)):
            return lambda queries, candidates: self._base().predict_scores(blind(queries), candidates)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def blind(data):
    """The same data without tag information."""
    return view_of(data).hide_tags(data)
