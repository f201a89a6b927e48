"""The learner-agnostic protocol: examples, tasks, learners and the data a learner is handed.

A task produces abstract *examples* (integer arrays in one task-wide vocabulary); views turn them
into what a learner consumes (token sequences, a table, images). A learner only ever sees view data:
training data with targets, and *queries*, which carry no targets. The harness keeps the answer key.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from imlbench.core.viewdata import (  # noqa: F401  re-exported: plugins import them from the protocol
    ImageData,
    ImageQueries,
    TableData,
    TableQueries,
    TokenData,
    TokenQueries,
)

if TYPE_CHECKING:
    pass  # the table view's frames: a plugin importing the protocol need not load pandas

PROTOCOL_VERSION = 3
DEFAULT_THRESHOLD = 0.98  # definition accuracy that marks the evaluation point (PROTOCOL §3)

# Example kinds.
DEFINITION, QUESTION, FACT = 0, 1, 2
KIND_NAMES = ("definition", "question", "fact")

HELD_OUT, ALL = "held-out", "all"  # test questions: phrasings never trained / every phrasing


@dataclass(frozen=True)
class SubsetDesign:
    """One row of the subset design (PROTOCOL §2): what a subset's variables get in each stage.

    `questions`: stage 1 asks about them (trained phrasings); `defined_in`: the stage of their
    definitions (0: none); `tag`, `consistent`: the definitions' tag and whether they agree with the
    questions; `tested_on`: which test questions ask about them; `reverse_of`: the subset takes a
    share 1 - tag_reliability of that subset's variables, definitions reversed (the correlation
    ablation); `weight`: the default share of the variables (the tasks' `fractions` parameter).
    """

    name: str
    questions: bool
    defined_in: int
    tag: str | None
    consistent: bool
    tested_on: str
    reverse_of: str | None
    weight: float


# The design. The code of a subset (Examples.subset) is its index here.
SUBSET_DESIGN = (
    #            name              questions  defined_in  tag     consistent  tested_on  reverse_of   weight
    SubsetDesign("qd1consis", True, 1, "tag1", True, HELD_OUT, None, 0.3),
    SubsetDesign("qd2incons", True, 1, "tag2", False, HELD_OUT, None, 0.3),
    SubsetDesign("qd1incons", True, 1, "tag1", False, HELD_OUT, "qd1consis", 0.0),
    SubsetDesign("qd2consis", True, 1, "tag2", True, HELD_OUT, "qd2incons", 0.0),
    SubsetDesign("q", True, 0, None, True, HELD_OUT, None, 0.1),
    SubsetDesign("d1consis", False, 2, "tag1", True, ALL, None, 0.1),
    SubsetDesign("d2consis", False, 2, "tag2", True, ALL, None, 0.1),
    SubsetDesign("d3consis", False, 2, "tag3", True, ALL, None, 0.1),
    SubsetDesign("no_qd_baseline", False, 0, None, True, ALL, None, 0.05),
)
SUBSETS = tuple(s.name for s in SUBSET_DESIGN)
SUBSET_CODE = {name: code for code, name in enumerate(SUBSETS)}
TAGS = tuple(dict.fromkeys(s.tag for s in SUBSET_DESIGN if s.tag))  # ("tag1", "tag2", "tag3")

HIDDEN = -1  # target value of a query: the answer is not there
# A prediction meaning "no label" (e.g. generated text that matches no label's text). It is no
# vocabulary id and differs from HIDDEN, so it never equals a target: the harness scores it wrong.
NO_ANSWER = -2


@dataclass(frozen=True)
class Vocab:
    """Task-wide vocabulary: token names, and which ids play which role (tag, variable, ...)."""

    tokens: tuple[str, ...]
    roles: dict[str, np.ndarray]

    @classmethod
    def build(cls, groups: dict[str, list[str]]) -> Vocab:
        """Concatenate named groups of token names; each group becomes a role."""
        tokens: list[str] = []
        roles: dict[str, np.ndarray] = {}
        for role, names in groups.items():
            roles[role] = np.arange(len(tokens), len(tokens) + len(names), dtype=np.int64)
            tokens.extend(names)
        if len(set(tokens)) != len(tokens):
            raise ValueError("vocabulary token names must be unique")
        return cls(tuple(tokens), roles)

    def __len__(self) -> int:
        return len(self.tokens)

    def ids(self, *roles: str) -> np.ndarray:
        present = [self.roles[r] for r in roles if r in self.roles]
        return np.concatenate(present) if present else np.zeros(0, dtype=np.int64)

    def id(self, name: str) -> int:
        return self.tokens.index(name)


@dataclass(frozen=True)
class Examples:
    """A batch of abstract examples, one row per document, all ids in the task vocabulary.

    `relation` is the tag of a definition or the phrasing of a question; `subject` the variable (or,
    for facts, the entity); `operands` optional extra tokens per example (padded with -1), e.g. the
    numbers listed in a set-inclusion question.
    """

    kind: np.ndarray
    relation: np.ndarray
    subject: np.ndarray
    target: np.ndarray
    subset: np.ndarray
    operands: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.kind)
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and len(value) != n:
                raise ValueError(f"Examples.{f.name} has {len(value)} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.kind)

    def select(self, mask: np.ndarray) -> Examples:
        return Examples(
            **{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[mask] for f in fields(self)}
        )

    def without_targets(self) -> Examples:
        """The examples as queries: every target replaced by HIDDEN."""
        return replace(self, target=np.full(len(self), HIDDEN, dtype=np.int64))

    @staticmethod
    def concat(parts: list[Examples]) -> Examples:
        def cat(name: str):
            values = [getattr(p, name) for p in parts]
            if any(v is None for v in values):
                return None
            return np.concatenate(values)

        return Examples(**{f.name: cat(f.name) for f in fields(Examples)})


@dataclass(frozen=True)
class TaskData:
    """One generated instance of a task: the vocabulary, the label space and the three splits."""

    vocab: Vocab
    label_space: np.ndarray  # sorted vocab ids that can be a target
    stage1: Examples
    stage2: Examples
    test: Examples
    info: dict[str, Any] = field(default_factory=dict)


# Estimator-style parameters, shared by tasks and learners. ------------------------------------


class Parameterized:
    """scikit-learn's contract: the constructor takes hyperparameters only, `get_params` round-trips."""

    # Parameters whose value here reproduces the behaviour of the class without them: at that value a
    # parameter is left out of a run's identity (its record key), so records made without it stay
    # valid and are reused.
    identity_neutral: ClassVar[dict[str, Any]] = {}

    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        signature = inspect.signature(cls.__init__)
        return {
            name: p.default
            for name, p in signature.parameters.items()
            if name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.param_defaults()}

    def set_params(self, **params: Any):
        valid = self.param_defaults()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"unknown parameter {name!r} for {type(self).__name__}; valid: {', '.join(valid)}")
            setattr(self, name, value)
        return self

    def validate(self) -> Any:
        """Raise ValueError naming a bad parameter value; called before any run starts."""

    def require_at_least_one(self, *names: str) -> None:
        """The common check of sizes and counts (epochs, layers, batch sizes, threads)."""
        for name in names:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class ViewLike(Protocol):
    """What a task is handed of a view (an `imlbench.views.View`): its name and generic encoder."""

    name: str

    def encode(self, data: TaskData, examples: Examples) -> Any: ...


