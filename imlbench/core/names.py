"""Small helpers shared by modules that write files."""

from __future__ import annotations

import hashlib
import re

DIAGNOSTICS_DIR = "diagnostics"  # RESULTS/diagnostics: each diagnostic's records, CSV and figure
MAX_NAME = 120  # characters: with a prefix and suffix (`curves-...png`) well under the 255 a file system allows


def safe_name(text: str) -> str:
    """`text` as one file or folder name that stays inside its folder: runs of anything but letters,
    digits, `.`, `_` and `-` become `_`; a name left empty or all dots (`.`, `..`) becomes a hash of
    the name, and one longer than MAX_NAME its start and a hash of the whole. Record folders are
    named this way, so changing the rule for short names would orphan old results."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_")
    digest = hashlib.sha256(str(text).encode()).hexdigest()[:12]
    if not safe.strip("."):
        return "name-" + digest
    return safe if len(safe) <= MAX_NAME else f"{safe[: MAX_NAME - 13]}-{digest}"
