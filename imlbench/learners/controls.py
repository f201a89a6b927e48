"""Controls whose verdict must be `none`: a learner that ignores its input, and any learner with the
tag removed (without the tag, reliable and unreliable definitions look the same)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from imlbench.core.protocol import Learner
from imlbench.views.base import VIEWS, view_of


class Majority(Learner):
    """Always answers the most frequent training label (ties: the smallest id)."""
    relative_cost = 0.05  # seconds per run relative to rf (longest runs start first)

    capabilities = frozenset({"continue_training"})
    is_control = True

    def supported_views(self) -> tuple[str, ...]:
        return tuple(VIEWS)  # it reads only labels and row counts, which every view has

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

    hides_tags = True
    is_control = True

    def __init__(self, base: str = "mlp", base_params: dict | None = None, random_state: int = 0):
        self.base = base
        self.base_params = base_params
        self.random_state = random_state

    def _base(self) -> Learner:
        if not hasattr(self, "_base_learner"):
            from imlbench.core.registry import resolve

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
        return tuple(v for v in self._base().supported_views() if v in VIEWS and VIEWS[v].tagged)

    def supports(self, capability: str) -> bool:
        return self._base().supports(capability)

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

    @property
    def stage2_uses_stage1(self) -> bool:  # as its base learner
        return getattr(self._base(), "stage2_uses_stage1", True)

    def __getattr__(self, name: str):
        """`predict_scores` exactly when the base learner has it (answer scores are optional)."""
        if name == "predict_scores" and callable(getattr(self._base(), "predict_scores", None)):
            return lambda queries, candidates: self._base().predict_scores(blind(queries), candidates)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def blind(data):
    """The same data without tag information."""
    return view_of(data).hide_tags(data)
