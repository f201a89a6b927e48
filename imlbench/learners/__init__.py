"""Built-in learners. They register through the `imlbench.learners` entry points, like any plugin."""
