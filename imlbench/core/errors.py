"""The one user-facing error type and the helpers that keep its messages to one line."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ImlbenchError(Exception):
    """A user-facing error: one line naming what was wrong and what is valid."""


def one_line(text: object) -> str:
    """Any message as one line (error messages and exceptions may span several)."""
    return " ".join(str(text).split())


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """ "; did you mean rf?" for a near miss (difflib), else "": the end of an unknown-name error."""
    close = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""
