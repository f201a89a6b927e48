"""imlbench: a learner-agnostic benchmark for implicit meta-learning (PROTOCOL.md)."""

from importlib import metadata

from imlbench import views as _views  # noqa: F401  registers every built-in view, the text view included
from imlbench.api import leaderboard, plan, run
from imlbench.core.errors import ImlbenchError
from imlbench.core.protocol import Learner, Task

try:
    __version__ = metadata.version("imlbench")
except metadata.PackageNotFoundError:  # running from a checkout that is not installed
    __version__ = "0+unknown"

__all__ = ["ImlbenchError", "Learner", "Task", "leaderboard", "plan", "run", "__version__"]
