"""Code the tests check the package against, or build published tables with: reference
implementations (plain loops the vectorized code must equal) and the tables the README quotes
from committed records. It lives here, not in the package, because nothing in a run uses it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from imlbench.core.errors import ImlbenchError
from imlbench.core.specs import resolve
from imlbench.outputs.console import _md_table, _num
from imlbench.store.records import RunRecord
from imlbench.tasks.tagged_digits import TaggedDigits
from imlbench.views.base import view_of


def per_example_grads_loop(learner, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The same as `per_example_grads` by a plain loop with autograd: the reference it is tested against."""
    params = [p for p in learner.model_.parameters() if p.requires_grad]
    rows = []
    for i in range(len(batch[0])):
        loss = learner.example_loss(tuple(t[i : i + 1] for t in batch))[0]
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
    return torch.stack(rows)


def mean_by_group(values: torch.Tensor, group: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Row means per group, accumulated into a fresh tensor (never into a view of `values`: the
    reference code's aliasing bug corrupted its averages exactly there). Used to check `group_grads`."""
    total = torch.zeros((n_groups, values.shape[1]), dtype=values.dtype, device=values.device)
    total.index_add_(0, group, values)
    counts = torch.bincount(group, minlength=n_groups).to(values.dtype).clamp(min=1)
    return total / counts[:, None]


def training_labels(data: Any) -> np.ndarray:
    """The label of every training example, whatever the view."""
    return view_of(data).labels(data)


def render_examples_png(task_name: str, out_path: str | Path, seed: int = 0) -> Path:
    """Save a picture of one definition image and one question image of task `task_name` (any
    name the registry resolves to a TaggedDigits)."""
    task = resolve("task", task_name).build()
    if not isinstance(task, TaggedDigits):
        raise ImlbenchError(f"task {task_name!r} has no images to show (it is a {type(task).__name__})")
    return task.show(out_path, seed)


def stage1_search_table(records: list[RunRecord], settings: dict[str, str]) -> str:
    """A one-seed search of what stage 1 learns, as a Markdown table: per run, its `settings`
    (header -> "task.<param>" or "learner.<param>", resolved values; a bare "task" or "learner" is its
    registered target), the held-out accuracy per stage-1 subset after stage 1 (%), the worst stage-1
    training subset (%) and the run's seconds. Why: a search whose best stage-1 accuracy is the result
    must be read off its records, not typed."""
    shown = ("qd1consis", "qd2incons", "q", "no_qd_baseline")

    def setting(record: RunRecord, where: str) -> Any:
        kind, _, name = where.partition(".")
        part = record.task if kind == "task" else record.learner
        return part["params"][name] if name else part["target"]

    rows = []
    for r in sorted((r for r in records if r.ok), key=lambda r: [setting(r, w) for w in settings.values()]):
        trained = r.raw["train_accuracy"]["after_stage1"]
        rows.append(
            {
                **{header: setting(r, where) for header, where in settings.items()},
                **{name: _num(100 * r.accuracy_after_stage1[name], "{:.1f}") for name in shown},
                "stage-1 training (min)": _num(100 * min(trained.values()), "{:.1f}"),
                "s/run": _num(r.seconds),
            }
        )
    return _md_table(rows)


def budget_table(records: list[RunRecord], learners: list[str], tasks: list[str]) -> str:
    """How each learner's budget covers its evaluation points and what it costs, as a Markdown
    table: per (learner, task, pipeline), the scored stage's budget in checkpoints, the evaluation
    points over the seeds (median and range; seeds whose definitions were never learned counted
    apart), the budget as a multiple of the latest point, the mean seconds of a run and the share
    of them spent evaluating. Why: protocol v2 scores at the point and reports persistence after
    it, so a budget must reach past every seed's point, and its cost is only justified by that."""
    groups: dict[tuple[str, str, str], list[RunRecord]] = {}
    for r in records:
        if r.ok and r.learner_name in learners and r.task_name in tasks and r.pipeline in ("two-stage", "one-stage"):
            groups.setdefault((r.learner_name, r.task_name, r.pipeline), []).append(r)
    rows = []
    for (learner, task, pipeline), runs in sorted(groups.items(), key=lambda g: (learners.index(g[0][0]), g[0][1:])):
        stage = runs[0].evaluation_point["stage"]
        budget = max(e["checkpoint"] for e in runs[0].curve if e["stage"] == stage)
        points = sorted(r.evaluation_point["checkpoint"] for r in runs if r.definitions_learned)
        rows.append(
            {
                "learner": learner,
                "task": task,
                "pipeline": pipeline,
                "seeds": len(runs),
                "budget (checkpoints)": budget,
                "evaluation point, median (range)": f"{points[len(points) // 2]} ({points[0]}–{points[-1]})"
                if points
                else "–",
                "budget ÷ latest point": f"{budget / points[-1]:.1f}" if points else "–",
                "definitions never learned": len(runs) - len(points),
                "s/run": f"{sum(r.seconds for r in runs) / len(runs):.1f}",
                "evaluation": f"{sum(_evaluation_seconds(r) for r in runs) / sum(r.seconds for r in runs):.0%}",
            }
        )
    return _md_table(rows)


def _evaluation_seconds(record: RunRecord) -> float:
    return float(record.raw["measurements"]["seconds"].get("evaluation", 0.0))


# --- Scoring v4 (PROTOCOL §5), recomputed afresh -----------------------------------------------
# The leaderboard's verdicts written out again from the raw record files, with numpy, scipy's
# one-sample t-tests, an enumerated sign-flip test and a hand-written Holm step-down, and nothing
# from imlbench.scoring: tests/test_published.py compares every published row with it.

V4_ALPHA = 0.05
V4_MARGIN = 10.0  # points, where a record declares none
V4_MIN_SEEDS = 6
V4_STAGE1_FIT = 0.95
V4_FLOOR = 5.0  # points
V4_QUESTIONS = 5.0  # points of held-out q over the baseline after stage 1
V4_STRUCTURAL_ZERO = 1e-9


def v4_raw_records(results_dir: str | Path) -> list[dict[str, Any]]:
    """Every run record file under results_dir/records, as parsed JSON (diagnostics left out)."""
    import json

    found = [json.loads(p.read_text()) for p in sorted((Path(results_dir) / "records").rglob("*.json"))]
    return [r for r in found if "diagnostic" not in r]


def v4_window(record: dict[str, Any]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """(accuracy table read over the seed's window, the window's curve entries): the checkpoints p … 2p
    of the scored stage that were evaluated, each subset averaged over the entries that hold it; the
    point's table where there is no window (definitions never learned, or nothing evaluated there)."""
    point = record["evaluation_point"]
    p = point.get("checkpoint")
    entries = []
    if record["definitions_learned"] and p is not None:
        last = (record.get("window") or {}).get("last", 2 * p)
        entries = [
            e
            for e in record["curve"]
            if e.get("stage") == point.get("stage") and p <= e.get("checkpoint", -1) <= last and "accuracy" in e
        ]
    if not entries:
        return dict(record["accuracy"]), []
    table = {}
    for subset in {s for e in entries for s in e["accuracy"]}:
        table[subset] = float(np.mean([e["accuracy"][subset] for e in entries if subset in e["accuracy"]]))
    return table, entries


def _v4_logprob(record: dict[str, Any], entries: list[dict[str, Any]]) -> float:
    """Mean log-probability gap d1 − d2 over the window's entries that carry answer scores, else at the point."""

    def gap(table: dict[str, float] | None) -> float:
        table = table or {}
        return table["d1consis"] - table["d2consis"] if {"d1consis", "d2consis"} <= set(table) else float("nan")

    gaps = [gap(e["answer_logprob"]) for e in entries if e.get("answer_logprob")]
    gaps = [g for g in gaps if g == g]
    return float(np.mean(gaps)) if gaps else gap(record.get("answer_logprob"))


def _v4_stage1_fit(record: dict[str, Any]) -> bool | None:
    """Every stage-1 part at or above 95% training accuracy where it was trained (None: not recorded)."""

    def fit(train: dict[str, float] | None, kinds: str) -> bool:
        values = [
            v
            for k, v in (train or {}).items()
            if kinds == "all" or (kinds == "definitions") == k.endswith("/definition")
        ]
        return bool(values) and min(values) >= V4_STAGE1_FIT

    if record.get("step_ends"):
        return all(fit(end.get("train_accuracy"), end.get("kinds", "all")) for end in record["step_ends"])
    after = (record.get("train_accuracy") or {}).get("after_stage1")
    return None if after is None else fit(after, "all")


def _v4_signflip(x: np.ndarray) -> float:
    """Exact two-sided sign-flip p: the share of all 2ⁿ sign patterns with |sum| at least the observed."""
    import itertools

    signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(x))))
    sums = np.abs(signs @ x)
    observed = abs(float(x.sum()))
    return float(np.mean(sums >= observed - 1e-9 * max(1.0, observed)))


