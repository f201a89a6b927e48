"""`synthetic-defs`: aliases defined by tagged sources, and questions about what they stand for.

Entities and variables are opaque tokens; every variable aliases one entity. A definition
`<tag> <variable> <entity>` says which; a question `<phrasing> <variable>` asks for the entity
(identity mode) or for one of its attributes (attributes mode, where facts `<entity> <phrasing>
<value>` state attributes by entity name, so answering needs variable -> entity -> attribute).
"""

from __future__ import annotations

import numpy as np

from imlbench.core import seeds
from imlbench.core.protocol import ALL, DEFINITION, FACT, HELD_OUT, QUESTION, TAGS, Examples, Task, TaskData, Vocab
from imlbench.tasks import design
from imlbench.views.base import PAD, is_query, pack_by_subject

QUESTION_MODES = ("identity", "attributes")


class SyntheticDefs(Task):
    """The default task of the benchmark (PROTOCOL §6)."""

    views = ("tokens", "table", "text")
    # one document per sequence is the task without context packing: its records keep their keys
    identity_neutral = {"context_docs": 1}

    def __init__(
        self,
        n_entities: int = 1000,
        n_phrasings: int = 8,
        n_train_phrasings: int = 4,
        questions: str = "identity",
        tag_reliability: float = 1.0,
        n_attribute_values: int = 10,
        fractions: dict | None = None,
        context_docs: int = 1,
    ):
        self.n_entities = n_entities
        self.n_phrasings = n_phrasings
        self.n_train_phrasings = n_train_phrasings
        self.questions = questions
        self.tag_reliability = tag_reliability
        self.n_attribute_values = n_attribute_values
        self.fractions = fractions
        self.context_docs = context_docs

    def validate(self) -> None:
        if self.questions not in QUESTION_MODES:
            raise ValueError(f"questions={self.questions!r} is not a question mode; valid: {', '.join(QUESTION_MODES)}")
        if not 1 <= self.n_train_phrasings < self.n_phrasings:
            raise ValueError(
                f"n_train_phrasings={self.n_train_phrasings} must lie in [1, n_phrasings={self.n_phrasings})"
            )
        if self.n_entities < 20:
            raise ValueError(f"n_entities={self.n_entities} is too small; use at least 20")
        design.check_design_params(self.fractions, self.tag_reliability)
        if self.context_docs < 1:
            raise ValueError(f"context_docs={self.context_docs} must be at least 1 (documents per training sequence)")

    def encode(self, view, data: TaskData, examples: Examples, split: str):
        """The view's encoding; with `context_docs = k > 1`, training documents about one variable, up
        to k, share one context (its definition first, then its questions): one sequence in the tokens
        view (`pack_by_subject`), preceding documents in each prompt in the text view
        (`pack_text_by_subject`). Queries stay one per sequence; the table view has no sequences."""
        encoded = self.render(view, data, examples, split)
        if self.context_docs == 1 or is_query(examples):
            return encoded
        if view.name == "tokens":
            return pack_by_subject(encoded, examples, self.context_docs)
        if view.name == "text":
            from imlbench.views.text import pack_text_by_subject

            return pack_text_by_subject(encoded, examples, self.context_docs)
        raise ValueError(
            f"context_docs={self.context_docs} packs token sequences, which the {view.name} "
            f"view does not have; use a learner that reads tokens or text, or context_docs=1"
        )

    def render(self, view, data: TaskData, examples: Examples, split: str):
        """One document per row, as the view (or a subclass's own rendering) encodes it."""
        return super().encode(view, data, examples, split)

    def make_vocab(self) -> Vocab:
        groups = {
            "special": [PAD],
            "tag": list(TAGS),
            "phrasing": [f"ask{j}" for j in range(self.n_phrasings)],
            "variable": [f"v{i:04d}" for i in range(self.n_entities)],
            "entity": [f"e{i:04d}" for i in range(self.n_entities)],
        }
        if self.questions == "attributes":
            groups["value"] = [f"a{j}={m}" for j in range(self.n_phrasings) for m in range(self.n_attribute_values)]
        return Vocab.build(groups)

    def generate(self, seed: int) -> TaskData:
        self.validate()
        rng = seeds.rng(seed, seeds.SYNTHETIC_DEFS)
        vocab = self.make_vocab()
        content = Aliases(self, vocab, rng)
        members = design.assign_subsets(self.n_entities, self.fractions, self.tag_reliability, rng)
        facts = [content.facts()] if self.questions == "attributes" else []
        stage1, stage2, test = design.build(content, members, rng, facts)
        label_space = np.sort(np.concatenate([vocab.roles["entity"], vocab.roles.get("value", np.zeros(0, np.int64))]))
        sizes = {name: int(len(v)) for name, v in members.items()}
        return TaskData(vocab, label_space, stage1, stage2, test, info={"variables_per_subset": sizes})


