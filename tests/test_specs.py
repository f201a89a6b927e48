"""The shipped specs keep their identity: a run's record key hashes its resolved specs, so a spec
that resolves differently orphans every finished record of it."""

from __future__ import annotations

import hashlib
import json

import pytest

from imlbench.core.specs import resolve

# sha256 of the resolved spec (name, target, version, every parameter), first 16 digits. Protocol v2
# gave convnet, gbm, mlp, rf and transformer whole stage-2 budgets (2x the latest evaluation point of
# the v1 records) in place of v1's upper bounds; the protocol version in every key already keeps v1
# records from being reused, so their spec versions stay.
PINNED = {
    ("learner", "convnet"): "239efc04e094376f",
    ("learner", "gbm"): "4cece23398a6d9af",
    ("learner", "majority"): "04a990cc908e7210",
    ("learner", "mlp"): "9b774f9cd5a15b84",  # v2: gained `device`
    ("learner", "rf"): "5a739c857e921531",
    ("learner", "tag-blind"): "5da28f28dab6a660",
    ("learner", "transformer"): "23a677237752b3f6",
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
