"""Diagnostics of the paper's hypotheses (gradient alignment, tag probe, in context) and the
three-stage pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from reference import mean_by_group, per_example_grads_loop

from imlbench.api import diagnose
from imlbench.api import plan_diagnostics as plan
from imlbench.cli import main
from imlbench.core.names import DIAGNOSTICS_DIR
from imlbench.core.pipelines import get_pipeline
from imlbench.core.protocol import DEFINITION, QUESTION, SUBSET_CODE
from imlbench.core.specs import ImlbenchError, resolve
from imlbench.diagnostics.measures import group_grads, in_context_queries, per_example_grads, sample_variables
from imlbench.execution.workers import Execution, run_job
from imlbench.harness.pipelines import check_pipeline, continue_as_stage1
from imlbench.harness.runner import RunRequest
from imlbench.harness.stages import exhaust
from imlbench.learners.convnet import ConvNet
from imlbench.learners.mlp import MLP
from imlbench.learners.transformer import Transformer
from imlbench.tasks.synthetic_defs import SyntheticDefs
from imlbench.tasks.tagged_digits import TaggedDigits
from imlbench.views.base import get_view

FAST = dict(epochs=2, stage2_epochs=2, device="cpu")
TINY = {
    "transformer": (lambda: Transformer(n_layers=1, d_model=16, n_heads=2, **FAST), SyntheticDefs, "tokens"),
    "mlp": (lambda: MLP(embedding_dim=8, hidden=16, **FAST), SyntheticDefs, "table"),
    "convnet": (lambda: ConvNet(channels1=4, channels2=8, hidden=16, **FAST), TaggedDigits, "image"),
}
TINY_PARAMS = [
    "n_entities=60",
    "learner.epochs=2",
    "learner.stage2_epochs=2",
    "learner.hidden=16",
    "learner.embedding_dim=8",
]


def _fitted(name: str):
    make, task_cls, view = TINY[name]
    task = task_cls(n_entities=60, **({"n_renders": 2} if task_cls is TaggedDigits else {}))
    data = task.generate(0)
    learner = make()
    exhaust(learner.fit(task.encode(get_view(view), data, data.stage1, "stage1")))
    return learner, task, data, view


@pytest.mark.parametrize("name", sorted(TINY))
def test_vmapped_gradients_equal_a_plain_loop(name):
    """Per-example and per-group gradients by vmap equal autograd one example at a time to 1e-5."""
    learner, task, data, view = _fitted(name)
    learner.model_.eval()
    examples = Examples_about(data)
    batch = learner.tensors(task.encode(get_view(view), data, examples, "test"))
    reference = per_example_grads_loop(learner, batch)
    vmapped = per_example_grads(learner, batch)
    assert vmapped.shape == reference.shape and reference.abs().max() > 0
    torch.testing.assert_close(vmapped, reference, atol=1e-5, rtol=1e-5)
    # uneven groups (padding with weight 0 must not count)
    group = torch.from_numpy(np.arange(len(batch[0])) % 3).to(batch[0].device)
    group[0] = 2  # sizes differ
    torch.testing.assert_close(
        group_grads(learner, batch, group, 3), mean_by_group(reference, group, 3), atol=1e-5, rtol=1e-5
    )


def Examples_about(data):
    """A few test questions about stage-2 variables, two variables' worth, answers kept."""
    variables = np.unique(data.test.subject[data.test.subset == SUBSET_CODE["d1consis"]])[:2]
    return data.test.select(np.isin(data.test.subject, variables))


def test_mean_by_group_never_writes_into_its_input():
    """The reference code's bug: averaging into a tensor that aliases the gradients."""
    values = torch.arange(12.0).reshape(4, 3)
    before = values.clone()
    means = mean_by_group(values, torch.tensor([0, 0, 1, 1]), 2)
    means += 1
    assert torch.equal(values, before)
    torch.testing.assert_close(means - 1, torch.tensor([[1.5, 2.5, 3.5], [7.5, 8.5, 9.5]]))


