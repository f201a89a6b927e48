"""Small helpers shared by modules that write files."""

from __future__ import annotations

import hashlib
import re


def safe_name(text: str) -> str:
    """`text` as one file or folder name that stays inside its folder: runs of anything but letters,
    digits, `.`, `_` and `-` become `_`; a name left empty or all dots (`.`, `..`) becomes a hash of
    the name. Record folders are named this way, so changing the rule would orphan old results."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_")
    if not safe.strip("."):
        return "name-" + hashlib.sha256(str(text).encode()).hexdigest()[:12]
    return safe
