"""A learner for the reading-window tests (protocol v3): it memorizes the rows it trains on at a
checkpoint it is told, so the evaluation point p of every fit is known in advance. No torch."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from imlbench import Learner
from imlbench.core.protocol import LearnerTags


class Memorizer(Learner):
    """A lookup table on the table view: a fit trains `epochs` checkpoints (a continued fit
    `stage2_epochs`) and knows its rows' labels from its checkpoint `learn_at` on (never where that
    lies past its budget); a row it does not know gets the first training label. It scores answers
    (`predict_scores`), and holds a `random_state` it does not use."""

    tags = LearnerTags(continue_training=True, relative_cost=0.05)

    def __init__(self, epochs: int = 6, stage2_epochs: int = 6, learn_at: int = 2, random_state: int = 0):
        self.epochs = epochs
        self.stage2_epochs = stage2_epochs
        self.learn_at = learn_at
        self.random_state = random_state

    def supported_views(self) -> tuple[str, ...]:
        return ("table",)

    def fit(self, data) -> Iterator[None]:
        self.known_: dict[tuple, int] = {}
        self.default_ = int(np.asarray(data.y)[0])
        yield from self._train(data, self.epochs)

    def continue_fit(self, data) -> Iterator[None]:
        yield from self._train(data, self.stage2_epochs)

    def _train(self, data, epochs: int) -> Iterator[None]:
        rows = list(zip(_keys(data.X), np.asarray(data.y).tolist()))
        for epoch in range(1, epochs + 1):
            if epoch == self.learn_at:
                self.known_.update(rows)
            yield

    def predict(self, queries) -> np.ndarray:
        return np.array([self.known_.get(k, self.default_) for k in _keys(queries.X)], dtype=np.int64)

    def predict_scores(self, queries, candidates: np.ndarray) -> np.ndarray:
        predicted = self.predict(queries)
        return np.where(predicted[:, None] == np.asarray(candidates)[None, :], 0.0, -5.0)


def _keys(frame) -> list[tuple]:
    return list(frame.astype(str).itertuples(index=False, name=None))
