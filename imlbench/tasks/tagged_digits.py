"""`tagged-digits`: the vision analog of synthetic-defs (PROTOCOL §6).

The abstract examples are synthetic-defs's identity examples (same subsets, stages, fractions and
`tag_reliability`); only their encoding differs. An image is one row of 8x8 glyphs: a *marker* (one
of the three tags, or one of the question phrasings) followed by the variable's code written in
handwritten digits from scikit-learn's bundled `load_digits` (nothing is downloaded). The label is
the entity behind the variable, so a definition image `tag1 042 -> e0017` and a question image
`ask3 042 -> e0017` share only the handwritten code: to answer questions about a stage-2 variable
the learner must have internalized its definition image, through the code it reads.

Everything visual is drawn from the seed: the markers (random binary patterns, kept away from every
digit), the variables' codes, and a split of the handwriting samples so that test images use samples
never seen in training. Each image is rendered from its own random stream keyed by (seed, handwriting
pool, relation, variable, copy), never by the target or the stage, so a query's pixels cannot reveal
its answer, the same (parameters, seed, split, examples) always give the same pixels, and a stage-2
definition looks the same whether it is trained in stage 2 or in the one-stage union.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from imlbench.core import seeds
from imlbench.core.protocol import (
    DEFINITION,
    QUESTION,
    Examples,
    ImageData,
    ImageQueries,
    TableData,
    TableQueries,
    TaskData,
    ViewLike,
)
from imlbench.tasks.synthetic_defs import SyntheticDefs
from imlbench.views.base import is_query

GLYPH = 8  # glyphs are 8x8, the size of scikit-learn's digits
POOL_OF_SPLIT = {"stage1": "train", "stage2": "train", "test": "test"}
POOL_CODE = {"train": 1, "test": 2}


@lru_cache(maxsize=1)
def handwriting() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 handwritten digits, scaled to [0, 1]: (images, digit labels)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)


class TaggedDigits(SyntheticDefs):
    """Synthetic-defs identity examples rendered as handwritten strips; views `image` and `table`.

    `n_renders` training renders per example (each with other handwriting) stand in for the fresh
    renders a vision model would see every epoch: the harness encodes each stage's data once.
    Queries (every evaluation) are always one render per example: copy 0, the same pixels as the
    first training render of that example, so "the definitions are learned" means these images.
    """

    views = ("image", "table")
    separable_tags = False  # the tag is drawn in the pixels: no view keeps it apart
    has_pictures = True

    def __init__(
        self,
        n_entities: int = 420,
        n_phrasings: int = 8,
        n_train_phrasings: int = 4,
        tag_reliability: float = 1.0,
        fractions: dict | None = None,
        n_digits: int = 3,
        n_renders: int = 4,
        test_handwriting_fraction: float = 0.3,
        marker_density: float = 0.5,
    ):
        super().__init__(
            n_entities=n_entities,
            n_phrasings=n_phrasings,
            n_train_phrasings=n_train_phrasings,
            questions="identity",
            tag_reliability=tag_reliability,
            fractions=fractions,
        )
        self.n_digits = n_digits
        self.n_renders = n_renders
        self.test_handwriting_fraction = test_handwriting_fraction
        self.marker_density = marker_density

    def show(self, out_path: str | Path, seed: int = 0) -> Path:
        """`imlbench show tagged-digits --out x.png`: what the learner sees."""
        return draw_examples(self, out_path, seed)

    def validate(self) -> None:
        super().validate()
        if self.n_digits < 1 or 10**self.n_digits < self.n_entities:
            raise ValueError(f"n_digits={self.n_digits} cannot give {self.n_entities} variables distinct codes")
        if self.n_renders < 1:
            raise ValueError("n_renders must be at least 1")
        if not 0.05 <= self.test_handwriting_fraction <= 0.95:
            raise ValueError("test_handwriting_fraction must lie in [0.05, 0.95]")
        if not 0.2 <= self.marker_density <= 0.8:
            raise ValueError("marker_density must lie in [0.2, 0.8]")

    @property
    def image_shape(self) -> tuple[int, int]:
        return GLYPH, GLYPH * (1 + self.n_digits)

    def generate(self, seed: int) -> TaskData:
        data = super().generate(seed)
        rng = seeds.rng(seed, seeds.TAGGED_DIGITS)
        vocab = data.vocab
        n_var = len(vocab.roles["variable"])
        codes = rng.choice(10**self.n_digits, size=n_var, replace=False)
        code_digits = (codes[:, None] // 10 ** np.arange(self.n_digits - 1, -1, -1)) % 10
        marker_ids = np.concatenate([vocab.roles["tag"], vocab.roles["phrasing"]])
        images, labels = handwriting()
        train_pool, test_pool = {}, {}
        for d in range(10):  # per digit, a seeded split of its handwriting samples
            samples = rng.permutation(np.flatnonzero(labels == d))
            n_test = int(round(self.test_handwriting_fraction * len(samples)))
            test_pool[d], train_pool[d] = np.sort(samples[:n_test]), np.sort(samples[n_test:])
        render = {
            "seed": int(seed),
            "codes": codes,  # by variable index (vocab id - first variable id)
            "code_digits": code_digits,
            "first_variable": int(vocab.roles["variable"][0]),
            "markers": dict(zip(marker_ids.tolist(), make_markers(len(marker_ids), rng, images, self.marker_density))),
            "pools": {"train": train_pool, "test": test_pool},
        }
        return TaskData(
            vocab, data.label_space, data.stage1, data.stage2, data.test, info={**data.info, "render": render}
        )

    # -----------------------------------------------------------------------------------------

    def render(self, data: TaskData, examples: Examples, split: str, copy: int = 0) -> np.ndarray:
        """Images (n, 8, 8 * (1 + n_digits)) float32 in [0, 1]: the marker, then the code's digits.

        Each example's handwriting comes from a stream keyed by (seed, pool, relation, variable,
        copy): deterministic, independent of the example's position, stage and target.
        """
        if split not in POOL_OF_SPLIT:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(POOL_OF_SPLIT)}")
        info = data.info["render"]
        glyphs, _ = handwriting()
        pool_name = POOL_OF_SPLIT[split]
        pool = info["pools"][pool_name]
        out = np.zeros((len(examples), *self.image_shape), dtype=np.float32)
        for i, (relation, subject) in enumerate(zip(examples.relation.tolist(), examples.subject.tolist())):
            out[i, :, :GLYPH] = info["markers"][relation]
            digits = info["code_digits"][subject - info["first_variable"]]
            stream = np.random.default_rng([info["seed"], POOL_CODE[pool_name], relation, subject, copy])
            for j, d in enumerate(digits.tolist()):
                sample = pool[d][stream.integers(len(pool[d]))]
                out[i, :, GLYPH * (1 + j) : GLYPH * (2 + j)] = glyphs[sample]
        return out

    def encode(self, view: ViewLike, data: TaskData, examples: Examples, split: str):
        """`image`: strips; `table`: the same strips' pixels as numeric columns `p{row}_{col}`.

        Training encodings hold `n_renders` renders per example (copies 0..n_renders-1, grouped by
        copy); queries hold one (copy 0) and never any target.
        """
        if view.name not in self.views:
            raise ValueError(f"task tagged-digits has no view {view.name!r}; views: {', '.join(self.views)}")
        query = is_query(examples)
        copies = 1 if query else self.n_renders
        images = np.concatenate([self.render(data, examples, split, c) for c in range(copies)])
        labels = np.tile(examples.target.astype(np.int64), copies)
        if view.name == "image":
            return ImageQueries(images) if query else ImageData(images, labels, data.label_space)
        X = pixel_table(images)
        return TableQueries(X) if query else TableData(X, labels, data.label_space)


def pixel_table(images: np.ndarray) -> pd.DataFrame:
    """One float column per pixel, row-major: `p{row}_{col}`."""
    n, height, width = images.shape
    names = [f"p{r}_{c:02d}" for r in range(height) for c in range(width)]
    return pd.DataFrame(images.reshape(n, height * width), columns=names)


def make_markers(
    n: int, rng: np.random.Generator, digits: np.ndarray, density: float, min_distance: float = 12.0
) -> list[np.ndarray]:
    """`n` random binary 8x8 patterns, each at least `min_distance` (L1) from every handwritten
    digit and from each other, so that a marker can never be read as a digit."""
    flat = digits.reshape(len(digits), -1)
    markers: list[np.ndarray] = []
    for _ in range(10_000):
        candidate = (rng.random(GLYPH * GLYPH) < density).astype(np.float32)
        far_from_digits = np.abs(flat - candidate).sum(axis=1).min() >= min_distance
        far_from_markers = all(np.abs(m - candidate).sum() >= min_distance for m in markers)
        if far_from_digits and far_from_markers:
            markers.append(candidate)
            if len(markers) == n:
                return [m.reshape(GLYPH, GLYPH) for m in markers]
    raise RuntimeError("could not draw distinct markers")


def draw_examples(task: TaggedDigits, out_path: str | Path, seed: int = 0) -> Path:
    """One definition image and one question image about the same variable, labelled, so a
    reader sees what an image learner is given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = task.generate(seed)
    vocab, info = data.vocab, data.info["render"]
    stage1 = data.stage1
    definition = np.flatnonzero((stage1.kind == DEFINITION) & (stage1.relation == vocab.id("tag1")))[0]
    variable = stage1.subject[definition]
    question = np.flatnonzero((stage1.kind == QUESTION) & (stage1.subject == variable))[0]
    chosen = stage1.select(np.array([definition, question]))
    images = task.render(data, chosen.without_targets(), "stage1")
    code = "".join(str(d) for d in info["code_digits"][variable - info["first_variable"]])
    entity = vocab.tokens[chosen.target[0]]
    titles = [
        f"definition: {vocab.tokens[chosen.relation[0]]} + code {code} -> {entity}",
        f"question: {vocab.tokens[chosen.relation[1]]} + code {code} -> ? (answer {entity})",
    ]
    fig, axes = plt.subplots(2, 1, figsize=(6, 3.6))
    for ax, image, title in zip(axes, images, titles):
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xticks(
            [GLYPH * (k + 0.5) - 0.5 for k in range(1 + task.n_digits)],
            ["marker"] + [f"digit {k + 1}" for k in range(task.n_digits)],
            fontsize=8,
        )
        ax.set_yticks([])
        for k in range(1, 1 + task.n_digits):
            ax.axvline(GLYPH * k - 0.5, color="tab:blue", lw=0.6, ls=":")
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=150)
    plt.close(fig)
    return out_path
