"""The shipped specs keep their identity: a run's record key hashes its resolved specs, so a spec
that resolves differently orphans every finished record of it."""

from __future__ import annotations

import hashlib
import json

import pytest

from imlbench.core.registry import resolve

PINNED = {  # sha256 of the resolved spec (name, target, version, every parameter), first 16 digits
    ("learner", "convnet"): "290851d747da8021",
    ("learner", "gbm"): "2973021127a9049c",
    ("learner", "majority"): "04a990cc908e7210",
    ("learner", "mlp"): "bff70152367883b2",  # v2: gained `device`
    ("learner", "rf"): "36c66e94765ae4a4",
    ("learner", "tag-blind"): "5da28f28dab6a660",
    ("learner", "transformer"): "c8f9b5df6974315b",
    ("task", "set-inclusion"): "829e6ed665111706",
    ("task", "set-inclusion-small"): "dd8128242852e83a",
    ("task", "synthetic-defs"): "daa187135803d371",
    ("task", "synthetic-defs-attributes"): "9d6070c2d57219db",
    ("task", "tagged-digits"): "29d08d303b04fe9e",
}


@pytest.mark.parametrize(("kind", "name"), sorted(PINNED))
def test_shipped_spec_resolves_as_before(kind, name):
    """A failure means the spec or its class defaults changed: if on purpose, bump the spec's
    version, say so in the README, and pin the new digest."""
    spec = resolve(kind, name).to_dict()
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert digest == PINNED[kind, name], f"{kind} {name!r} now resolves to {spec}"
