"""Small helpers shared by modules that write files."""

from __future__ import annotations

import re


def safe_name(text: str) -> str:
    """`text` as one file or folder name: runs of anything but letters, digits, `.`, `_` and `-`
    become `_`. Record folders are named this way, so changing the rule would orphan old results."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "unnamed"