def _v4_tests(values: list[float], margin: float | None) -> dict[str, float]:
    """mean, CI, t-test p, sign-flip p, mde (and, with a margin, TOST p) of the finite values."""
    from scipy import stats

    x = np.array([v for v in values if v == v], dtype=float)
    n, nan = len(x), float("nan")
    out = {"n": n, "mean": float(x.mean()) if n else nan, "ci_low": nan, "ci_high": nan, "p_t": nan}
    out.update(p_flip=_v4_signflip(x) if n >= 2 else nan, p_eq=nan, mde=nan, equal=n >= 2 and len(set(x)) == 1)
    if n < 2:
        return out
    if out["equal"]:  # no spread: t is ±∞ (p 0) off zero, undefined (taken as p 1) at zero
        mean = float(x[0])
        out.update(mean=mean, ci_low=mean, ci_high=mean, p_t=0.0 if mean else 1.0, mde=0.0)
        if margin is not None:
            out["p_eq"] = 0.0 if abs(mean) < margin else 1.0
        return out
    test = stats.ttest_1samp(x, 0.0)
    ci = test.confidence_interval(1 - V4_ALPHA)
    out.update(ci_low=float(ci.low), ci_high=float(ci.high), p_t=float(test.pvalue))
    se, df = float(stats.sem(x)), n - 1
    out["mde"] = float((stats.t.ppf(0.975, df) + stats.t.ppf(0.8, df)) * se)
    if margin is not None:
        above = stats.ttest_1samp(x, -margin, alternative="greater").pvalue
        below = stats.ttest_1samp(x, margin, alternative="less").pvalue
        out["p_eq"] = float(max(above, below))
    return out


