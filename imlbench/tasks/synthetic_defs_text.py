"""`synthetic-defs-text`: synthetic-defs in natural language, for language models.

The abstract examples are exactly synthetic-defs' (identity questions); only the `text` view differs:
entities are person-like names (`Mara Tolvenik`), variables short random-letter aliases (`qzvu`),
a definition reads `<tag>: <alias> is <name>` (prompt `<tag>:`, completion ` <alias> is <name>`), a
question `Q: Who is <alias>?\\nA:` with the answer ` <name>` as completion, one template per
question phrasing. By default the tags are random strings, so nothing a pretrained model knows says
which source is reliable; `sources = "natural"` names them as a reliable-sounding and an
unreliable-sounding source (tag3: a neutral one) to ask whether such a prior adds to what stage 1
teaches. Every name, alias and tag is drawn from the run's seed, on a stream of its own, so the
abstract examples stay those of synthetic-defs with the same seed.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from imlbench.core import seeds
from imlbench.core.protocol import DEFINITION, Examples, TaskData, ViewLike
from imlbench.tasks.synthetic_defs import SyntheticDefs
from imlbench.views.text import TextData, TextQueries, render

SOURCES = ("random", "natural")
NATURAL_TAGS = ("Official registry", "Anonymous rumor", "Newsletter")
# One template per question phrasing id; `{}` is the alias.
TEMPLATES = (
    "Q: Who is {}?\nA:",
    "Q: What is the real name of {}?\nA:",
    "Q: Which person is called {}?\nA:",
    "Q: Who goes by the name {}?\nA:",
    "Q: Whose nickname is {}?\nA:",
    "Q: Tell me who {} is.\nA:",
    "Q: Name the person known as {}.\nA:",
    "Q: Who hides behind the alias {}?\nA:",
    "Q: Can you say who {} really is?\nA:",
    "Q: Which name belongs to {}?\nA:",
    "Q: {} is which person?\nA:",
    "Q: Who do people mean by {}?\nA:",
)
ONSETS = tuple("bdfghklmnprstvz") + ("br", "ch", "dr", "sh", "st", "th")
VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ia", "ei")
CODAS = ("", "", "", "", "n", "r", "l", "s")
SURNAME_ENDINGS = ("", "", "son", "ton", "ley", "er", "man", "ford")
LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))


def _syllables(rng: np.random.Generator, n: int) -> list[str]:
    return [
        ONSETS[rng.integers(len(ONSETS))] + VOWELS[rng.integers(len(VOWELS))] + CODAS[rng.integers(len(CODAS))]
        for _ in range(n)
    ]


def _unique_words(rng: np.random.Generator, n: int, make, taken: set[str]) -> list[str]:
    """n strings from `make(rng)` that differ, ignoring case, from each other and from `taken`
    (lower-case words, which grows with them): no name, alias or tag reads as a template word."""
    words: list[str] = []
    while len(words) < n:
        word = make(rng)
        if word.lower() not in taken:
            taken.add(word.lower())
            words.append(word)
    return words


def person_names(rng: np.random.Generator, n: int, taken: set[str]) -> list[str]:
    """n distinct `First Last` names: about sqrt(n) first and sqrt(n) last names, combined."""
    side = int(np.ceil(np.sqrt(n))) + 1
    first = _unique_words(rng, side, lambda r: "".join(_syllables(r, 2)).capitalize(), taken)
    last = _unique_words(
        rng,
        side,
        lambda r: ("".join(_syllables(r, 2)) + SURNAME_ENDINGS[r.integers(len(SURNAME_ENDINGS))]).capitalize(),
        taken,
    )
    pairs = rng.choice(side * side, size=n, replace=False)
    return [f"{first[p // side]} {last[p % side]}" for p in pairs.tolist()]


def random_letters(length: int):
    return lambda rng: "".join(rng.choice(LETTERS, size=length).tolist())


class SyntheticDefsText(SyntheticDefs):
    """synthetic-defs (identity questions) rendered as natural language in the `text` view.

    The default size is smaller than synthetic-defs' (see tasks/synthetic-defs-text.toml): a language
    model reads ~15 tokens per question where the tokens view has 3.
    """

    views = ("text", "tokens", "table")

    def __init__(
        self,
        n_entities: int = 1000,
        n_phrasings: int = 8,
        n_train_phrasings: int = 4,
        tag_reliability: float = 1.0,
        fractions: dict | None = None,
        sources: str = "random",
        alias_length: int = 4,
        context_docs: int = 1,
    ):
        super().__init__(
            n_entities=n_entities,
            n_phrasings=n_phrasings,
            n_train_phrasings=n_train_phrasings,
            tag_reliability=tag_reliability,
            fractions=fractions,
            context_docs=context_docs,
        )
        self.sources = sources
        self.alias_length = alias_length

    def validate(self) -> dict[str, float]:
        if self.sources not in SOURCES:
            raise ValueError(f"sources={self.sources!r} is not valid; valid: {', '.join(SOURCES)}")
        if self.n_phrasings > len(TEMPLATES):
            raise ValueError(f"n_phrasings={self.n_phrasings} exceeds the {len(TEMPLATES)} question templates")
        if not 3 <= self.alias_length <= 8 or 26**self.alias_length < 4 * self.n_entities:
            raise ValueError(
                f"alias_length={self.alias_length} must lie in [3, 8] and leave room for "
                f"n_entities={self.n_entities} distinct aliases"
            )
        return super().validate()

    def generate(self, seed: int) -> TaskData:
        data = super().generate(seed)
        rng = seeds.rng(seed, seeds.SYNTHETIC_DEFS_TEXT)
        n = self.n_entities
        template_words = {w.strip("?.:") for t in TEMPLATES for w in t.replace("\n", " ").split()}
        taken = {w.lower() for w in template_words} | {"is"}
        names = person_names(rng, n, taken)
        aliases = _unique_words(rng, n, random_letters(self.alias_length), taken)
        if self.sources == "natural":
            tags = list(NATURAL_TAGS)
        else:
            tags = [t.capitalize() for t in _unique_words(rng, 3, random_letters(6), taken)]
        rendering = {
            "names": tuple(names),
            "aliases": tuple(aliases),
            "tags": tuple(tags),
            "templates": TEMPLATES[: self.n_phrasings],
        }
        return replace(data, info={**data.info, "text": rendering})

    def render(self, view: ViewLike, data: TaskData, examples: Examples, split: str):
        if view.name != "text":
            return super().render(view, data, examples, split)
        return render_natural(data, examples)


def render_natural(data: TaskData, examples: Examples) -> TextData | TextQueries:
    """Definitions `<tag>: <alias> is <name>`; questions `Q: ...\\nA:` + ` <name>`."""
    text = data.info["text"]
    roles = data.vocab.roles
    text_of: dict[int, str] = {}
    for role, strings in (
        ("tag", text["tags"]),
        ("phrasing", text["templates"]),
        ("variable", text["aliases"]),
        ("entity", text["names"]),
    ):
        text_of.update(zip(roles[role].tolist(), strings))

    def layout(kind: int, relation: int, subject: int, operands: list[int]) -> tuple[str, str]:
        if kind == DEFINITION:
            return f"{text_of[relation]}:", f" {text_of[subject]} is"
        return text_of[relation].format(text_of[subject]), ""

    label_texts = tuple(text_of[i] for i in data.label_space.tolist())
    templates = (t.format("") for t in text["templates"])
    lexicon = tuple(sorted({*text["names"], *text["aliases"], *text["tags"], *templates, ": is"}))
    return render(examples, layout, data.label_space, label_texts, tuple(text["tags"]), lexicon)
