"""Built-in tasks. They register through the `imlbench.tasks` entry points, like any plugin."""