def test_in_context_sequence_is_definition_then_question():
    task = SyntheticDefs(n_entities=60)
    data = task.generate(0)
    questions = data.test.select(data.test.subset == SUBSET_CODE["d2consis"])
    queries = in_context_queries(data, questions)
    defs = data.stage2.select(data.stage2.kind == DEFINITION)
    row = 0
    d = np.flatnonzero(defs.subject == questions.subject[row])[0]
    expected = [defs.relation[d], defs.subject[d], defs.target[d], questions.relation[row], questions.subject[row]]
    assert queries.tokens[row, :5].tolist() == [int(t) for t in expected]
    assert queries.answer_pos[row] == 5 and queries.tokens[row, 5] == data.vocab.id("<pad>")  # answer hidden
    assert (queries.tokens[:, 5:] == data.vocab.id("<pad>")).all()


def test_packing_puts_a_variables_documents_in_one_sequence_definition_first():
    """`context_docs = k`: up to k training documents about one variable per sequence, definitions
    first, every document's tokens and loss positions kept; queries stay one per sequence."""
    from imlbench.views.base import pack_by_subject

    task = SyntheticDefs(n_entities=60, context_docs=4)
    data = task.generate(0)
    tokens = get_view("tokens")
    single = tokens.encode(data, data.stage1)
    packed = task.encode(tokens, data, data.stage1, "stage1")
    assert packed.loss_mask.sum() == single.loss_mask.sum() and len(packed.tokens) < len(single.tokens)
    assert np.array_equal(pack_by_subject(single, data.stage1, 4).tokens, packed.tokens)
    variable_ids = data.vocab.ids("variable")
    for row, mask in zip(packed.tokens, packed.loss_mask):
        documents = row[row != data.vocab.id("<pad>")].reshape(-1, 3)  # `relation subject target` each
        assert 1 <= len(documents) <= 4 and len(set(documents[:, 1])) == 1  # one variable per sequence
        assert np.isin(documents[:, 1], variable_ids).all()
        is_definition = np.isin(documents[:, 0], data.vocab.ids("tag"))
        assert not np.any(np.diff(is_definition.astype(int)) > 0)  # definitions come first
        assert mask.sum() == len(documents) + is_definition.sum()  # answers, plus each definition's variable
    queries = task.encode(tokens, data, data.test.without_targets(), "test")
    assert queries.tokens.shape[0] == len(data.test)
    with pytest.raises(ValueError, match="context_docs=4 packs token sequences"):
        task.encode(get_view("table"), data, data.stage1, "stage1")
    assert "context_docs" not in resolve("task", "synthetic-defs").to_dict()["params"]  # old record keys hold
    with pytest.raises(ImlbenchError, match="context_docs"):
        resolve("task", "synthetic-defs", {"context_docs": 0})


def test_text_packing_puts_earlier_documents_of_a_variable_in_each_prompt():
    """The text view's `context_docs`: every document stays one row with its own completion, its
    prompt preceded by the earlier documents about the same variable (definition first); the
    in-context queries lay a definition and a question out the same way."""
    from imlbench.diagnostics.measures import in_context_text_queries
    from imlbench.tasks.synthetic_defs_text import SyntheticDefsText

    task = SyntheticDefsText(n_entities=60, context_docs=3)
    data = task.generate(0)
    text = get_view("text")
    single, packed = task.render(text, data, data.stage1, "stage1"), task.encode(text, data, data.stage1, "stage1")
    assert sorted(packed.completions) == sorted(single.completions) and len(packed.prompts) == len(single.prompts)
    assert sorted(packed.y.tolist()) == sorted(single.y.tolist())
    lines = [p.count("\n") - single.prompts[0].count("\n") for p in packed.prompts]
    assert max(lines) > 0 and any(p.startswith(single.prompts[i]) for i, p in enumerate(packed.prompts))
    questions = data.test.select(data.test.subset == SUBSET_CODE["d1consis"])
    queries = in_context_text_queries(task, data, questions)
    plain = task.encode(text, data, questions.without_targets(), "test")
    assert all(q.endswith("\n" + p) and " is " in q for q, p in zip(queries.prompts, plain.prompts))


