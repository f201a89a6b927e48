"""Views: how abstract examples become what a learner consumes (PROTOCOL §4): the table, tokens and
image views in `base`, the text view of language models in `text`. Importing the package registers
all four."""

from imlbench.views import text  # noqa: F401  registers the `text` view beside base's
from imlbench.views.base import VIEWS, View, get_view, register_view

__all__ = ["VIEWS", "View", "get_view", "register_view"]