class Task(Parameterized, ABC):
    """A generator of tagged reliable/unreliable data. `generate` must be a pure function of
    (parameters, seed): seed i gives every learner the same data, so comparisons are paired."""

    views: ClassVar[tuple[str, ...]] = ("tokens", "table")
    # False where the task draws the tag into its input in every view (pixels), so that no view
    # keeps it apart and a tag-blind control cannot run on the task.
    separable_tags: ClassVar[bool] = True
    # The equivalence margin (points) of its verdict `none` (PROTOCOL §5): a task whose subsets hold
    # few variables, so that one answer moves accuracy by several points, declares a larger one.
    margin: ClassVar[float] = 10.0
    has_pictures: ClassVar[bool] = False  # `show` saves a picture of what a learner is given

    @abstractmethod
    def generate(self, seed: int) -> TaskData: ...

    def encode(self, view: ViewLike, data: TaskData, examples: Examples, split: str) -> Any:
        """Encode examples for a learner. Queries come in with targets already HIDDEN.

        The default is the view's generic encoder. A task overrides this to render its own input
        (pictures); `split` ("stage1", "stage2", "test") lets it render test items differently
        (e.g. unseen handwriting). The harness hands in the view object, so this module needs
        nothing above it.
        """
        if isinstance(view, str):
            raise TypeError(f"Task.encode takes a view object (imlbench.views.base.get_view({view!r})), not its name")
        return view.encode(data, examples)

    def show(self, out_path: str, seed: int = 0):
        """Save a picture of what a learner is given (tasks with `has_pictures` implement it)."""
        raise NotImplementedError(f"task {type(self).__name__} has no picture to show")


