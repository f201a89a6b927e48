"""imlbench: a learner-agnostic benchmark for implicit meta-learning (PROTOCOL.md).

The names below load on first use, so that a plugin's `import imlbench.protocol` imports the
protocol types and nothing of the harness, execution or scoring.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "leaderboard": "imlbench.api",
    "plan": "imlbench.api",
    "run": "imlbench.api",
    "ImlbenchError": "imlbench.core.errors",
    "Learner": "imlbench.core.protocol",
    "Task": "imlbench.core.protocol",
}

__all__ = ["ImlbenchError", "Learner", "Task", "leaderboard", "plan", "run", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib import metadata

        try:
            return metadata.version("imlbench")
        except metadata.PackageNotFoundError:  # running from a checkout that is not installed
            return "0+unknown"
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'imlbench' has no attribute {name!r}")
