"""imlbench: a learner-agnostic benchmark for implicit meta-learning (PROTOCOL.md)."""

from importlib import metadata

from imlbench.api import leaderboard, plan, run
from imlbench.protocol import Learner, Task
from imlbench.registry import ImlbenchError
from imlbench import text as _text  # noqa: F401, E402  registers the `text` view beside views.py's

try:
    __version__ = metadata.version("imlbench")
except metadata.PackageNotFoundError:  # running from a checkout that is not installed
    __version__ = "0+unknown"

__all__ = ["ImlbenchError", "Learner", "Task", "leaderboard", "plan", "run", "__version__"]
