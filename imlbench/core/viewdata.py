"""View data: all a learner is ever handed. Plain data, importable from `imlbench.protocol` by any
plugin; which view a class belongs to, and how examples become it, is said once, by the view
objects of `imlbench.views`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd  # the table view's frames: a plugin importing the protocol need not load pandas


@dataclass(frozen=True)
class TableData:
    """`table` view training data: categorical columns (fixed, task-wide categories) and labels."""

    X: pd.DataFrame
    y: np.ndarray
    label_space: np.ndarray


@dataclass(frozen=True)
class TableQueries:
    X: pd.DataFrame


@dataclass(frozen=True)
class TokenData:
    """`tokens` view training data: padded sequences, which positions carry loss, the answer position."""

    tokens: np.ndarray  # (n, length) int64
    loss_mask: np.ndarray  # (n, length) bool: position i is predicted from tokens[:i]
    answer_pos: np.ndarray  # (n,) index of the answer token
    vocab_size: int
    pad_id: int
    tag_ids: np.ndarray  # ids of the tag tokens (what a tag-blind learner removes)


@dataclass(frozen=True)
class TokenQueries:
    """Sequences cut before the answer (answer and later positions are padding)."""

    tokens: np.ndarray
    answer_pos: np.ndarray
    vocab_size: int
    pad_id: int
    tag_ids: np.ndarray


@dataclass(frozen=True)
class ImageData:
    """`image` view training data: grayscale images in [0, 1] and labels."""

    images: np.ndarray  # (n, height, width) float32
    y: np.ndarray
    label_space: np.ndarray


@dataclass(frozen=True)
class ImageQueries:
    images: np.ndarray
