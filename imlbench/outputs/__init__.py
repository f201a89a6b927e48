"""What a person reads: the console table, figures, the Markdown report."""
