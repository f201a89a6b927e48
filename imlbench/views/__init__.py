"""Views: how abstract examples become what a learner consumes (PROTOCOL §4): the table, tokens and
image views in `base`, the text view of language models in `text`. Each is registered through the
entry-point group `imlbench.views`, so importing this package registers nothing."""