@dataclass(frozen=True)
class LearnerTags:
    """A learner's capabilities and nature in one object (scikit-learn's tags): the harness, the
    planner and the readers ask these, and a record carries the ones its verdict depends on."""

    continue_training: bool = False  # `continue_fit` works, so the multi-step pipelines can run
    hides_tags: bool = False  # runs only on views where the task keeps the tag separate
    is_control: bool = False  # a control, whose verdict must not be `IML` (reports mark it)
    # False where stage 2 cannot depend on what stage 1 taught (a forest that grows new trees on the
    # stage-2 data alone): its two-stage verdict is then a null by construction (PROTOCOL §5)
    stage2_uses_stage1: bool = True
    relative_cost: float = 1.0  # seconds per run relative to rf: parallel grids start long runs first

    @classmethod
    def from_dict(cls, found: dict[str, Any]) -> LearnerTags:
        """Tags sent as plain data (from another process), unknown names ignored."""
        return cls(**{f.name: found[f.name] for f in fields(cls) if f.name in found})


class Learner(Parameterized, ABC):
    """A learner consumes one view and trains in stages.

    `fit` and `continue_fit` are generators: they `yield` at every checkpoint (after an epoch, a
    boosting round, a batch of trees) so the harness can evaluate between yields; the harness may
    close the scored fit at the end of its reading window (checkpoint 2p, PROTOCOL §3), so a fit must
    not depend on running to its end. Between yields the learner must be able to `predict`. Seeded
    learners take a `random_state` hyperparameter; the harness sets it per run.

    Optional: `predict_scores(queries, candidates) -> (n, len(candidates))` log-probabilities (or
    log-scores) of each candidate label id per query, for the continuous effect (PROTOCOL §5). The
    learner scores every candidate; the harness alone knows which one is correct.
    """

    views: ClassVar[tuple[str, ...]] = ()
    tags: ClassVar[LearnerTags] = LearnerTags()
    # What `imlbench search` may vary (PROTOCOL §8): parameter -> {"low", "high"[, "log"]} (ints if both
    # bounds are) or {"choices": [...]}. A learner spec's [search] table replaces it.
    search_space: ClassVar[dict[str, dict[str, Any]]] = {}

    def searched_params(self, values: dict[str, Any]) -> dict[str, Any]:
        """The constructor parameters that realize one point of the search space (here: itself)."""
        return dict(values)

    def supported_views(self) -> tuple[str, ...]:
        return self.views

    def get_tags(self) -> LearnerTags:
        """What this learner is and can do; a wrapper (the tag-blind control) derives it from its base."""
        return self.tags

    def supports(self, capability: str) -> bool:
        return bool(getattr(self.get_tags(), capability, False))

    @abstractmethod
    def fit(self, data) -> Iterator[None]:
        """Train from scratch on `data` (a view's training data), yielding at checkpoints."""

    def continue_fit(self, data) -> Iterator[None]:
        """Keep training the fitted learner on new data (stage 2), yielding at checkpoints."""
        raise NotImplementedError(f"{type(self).__name__} cannot continue training")

    @abstractmethod
    def predict(self, queries) -> np.ndarray:
        """Return one predicted vocab id per query."""
