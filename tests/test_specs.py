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
    ("task", "tagged-digits"): "6d5b17a2101c6efe",  # v2: 420 entities (40 variables per d-subset)
}


# The same for the runs of one pipeline where the spec's [pipelines.NAME] table changes them: budgets
# that cover the reading window's end 2p in every seed of the default suite (protocol 3).
PINNED_PIPELINES = {
    ("convnet", "one-stage"): "6d3f0fd421ca42ef",  # epochs 60
    ("convnet", "two-stage"): "50fe779d535badde",  # stage2_epochs 160
    ("gbm", "two-stage"): "bb755f5ec925e9a4",  # stage2_rounds 64
    ("mlp", "two-stage"): "7c7db7aba9e34845",  # stage2_epochs 64
    ("transformer", "one-stage"): "09ffea139b1fc1b5",  # epochs 60
}


def _digest(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


@pytest.mark.parametrize(("kind", "name"), sorted(PINNED))
def test_shipped_spec_resolves_as_before(kind, name):
    """A failure means the spec or its class defaults changed: if on purpose, bump the spec's
    version, say so in the README, and pin the new digest."""
    spec = resolve(kind, name).to_dict()
    assert _digest(spec) == PINNED[kind, name], f"{kind} {name!r} now resolves to {spec}"


def test_shipped_pipeline_tables_resolve_as_before():
    specs = {name: resolve("learner", name) for name in ("convnet", "gbm", "mlp", "rf", "tag-blind", "transformer")}
    found = {(name, p): _digest(s.for_pipeline(p).to_dict()) for name, s in specs.items() for p in s.pipelines}
    assert found == PINNED_PIPELINES


def test_a_pipeline_table_sets_that_pipelines_runs_only_and_the_users_value_wins(tmp_path):
    import imlbench

    spec = tmp_path / "rf-deep.toml"
    spec.write_text('learner = "rf"\n[params]\nn_estimators = 7\n[pipelines.one-stage]\nn_estimators = 9\n')
    requests = imlbench.plan(learner=str(spec), task="synthetic-defs", seeds=1, pipeline=["one-stage", "two-stage"])
    assert {r.pipeline: r.learner.params["n_estimators"] for r in requests} == {"one-stage": 9, "two-stage": 7}
    mine = imlbench.plan(learner=str(spec), task="synthetic-defs", pipeline="one-stage", params={"n_estimators": 5})
    assert mine[0].learner.params["n_estimators"] == 5


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("[pipelines.three-stages]\nn_estimators = 9", "unknown pipeline 'three-stages'"),
        ("[pipelines.one-stage]\nn_trees = 9", "unknown parameter 'n_trees'"),
        ("[pipelines.one-stage]\nn_estimators = 0", "bad parameter for learner"),
        ("pipelines = 3", "bad 'pipelines'"),
    ],
)
def test_a_bad_pipeline_table_is_one_clear_error(tmp_path, table, message):
    from imlbench.core.errors import ImlbenchError

    spec = tmp_path / "bad.toml"
    spec.write_text(f'learner = "rf"\n{table}\n')
    with pytest.raises(ImlbenchError, match=message):
        resolve("learner", str(spec))
