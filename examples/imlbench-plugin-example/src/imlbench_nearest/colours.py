"""A complete imlbench task plugin in one file: the colours of things, stated by tagged sources.

Each of `n_things` things has one of `n_colours` colours. A definition `<tag> <thing> <colour>` states
it; a question `<phrasing> <thing>` asks it, in two phrasings seen in training and two held out for
the test. The task says only what definitions and questions look like (`Paint`); the design builder
that every built-in task uses does the rest: it splits the things into the protocol's subsets and
builds stage 1, stage 2 and the test, with consistent or inconsistent definitions where the design
table says so.
"""

from __future__ import annotations

import numpy as np

from imlbench import Task
from imlbench.protocol import ALL, DEFINITION, HELD_OUT, QUESTION, TAGS, Examples, TaskData, Vocab
from imlbench.tasks import design
from imlbench.views.base import PAD

PHRASINGS = {design.TRAINED: ["colour-of", "paint-of"], HELD_OUT: ["shade-of", "hue-of"]}
PHRASINGS[ALL] = PHRASINGS[design.TRAINED] + PHRASINGS[HELD_OUT]


class Colours(Task):
    views = ("table", "tokens", "text")  # the generic views: every view's learners can run on it

    def __init__(self, n_things: int = 1000, n_colours: int = 8):  # parameters only, as for a learner
        self.n_things = n_things
        self.n_colours = n_colours

    def validate(self) -> None:
        if self.n_things < 40:
            raise ValueError(f"n_things={self.n_things} is too small; use at least 40")
        if self.n_colours < 2:
            raise ValueError(f"n_colours={self.n_colours} leaves no wrong colour; use at least 2")

    def generate(self, seed: int) -> TaskData:
        """A pure function of (parameters, seed): seed i gives every learner the same data."""
        self.validate()
        rng = np.random.default_rng([seed, 0xC0105])  # this task's own stream of the seed
        vocab = Vocab.build(
            {
                "special": [PAD],
                "tag": list(TAGS),
                "phrasing": PHRASINGS[ALL],
                "variable": [f"thing{i}" for i in range(self.n_things)],
                "colour": [f"colour{c}" for c in range(self.n_colours)],
            }
        )
        content = Paint(vocab, rng.integers(self.n_colours, size=self.n_things), rng)
        members = design.assign_subsets(self.n_things, fractions=None, tag_reliability=1.0, rng=rng)
        stage1, stage2, test = design.build(content, members, rng)
        sizes = {name: len(things) for name, things in members.items()}
        return TaskData(vocab, vocab.roles["colour"], stage1, stage2, test, info={"variables_per_subset": sizes})


class Paint(design.Content):
    """Thing i is `colour[i]`: what its questions ask, and what a consistent definition states."""

    def __init__(self, vocab: Vocab, colour: np.ndarray, rng: np.random.Generator):
        self.vocab, self.colour, self.rng = vocab, colour, rng

    def values(self, things: np.ndarray) -> np.ndarray:
        return self.vocab.roles["colour"][self.colour[things]]

    def wrong_values(self, things: np.ndarray) -> np.ndarray:
        """Any other colour (an inconsistent definition contradicts the questions)."""
        n_colours = len(self.vocab.roles["colour"])
        shift = self.rng.integers(1, n_colours, size=len(things))
        return self.vocab.roles["colour"][(self.colour[things] + shift) % n_colours]

    def definitions(self, things: np.ndarray, tag: str, values: np.ndarray, subset: str) -> Examples:
        return design.make_examples(
            DEFINITION, np.full(len(things), self.vocab.id(tag)), self.vocab.roles["variable"][things], values, subset
        )

    def questions(self, things: np.ndarray, which: str, subset: str) -> Examples:
        """Every thing asked in every phrasing of `which` (trained, held-out or all)."""
        asks = np.array([self.vocab.id(p) for p in PHRASINGS[which]])
        rows = np.repeat(things, len(asks))
        return design.make_examples(
            QUESTION, np.tile(asks, len(things)), self.vocab.roles["variable"][rows], self.values(rows), subset
        )