def test_sample_variables_is_seeded_and_capped():
    data = SyntheticDefs(n_entities=200).generate(0)
    a = sample_variables(data, "d1consis", 5, np.random.default_rng(1))
    b = sample_variables(data, "d1consis", 5, np.random.default_rng(1))
    assert len(a) == 5 and np.array_equal(a, b) and np.all(np.diff(a) > 0)
    assert np.isin(a, data.test.subject[data.test.subset == SUBSET_CODE["d1consis"]]).all()


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["diagnose", "tag-probe", "--learner", "rf"], "learner 'rf' cannot be diagnosed"),
        (["diagnose", "spectral", "--learner", "mlp"], "valid: gradient-alignment, in-context, tag-probe"),
        (["diagnose", "in-context", "--learner", "mlp"], "needs a sequence view"),
        (["diagnose", "in-context", "--learner", "convnet", "--task", "tagged-digits"], "reads the image view"),
    ],
)
def test_cli_errors_are_one_line(argv, needle, capsys, out):
    assert main(argv + ["--seeds", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err
    if "cannot be diagnosed" in err:
        diagnosable = err.split("diagnosable: ")[1].split(", ")
        assert {"convnet", "mlp", "transformer", "hf-causal-lm"} <= set(diagnosable) and "rf" not in diagnosable
    assert not (out / DIAGNOSTICS_DIR).exists()


def test_tag_probe_records_csv_plot_resume_and_determinism(out):
    requests = plan("tag-probe", "mlp", "synthetic-defs", [0, 1], TINY_PARAMS, {"variables": 8, "permutations": 20})
    records, problems, paths = diagnose(requests, out, verbose=False)
    assert not problems and all(r["status"] == "ok" for r in records), problems
    frame = pd.read_csv(out / DIAGNOSTICS_DIR / "tag-probe.csv")
    assert set(frame["point"]) == {"after_stage1", "at_point"} and set(frame["seed"]) == {0, 1}
    assert set(frame["layer"]) == {0, 1} and frame["accuracy"].between(0, 1).all()
    assert (out / DIAGNOSTICS_DIR / "diagnostic-tag-probe.png").exists()
    files = sorted((out / DIAGNOSTICS_DIR / "records" / "tag-probe").rglob("*.json"))
    assert len(files) == 2 and json.loads(files[0].read_text())["diagnostic"] == "tag-probe"
    path = requests[0].path(out)
    marked = json.loads(path.read_text())
    marked["rows"][0]["accuracy"] = -1.0  # a value no measurement gives: visible only if reused
    path.write_text(json.dumps(marked))
    again, _, _ = diagnose(requests, out, verbose=False)
    assert again[0]["rows"][0]["accuracy"] == -1.0 and again[1]["rows"] == records[1]["rows"]  # reused
    fresh, _, _ = diagnose(requests[:1], out, force=True, verbose=False)
    assert fresh[0]["rows"] == records[0]["rows"]  # recomputed: same seed, same numbers


def test_gradient_alignment_measures_each_tag_at_each_checkpoint(out):
    requests = plan("gradient-alignment", "mlp", "synthetic-defs", [0], TINY_PARAMS, {"variables": 4, "every": 1})
    (record,), _, _ = diagnose(requests, out, verbose=False)
    assert record["status"] == "ok", record.get("error")
    rows = pd.DataFrame(record["rows"])
    assert sorted(rows["checkpoint"].unique()) == [1, 2] and set(rows["tag"]) == {"tag1", "tag2", "tag3"}
    assert rows["cosine"].between(-1, 1).all() and (rows["n_variables"] == 4).all()
    assert record["seconds"]["per_measured_checkpoint"] > 0
    # decomposed: both losses (the same for an mlp row, which has one target), three parameter groups
    assert set(rows["loss"]) == {"document", "answer"} and set(rows["parameters"]) == {"all", "body", "embeddings"}
    by_loss = rows.pivot_table(index=["checkpoint", "parameters", "tag"], columns="loss", values="cosine")
    np.testing.assert_allclose(by_loss["answer"], by_loss["document"])
    # the IML effect of the same run, and the optimizer steps it took, beside the alignment
    assert record["iml"]["effect"] == pytest.approx(100 * (record["iml"]["d1consis"] - record["iml"]["d2consis"]))
    assert (rows["iml_effect"] == record["iml"]["effect"]).all()
    assert (rows["stage1_steps"] == record["learner_info"]["optimizer_steps"]["stage1"]).all()


def test_answer_loss_is_the_last_loss_position_and_groups_split_the_parameters():
    """The transformer's answer-only loss scores a definition's value alone (its variable-token term
    dropped) and a question's answer as `example_loss` does; the parameter groups partition `all`."""
    from imlbench.diagnostics.measures import parameter_columns

    learner, task, data, view = _fitted("transformer")
    learner.model_.eval()
    defs = data.stage2.select(data.stage2.kind == DEFINITION)
    questions = data.test.select(data.test.subset == SUBSET_CODE["d1consis"])
    inputs, targets, mask = d = learner.tensors(task.encode(get_view(view), data, defs, "stage2"))
    q = learner.tensors(task.encode(get_view(view), data, questions, "test"))
    with torch.no_grad():
        torch.testing.assert_close(learner.answer_loss(q), learner.example_loss(q))  # one loss position
        logits = learner.model_(inputs)
        last = mask.sum(dim=1) - 1 + mask.float().argmax(dim=1)  # definitions: two adjacent loss positions
        rows = torch.arange(len(inputs))
        expected = torch.nn.functional.cross_entropy(logits[rows, last], targets[rows, last], reduction="none")
        torch.testing.assert_close(learner.answer_loss(d), expected)
        assert not torch.allclose(learner.answer_loss(d), learner.example_loss(d))
    columns = parameter_columns(learner)
    assert set(columns) == {"all", "body", "embeddings"} and bool(columns["all"].all())
    assert not (columns["body"] & columns["embeddings"]).any()
    assert int(columns["body"].sum() + columns["embeddings"].sum()) == len(columns["all"])  # tied: no output
    mlp = _fitted("mlp")[0]
    assert {mlp.parameter_group(n) for n, _ in mlp.model_.named_parameters()} == {"embeddings", "body", "output"}


def test_in_context_compares_with_out_of_context(out):
    params = [
        "n_entities=60",
        "learner.epochs=2",
        "learner.stage2_epochs=2",
        "learner.d_model=16",
        "learner.n_layers=1",
        "learner.n_heads=2",
    ]
    (record,), _, _ = diagnose(plan("in-context", "transformer", "synthetic-defs", [0], params, {}), out, verbose=False)
    assert record["status"] == "ok", record.get("error")
    rows = pd.DataFrame(record["rows"])
    assert set(rows["tag"]) == {"tag1", "tag2", "tag3", "stage1 tag1"}  # stage1 tag1: the positive control
    assert rows[["in_context", "out_of_context"]].stack().between(0, 1).all()


@pytest.mark.slow
def test_in_context_control_passes_and_the_transformer_does_not_read_new_definitions(out):
    """Science check (2 seeds, small task): with documents packed (`context_docs`), stage-1 questions
    asked after their definition are answered (the positive control passes), yet unseen variables
    defined in the context are not: this transformer answers from its weights, not its context.
    A learner that copied from its context would fail the second assertion; one whose test positions
    were untrained, the first."""
    params = ["n_entities=200", "context_docs=4", "learner.epochs=30"]
    records, _, _ = diagnose(
        plan("in-context", "transformer", "synthetic-defs", [0, 1], params, {}), out, verbose=False
    )
    rows = pd.DataFrame([row for r in records for row in r["rows"]])
    after = rows[rows["point"] == "after_stage1"].groupby("tag")["in_context"].mean()
    assert after["stage1 tag1"] >= 0.9 and after["tag1"] <= 0.1
    from imlbench.diagnostics.figures import in_context_table

    table = "\n".join(in_context_table(rows.assign(group="g", seed=[0] * len(rows))))
    assert "| g | " in table and "| yes |" in table


# -- three-stage -----------------------------------------------------------------------------


def stage1_parts(pipeline: str, data) -> list:
    return [step.examples(data, None) for step in get_pipeline(pipeline).before]


def test_stage1_parts_split_definitions_from_questions():
    data = SyntheticDefs(n_entities=60).generate(0)
    assert stage1_parts("two-stage", data)[0] is data.stage1
    defs, rest = stage1_parts("three-stage", data)
    assert (defs.kind == DEFINITION).all() and (rest.kind == QUESTION).all()
    assert len(defs) + len(rest) == len(data.stage1) and len(defs) > 0


def test_stage1b_trains_with_stage1_settings_and_restores_them():
    learner = MLP(epochs=3, stage2_epochs=7, lr=1e-3, stage2_lr=1e-4, device="cpu")
    task = SyntheticDefs(n_entities=60)
    data = task.generate(0)
    a, b = (task.encode(get_view("table"), data, part, "stage1") for part in stage1_parts("three-stage", data))
    assert exhaust(learner.fit(a)) == 3
    seen = []
    for _ in continue_as_stage1(learner, b):
        seen.append((learner.stage2_epochs, learner.stage2_lr))
    assert seen == [(3, 1e-3)] * 3
    assert (learner.stage2_epochs, learner.stage2_lr) == (7, 1e-4)


def test_three_stage_pipeline_runs_and_scores_like_two_stage(out):
    task = resolve("task", "synthetic-defs", {"n_entities": 60})
    learner = resolve("learner", "mlp", {"epochs": 2, "stage2_epochs": 2, "hidden": 16, "embedding_dim": 8})
    record = run_job(RunRequest(task, learner, 0, "three-stage"), Execution(str(out)))["record"]
    assert record["status"] == "ok", record.get("error")
    assert record["stage1_checkpoints"] == 4  # 1a and 1b, two epochs each
    assert np.isfinite(record["scores"]["effect_before_stage2"])
    with pytest.raises(ImlbenchError, match="cannot run the three-stage pipeline"):
        check_pipeline(get_pipeline("three-stage"), resolve("learner", "testplugins:NoContinue").build(), "NoContinue")


# -- diagnostics run by the one harness: workers, errors, resume ------------------------------


def diagnostic_records(out):
    folder = out / DIAGNOSTICS_DIR / "records" / "tag-probe"
    return {json.loads(p.read_text())["seed"]: (p, json.loads(p.read_text())) for p in folder.rglob("*.json")}


@pytest.mark.slow  # minutes of waiting on processes and clocks: the default suite stays under ~10 min
def test_diagnose_in_parallel_workers_records_a_failing_seed_with_its_traceback(out):
    argv = [
        "diagnose",
        "tag-probe",
        "--learner",
        "diagplugins:ProbeFailsOnSeed1",
        "--seeds",
        "2",
        "--jobs",
        "2",
        "--variables",
        "8",
        "--permutations",
        "20",
        "--out",
        str(out),
        "-q",
    ] + [a for p in TINY_PARAMS for a in ("--param", p)]
    assert main(argv) == 1  # one seed failed
    found = diagnostic_records(out)
    assert found[0][1]["status"] == "ok" and found[0][1]["rows"]
    failed = found[1][1]
    assert failed["status"] == "error" and "probe failed on purpose" in failed["error"]
    assert "Traceback" in failed["traceback"] and "hidden_states" in failed["traceback"]
    assert failed["environment"]["cpu"]  # the same provenance as a run's record
    inline, _, _ = diagnose(
        plan("tag-probe", "mlp", "synthetic-defs", [0], TINY_PARAMS, {"variables": 8, "permutations": 20}),
        out / "inline",
        verbose=False,
    )
    assert inline[0]["rows"] == found[0][1]["rows"]  # a worker computes what the driver computes


def test_a_harness_that_dies_is_reported_although_its_child_holds_its_socket(out):
    """A diagnostic runs its learner in the harness; a learner that starts a child (which inherits
    the harness's socket to its worker) and ends the harness: no end of file ever comes, and the
    worker must still see the death at once instead of waiting for the time limit."""
    requests = plan("tag-probe", "diagplugins:DiesLeavingAChild", "synthetic-defs", [0], TINY_PARAMS)
    records, _, _ = diagnose(requests, out, verbose=False, timeout=600)
    assert records[0]["status"] == "error"
    assert "the worker process died (exit status 3)" in records[0]["error"]


@pytest.mark.slow  # minutes of waiting on processes and clocks: the default suite stays under ~10 min
def test_diagnose_resumes_after_kill_9_computing_only_what_is_missing(out):
    tests = Path(__file__).resolve().parent
    command = [
        sys.executable,
        "-m",
        "imlbench",
        "diagnose",
        "tag-probe",
        "--learner",
        "diagplugins:ProbeFailsOnSeed1",
        "--seeds",
        "2",
        "--jobs",
        "2",
        "--variables",
        "8",
        "--permutations",
        "20",
        "--out",
        str(out),
        "-q",
    ]
    command += [a for p in TINY_PARAMS for a in ("--param", p)]
    driver = subprocess.Popen(
        command,
        env={**os.environ, "PYTHONPATH": str(tests), "SLOW_SEED1": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300  # generous: on a loaded machine two workers start slowly
    while time.monotonic() < deadline and 0 not in diagnostic_records(out):
        time.sleep(0.2)
    driver.kill()  # kill -9 while seed 1 is still inside its probe
    driver.wait()
    first = diagnostic_records(out)
    assert set(first) == {0}
    path, record = first[0]
    stamp = path.stat().st_mtime_ns
    records, problems, _ = diagnose(
        plan(
            "tag-probe",
            "diagplugins:ProbeFailsOnSeed1",
            "synthetic-defs",
            [0, 1],
            TINY_PARAMS,
            {"variables": 8, "permutations": 20},
        ),
        out,
        verbose=False,
    )
    assert path.stat().st_mtime_ns == stamp and records[0] == record  # seed 0 reused, not recomputed
    assert records[1]["status"] == "error" and len(problems) == 1  # seed 1 ran (and fails on purpose)


PLUGIN_DIAGNOSTIC = """
from imlbench.harness.diagnostics import Context, Diagnostic


class DefinitionFit(Diagnostic):
    needs, needs_text = "predict", "predictions"

    def measure(self, ctx: Context) -> dict:
        def rows_at(point, evaluator):
            found = evaluator.definitions(ctx.learner)
            return [{"point": point, "tag": tag, "accuracy": acc} for tag, acc in found.items()]

        return self.train_two_stages(ctx, rows_at)
"""


def test_a_plugin_diagnostic_is_one_class_and_one_entry_point(out, tmp_path, monkeypatch):
    """The README's sketch, installed as pip installs a plugin (a module and an entry point), run
    through `diagnose`: the run's harness, in a worker, finds it as the driver does."""
    from support import install_distribution

    site = tmp_path / "site"
    site.mkdir()
    (site / "definition_fit.py").write_text(PLUGIN_DIAGNOSTIC)
    install_distribution(
        site, "definition-fit", {"imlbench.diagnostics": {"definition-fit": "definition_fit:DefinitionFit"}}
    )
    monkeypatch.syspath_prepend(str(site))
    (record,), problems, paths = diagnose(
        plan("definition-fit", "mlp", "synthetic-defs", [0], TINY_PARAMS), out, verbose=False
    )
    assert not problems and record["status"] == "ok"
    rows = pd.DataFrame(record["rows"])
    assert set(rows["point"]) == {"after_stage1", "at_point"} and set(rows["tag"]) == {"tag1", "tag2", "tag3"}
    at_point = rows[rows["point"] == "at_point"]["accuracy"]
    assert record["definitions_learned"] == bool(at_point.min() >= 0.98)  # the point as the runner finds it
    assert (out / DIAGNOSTICS_DIR / "definition-fit.csv").exists()


def test_the_probe_measures_its_chance_level_instead_of_assuming_50():
    """Folds grouped by variable put chance below 50% (a probe that learns nothing predicts its
    training folds' majority); the permutation null says where chance is, so a layer without the
    tag sits inside its band and one with it sits above."""
    from imlbench.core.protocol import SUBSET_CODE
    from imlbench.diagnostics.measures import probe_rows
    from imlbench.tasks.synthetic_defs import SyntheticDefs

    task = SyntheticDefs(n_entities=200)
    data = task.generate(0)
    d2 = {int(v) for v, s in zip(data.test.subject, data.test.subset) if s == SUBSET_CODE["d2consis"]}

    class Stub:
        def hidden_states(self, queries):
            n, noise = len(queries.tokens), np.random.default_rng(1)
            tag = np.array([float(int(row[1]) in d2) for row in queries.tokens])
            return [np.ones((n, 3)), noise.normal(size=(n, 3)), np.c_[tag, noise.normal(size=(n, 2))]]

    rows = probe_rows(Stub(), task, "tokens", data, "at_point", 24, np.random.default_rng(0), permutations=60)
    constant, random, tagged = rows
    assert constant["accuracy"] < 0.45 and constant["null_high"] < 0.5  # chance here is not 50%
    for row in (constant, random):
        assert row["null_low"] <= row["accuracy"] <= row["null_high"] and row["p_permutation"] > 0.05
    assert tagged["accuracy"] == 1.0 > tagged["null_high"] and tagged["p_permutation"] == pytest.approx(1 / 61)