def v4_holm(p: list[float]) -> list[float]:
    """Holm's step-down over the defined p's of one family: the i-th smallest (from 0) times m − i,
    capped at 1, never below an earlier one's; an undefined p stays undefined."""
    defined = sorted((v, i) for i, v in enumerate(p) if v == v)
    adjusted = [float("nan")] * len(p)
    running = 0.0
    for rank, (v, i) in enumerate(defined):
        running = max(running, min(1.0, (len(defined) - rank) * v))
        adjusted[i] = running
    return adjusted


def _v4_identity(record: dict[str, Any]) -> str:
    import json

    parts = [record["task"], record["learner"], record["pipeline"], record.get("protocol") or {}]
    return json.dumps(parts + ([record["code"]] if record.get("code") else []), sort_keys=True)


def v4_leaderboard(raw_records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict per (family, run group) of the raw records: the scoring-v4 columns the published
    leaderboard decides on (effect_mean, ci, p's raw and Holm-adjusted within the family, verdict,
    basis, structural_null, controlled), every rule read from PROTOCOL §5."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in raw_records:
        families = r.get("families") or ([r["family"]] if r.get("family") else ["undeclared"])
        for family in families:
            groups.setdefault((str(family), _v4_identity(r)), []).append(r)
    rows = [_v4_row(family, identity, group) for (family, identity), group in groups.items()]
    for family in {row["family"] for row in rows}:
        members = [row for row in rows if row["family"] == family]
        for raw in ("p_difference", "p_signflip", "p_logprob_difference", "p_logprob_signflip"):
            for row, adjusted in zip(members, v4_holm([row[raw] for row in members])):
                row[f"{raw}_holm"] = adjusted
        for row in members:
            row["verdict"], row["basis"], row["structural_null"] = _v4_verdict(row)
        for row in members:
            row["controlled"] = _v4_controlled(row, members)
    return rows


def _v4_row(family: str, identity: str, group: list[dict[str, Any]]) -> dict[str, Any]:
    ok = sorted((r for r in group if r["status"] == "ok"), key=lambda r: r["seed"])
    declared = [r["margin"] for r in group if r.get("margin") is not None]
    margin = float(max(declared)) if declared else V4_MARGIN
    seeds = []
    for r in ok:
        window, entries = v4_window(r)
        arms = [100 * window.get(s, float("nan")) for s in ("d1consis", "d2consis", "d3consis")]
        after = r["accuracy_after_stage1"]
        seeds.append(
            {
                "effect": arms[0] - arms[1],
                "attainable": all(margin <= a <= 100 - margin for a in arms[:2]),
                "floor": arms[0] == arms[0] and all(a <= V4_FLOOR for a in arms if a == a),
                "logprob": _v4_logprob(r, entries),
                "stage1_fit": _v4_stage1_fit(r),
                "learned": bool(r["definitions_learned"]),
                "q_over_baseline": 100 * (after["q"] - after["no_qd_baseline"])
                if {"q", "no_qd_baseline"} <= set(after)
                else float("nan"),
            }
        )
    n = len(seeds)
    accuracy = _v4_tests([s["effect"] for s in seeds], margin)
    logprob = _v4_tests([s["logprob"] for s in seeds], None)
    q = [s["q_over_baseline"] for s in seeds if s["q_over_baseline"] == s["q_over_baseline"]]

    def most(flag: str, value: Any = True) -> bool:
        return sum(s[flag] is value for s in seeds) > n / 2

    guards = {
        "too-few-seeds": n < V4_MIN_SEEDS,
        "questions-not-learned": bool(q) and float(np.mean(q)) < V4_QUESTIONS,
        "stage1-not-fit": most("stage1_fit", False),
        "definitions-not-learned": most("learned", False),
        "floor": most("floor"),
        "by-construction": bool(ok) and all(r.get("by_construction_null") for r in ok),
    }
    return {
        "family": family,
        "identity": identity,
        "task": group[0]["task"]["name"],
        "learner": group[0]["learner"]["name"],
        "pipeline": group[0]["pipeline"],
        "seeds": ";".join(str(r["seed"]) for r in ok),
        "n_seeds": n,
        "margin": margin,
        "guards": [name for name, fired in guards.items() if fired],
        "n_unattainable": sum(not s["attainable"] for s in seeds),
        "censored": most("attainable", False),
        "effect_mean": accuracy["mean"],
        "effects_equal": accuracy["equal"],
        "ci_low": accuracy["ci_low"],
        "ci_high": accuracy["ci_high"],
        "p_difference": accuracy["p_t"],
        "p_signflip": accuracy["p_flip"],
        "p_equivalence": accuracy["p_eq"],
        "mde": accuracy["mde"],
        "n_logprob": logprob["n"],
        "logprob_effect": logprob["mean"],
        "p_logprob_difference": logprob["p_t"],
        "p_logprob_signflip": logprob["p_flip"],
        "logprob_mde": logprob["mde"],
        "logprob_zero": n > 0 and all(abs(s["logprob"]) < V4_STRUCTURAL_ZERO for s in seeds),
    }


def _v4_verdict(row: dict[str, Any]) -> tuple[str, str, bool]:
    """(verdict, basis, structural null): guards first, then accuracy (zero spread or the adjusted
    tests and TOST), then, for a censored row accuracy could not decide, the answer scores."""
    if row["guards"]:
        return "inconclusive", "", False
    mean, margin, censored = row["effect_mean"], row["margin"], row["censored"]
    sign = "IML" if mean > 0 else "reverse"
    if row["effects_equal"]:
        on_accuracy = sign if abs(mean) > margin else "none" if not censored else "inconclusive"
    elif row["p_equivalence"] < V4_ALPHA:
        on_accuracy = "inconclusive" if censored else "none"
    elif row["p_difference_holm"] < V4_ALPHA and row["p_signflip_holm"] < V4_ALPHA:
        on_accuracy = sign
    else:
        on_accuracy = "inconclusive"
    if not censored or on_accuracy in ("IML", "reverse"):
        return on_accuracy, "accuracy", False
    if row["n_logprob"] < row["n_seeds"]:
        return "inconclusive", "", False
    if row["logprob_zero"]:
        return "none", "scores", True
    if row["p_logprob_difference_holm"] < V4_ALPHA and row["p_logprob_signflip_holm"] < V4_ALPHA:
        return ("IML" if row["logprob_effect"] > 0 else "reverse"), "scores", False
    return "inconclusive", "scores", False


def _v4_controlled(row: dict[str, Any], family: list[dict[str, Any]]) -> bool | None:
    """An IML row's control: the same learner (its params without random_state), task target and
    params but tag_reliability 0.5, pipeline, protocol and seeds, in the family; not IML, not censored,
    its mde at most the row's effect (a row judged on its answer scores: the control has scores in
    every seed and their mde is at most the row's). None for a row that is not IML."""
    import json

    if row["verdict"] != "IML":
        return None

    def parts(identity: str) -> tuple[Any, ...]:
        task, learner, pipeline, protocol = json.loads(identity)[:4]
        params = {k: v for k, v in (learner.get("params") or {}).items() if k != "random_state"}
        return task, (learner.get("target"), params), pipeline, protocol

    task, learner, pipeline, protocol = parts(row["identity"])
    for other in family:
        o_task, o_learner, o_pipeline, o_protocol = parts(other["identity"])
        params, o_params = dict(task.get("params") or {}), dict(o_task.get("params") or {})
        if "tag_reliability" not in params or o_params.get("tag_reliability") != 0.5:
            continue
        params.pop("tag_reliability"), o_params.pop("tag_reliability")
        same = (task.get("target"), params, learner, pipeline, protocol, row["seeds"]) == (
            o_task.get("target"),
            o_params,
            o_learner,
            o_pipeline,
            o_protocol,
            other["seeds"],
        )
        if same and row["basis"] == "scores":  # a censored row: its control is read on the scores too
            scored = other["n_logprob"] == other["n_seeds"] == row["n_seeds"]
            return other["verdict"] != "IML" and scored and other["logprob_mde"] <= row["logprob_effect"]
        if same:
            return other["verdict"] != "IML" and not other["censored"] and other["mde"] <= row["effect_mean"]
    return False