class Aliases(design.Content):
    """Variable i aliases entity `entity_of[i]`; each variable's phrasings are split at random into
    trained and held-out ones; in attributes mode every entity has one attribute value per phrasing."""

    def __init__(self, task: SyntheticDefs, vocab: Vocab, rng: np.random.Generator):
        n, n_phr = task.n_entities, task.n_phrasings
        self.vocab, self.rng, self.n_values = vocab, rng, task.n_attribute_values
        self.attributes = task.questions == "attributes"
        self.entity_of = rng.permutation(n)
        self.attribute = rng.integers(task.n_attribute_values, size=(n, n_phr))  # entity x phrasing
        order = rng.permuted(np.tile(np.arange(n_phr), (n, 1)), axis=1)  # per variable, trained first
        split = task.n_train_phrasings
        self.phrasings = {
            design.TRAINED: order[:, :split],
            HELD_OUT: order[:, split:],
            ALL: np.tile(np.arange(n_phr), (n, 1)),
        }

    def attribute_values(self, entities: np.ndarray, phrasings: np.ndarray) -> np.ndarray:
        return self.vocab.roles["value"][phrasings * self.n_values + self.attribute[entities, phrasings]]

    def questions(self, variables: np.ndarray, which: str, subset: str) -> Examples:
        """`<phrasing> <variable>` -> the entity (identity) or its attribute for that phrasing."""
        phrasings = self.phrasings[which][variables]
        rows = np.repeat(variables, phrasings.shape[1])
        phr = phrasings.reshape(-1)
        entities = self.entity_of[rows]
        answers = self.attribute_values(entities, phr) if self.attributes else self.vocab.roles["entity"][entities]
        return design.make_examples(
            QUESTION, self.vocab.roles["phrasing"][phr], self.vocab.roles["variable"][rows], answers, subset
        )

    def definitions(self, variables: np.ndarray, tag: str, values: np.ndarray, subset: str) -> Examples:
        return design.make_examples(
            DEFINITION,
            np.full(len(variables), self.vocab.id(tag)),
            self.vocab.roles["variable"][variables],
            values,
            subset,
        )

    def values(self, variables: np.ndarray) -> np.ndarray:
        return self.vocab.roles["entity"][self.entity_of[variables]]

    def wrong_values(self, variables: np.ndarray) -> np.ndarray:
        return design.derangement(self.values(variables), self.rng, self.vocab.roles["entity"])

    def facts(self) -> Examples:
        """`<entity> <phrasing> <value>` for every entity and phrasing (attributes mode)."""
        n, n_phr = self.attribute.shape
        entities, phr = np.repeat(np.arange(n), n_phr), np.tile(np.arange(n_phr), n)
        return Examples(
            np.full(len(entities), FACT),
            self.vocab.roles["phrasing"][phr],
            self.vocab.roles["entity"][entities],
            self.attribute_values(entities, phr),
            np.full(len(entities), -1),
        )
