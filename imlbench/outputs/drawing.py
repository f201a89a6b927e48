"""What every figure shares: output formats, subset colours and names, saving, Student-t intervals."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from scipy import stats

# --------------------------------------------------------------------------------------------
# figures


FORMATS = ("png", "svg")


# The subsets of the paper's figures, in drawing order, with a colour and a line style each:
# stage-2 definitions solid, held-out questions about stage-1 variables dashed, the baseline dotted.
CURVE_SUBSETS = {
    "d1consis": ("d1consis (tag1, reliable)", "#1b7837", "-"),
    "d2consis": ("d2consis (tag2, unreliable)", "#c51b7d", "-"),
    "d3consis": ("d3consis (tag3, neutral)", "#2166ac", "-"),
    "qd1consis": ("qd1consis (held-out q)", "#7fbf7b", "--"),
    "qd2incons": ("qd2incons (held-out q)", "#e9a3c9", "--"),
    "qd1incons": ("qd1incons (held-out q)", "#b8e186", "--"),
    "qd2consis": ("qd2consis (held-out q)", "#f1b6da", "--"),
    "q": ("q (held-out q, no defs)", "#878787", "--"),
    "no_qd_baseline": ("no_qd_baseline (guessing)", "#000000", ":"),
}


TAG_COLOURS = {"tag1": "#1b7837", "tag2": "#c51b7d", "tag3": "#2166ac"}


def save_figure(fig: Figure, stem: Path, formats: Iterable[str]) -> list[Path]:
    FigureCanvasAgg(fig)
    paths = []
    for fmt in formats:
        path = stem.parent / f"{stem.name}.{fmt}"  # not with_suffix: names hold dots (0.5)
        fig.savefig(path, format=fmt, dpi=100, bbox_inches="tight", metadata={"Date": None} if fmt == "svg" else None)
        if fmt == "png":  # a 256-colour palette: a third of the bytes, no visible change for line plots
            with Image.open(path) as image:
                small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
            small.save(path, optimize=True)
        paths.append(path)
    return paths


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and t-based CI; (mean, mean, mean) for a single value: the curve bands, drawn like the
    leaderboard's intervals (scoring v2)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return mean, mean - half, mean + half
