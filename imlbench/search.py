"""Elicitation search: can any configuration of a learner show IML? (PROTOCOL §8)

A `none` at one hand-picked configuration does not answer the paper's existential question, so this
searches a learner's declared space (`Learner.search_space`, or a spec's `[search]` table) with Optuna
and then *confirms* what it found on fresh seeds:

- a trial is a set of ordinary runs on the exploration seeds (1000, 1001, ...), kept under
  `OUT/searches/NAME/records`: cached, supervised and resumable like any run, and apart from the
  leaderboard, whose rows must not mix selected seeds with confirming ones;
- its objective is the lower end of the effect's 95% CI, so a large effect must also be a measured
  one; a censored trial (a scoring guard fires, or the accuracies sit at a bound with no difference
  beyond the margin) scores `CENSORED`,
  below any measured one, whatever its effect;
- the best `confirm_top` configurations are re-run on the confirmation seeds (0 ... M-1, disjoint from
  the exploration seeds) into OUT, scored with scoring v4 as one declared family (`search:NAME`);
  the search's verdict is the confirmed one.

Optuna's study lives in SQLite under the search folder by default (or any RDB `--storage` URL), so a
killed search resumes without redoing finished trials, and processes (or machines) pointed at one
storage share a study. A trial left running by a process that died (same host, pid gone) is retried
with the same parameters, which reuses whatever runs it had finished.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from imlbench import api
from imlbench.core.errors import ImlbenchError
from imlbench.core.names import safe_name
from imlbench.core.seeds import search_seed
from imlbench.core.specs import resolve, search_space_of
from imlbench.scoring.verdicts import SCORING_VERSION, fired, summarize
from imlbench.search_results import _config, _confirmed, search_figure, search_verdict
from imlbench.store.records import write_atomic
from imlbench.store.results import SEARCHES_DIR

EXPLORE_SEED_START = 1000  # exploration seeds start here; confirmation seeds are 0 ... M-1
CENSORED = -200.0  # a trial whose effect could not be measured: below any measured CI (effects ≥ -100)
FAILED = -300.0  # a trial with a failed run
IDENTITY_ATTR = "search_identity"  # one attribute, written in one call: a second process never reads half of it
IDENTITY_KEYS = ("learner", "task", "pipeline", "explore_seeds", "fixed_params")  # older studies: five attributes


def distributions(space: dict[str, Any], learner: str) -> dict[str, Any]:
    """A declared space -> Optuna distributions; a malformed entry is a one-line error naming it."""
    import optuna.distributions as d

    if not isinstance(space, dict) or not space:
        raise ImlbenchError(
            f"learner {learner!r} declares no search space; give its spec a [search] table "
            f"(parameter = {{low = 1, high = 10}} or {{choices = [...]}})"
        )
    found = {}
    for name, entry in space.items():
        try:
            if set(entry) == {"choices"} and entry["choices"]:
                found[name] = d.CategoricalDistribution(list(entry["choices"]))
            elif {"low", "high"} <= set(entry) <= {"low", "high", "log"}:
                low, high, log = entry["low"], entry["high"], bool(entry.get("log", False))
                ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high))
                found[name] = (d.IntDistribution if ints else d.FloatDistribution)(low, high, log=log)
            else:
                raise ValueError("expected {low, high[, log]} or {choices = [...]}")
        except (TypeError, ValueError) as exc:
            raise ImlbenchError(f"bad search space entry {name!r} = {entry!r} for learner {learner!r}: {exc}") from exc
    return found


def trial_value(row: dict[str, Any]) -> tuple[float, bool]:
    """(objective, censored) of a trial's summary row: the CI's lower end, or CENSORED where a guard
    fired (bar too-few-seeds: exploration runs few seeds by design) or the accuracies sat at a bound
    without a difference that stands there."""
    margin = row["margin"]
    guards = [name for name, _ in fired(row, margin, "guard") if name != "too-few-seeds"]
    bounded = bool(fired(row, margin, "censoring")) and abs(row["effect_mean"]) <= margin
    censored = bool(guards) or bounded or math.isnan(row["ci_low"])
    return (CENSORED if censored else float(row["ci_low"])), censored


class Search:
    """One study: its seeds, storage and folder; `explore` runs trials, `confirm` decides."""

    def __init__(
        self,
        learner: str,
        task: str,
        pipeline: str = "two-stage",
        out: str | Path = api.DEFAULT_OUT,
        explore_seeds: int = 3,
        confirm_seeds: int = 10,
        params: dict[str, Any] | None = None,
        name: str | None = None,
        storage: str | None = None,
        seed: int = 0,
        jobs: int | str = 1,
        timeout: float | None = None,
        executor: Any = None,
        memory_limit: str | int | None = None,
        verbose: bool = True,
    ):
        if explore_seeds < 2 or confirm_seeds < 2:
            raise ImlbenchError(
                f"--explore-seeds and --confirm-seeds must be at least 2 (a CI needs two seeds), "
                f"got {explore_seeds} and {confirm_seeds}"
            )
        if explore_seeds > api.MAX_SEEDS:
            raise ImlbenchError(f"--explore-seeds must be at most {api.MAX_SEEDS}, got {explore_seeds}")
        if confirm_seeds > EXPLORE_SEED_START:
            raise ImlbenchError(f"--confirm-seeds must be at most {EXPLORE_SEED_START} (exploration seeds start there)")
        self.learner, self.task, self.pipeline, self.out = learner, task, pipeline, Path(out)
        self.params = dict(params or {})
        self.explore = list(range(EXPLORE_SEED_START, EXPLORE_SEED_START + explore_seeds))
        self.confirm = list(range(confirm_seeds))
        self.verbose, self.seed = verbose, seed
        self.execution = {"jobs": jobs, "timeout": timeout, "executor": executor, "memory_limit": memory_limit}
        api.plan(learner, task, self.explore[:1], pipeline, self.params)  # every name and value checked now
        spec = resolve("learner", learner)
        self.built, self.label = spec.build(), spec.name
        self.space = distributions(search_space_of(learner), learner)
        self.name = safe_name(name or f"{spec.name}_{task}_{pipeline}")
        self.folder = self.out / SEARCHES_DIR / self.name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.storage = storage or f"sqlite:///{(self.folder / 'study.db').resolve()}"
        self.study = self._open_study()

    def _create_study(self, optuna, attempts: int = 5):
        """Optuna's study, created or loaded. Two processes that create one new database at once
        race on its schema: the loser's IntegrityError means the winner made it, so it loads."""
        for attempt in range(attempts):
            try:
                return optuna.create_study(
                    study_name=self.name,
                    storage=self.storage,
                    sampler=self._sampler(-1),
                    direction="maximize",
                    load_if_exists=True,
                )
            except Exception as exc:
                if attempt == attempts - 1 or type(exc).__name__ not in ("IntegrityError", "OperationalError"):
                    raise
                time.sleep(0.2 * (attempt + 1))

    def _open_study(self):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            study = self._create_study(optuna)
        except Exception as exc:  # a bad URL, a database that is not Optuna's
            raise ImlbenchError(f"cannot open search storage {self.storage!r}: {type(exc).__name__}: {exc}") from exc
        values = (self.learner, self.task, self.pipeline, self.explore, json.dumps(self.params, sort_keys=True))
        identity = dict(zip(IDENTITY_KEYS, values))
        attrs = study.user_attrs
        stored = attrs.get(IDENTITY_ATTR) or {k: attrs[k] for k in IDENTITY_KEYS if k in attrs}
        if stored and stored != identity:
            raise ImlbenchError(
                f"search {self.name!r} in {self.storage} is another search ({stored}); pass another --name"
            )
        if IDENTITY_ATTR not in attrs:
            study.set_user_attr(IDENTITY_ATTR, identity)
        return study

    def _retry_orphans(self) -> None:
        """A trial RUNNING under a dead process of this host: failed, and its parameters queued again."""
        from optuna.trial import TrialState

        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            host, pid = trial.user_attrs.get("host"), trial.user_attrs.get("pid")
            if (host == socket.gethostname() and pid and not _alive(pid)) or _unclaimed(trial):
                self.study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
                self.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})

    def explore_trials(self, trials: int) -> None:
        """Run trials until the study holds `trials` finished or running ones (shared across processes)."""
        from optuna.trial import TrialState

        self._retry_orphans()
        counted = (TrialState.COMPLETE, TrialState.RUNNING)
        while len(self.study.get_trials(deepcopy=False, states=counted)) < trials:
            trial = self.study.ask()
            trial.set_user_attr("host", socket.gethostname())  # first, so a kill leaves a trial we can retry
            trial.set_user_attr("pid", os.getpid())
            # the sampler's seed follows the trial's number (unique in the storage), so a resumed or
            # second process never replays the first one's draws, and one process is reproducible
            self.study.sampler = self._sampler(trial.number)
            values = {name: _suggest(trial, name, dist) for name, dist in self.space.items()}
            value, attrs = self._evaluate(self._plan(values, self.explore), self.folder)
            for key, item in attrs.items():
                trial.set_user_attr(key, item)
            self.study.tell(trial, value)
            if self.verbose:
                done = len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
                print(f"trial #{trial.number} ({done}/{trials}): {attrs['summary']}  {_config(values)}", flush=True)

    def _sampler(self, number: int):
        import optuna

        return optuna.samplers.TPESampler(seed=search_seed(self.seed, number), constant_liar=True)

    def _plan(self, values: dict[str, Any], seeds: list[int]) -> list[Any]:
        """The runs of one point of the space on `seeds`: the fixed parameters plus the point's."""
        return api.plan(
            self.learner, self.task, seeds, self.pipeline, {**self.params, **self.built.searched_params(values)}
        )

    def _evaluate(self, requests: list[Any], out: Path) -> tuple[float, dict[str, Any]]:
        records, problems = api.execute_plan(requests, out, verbose=False, **self.execution)
        if problems:
            return FAILED, {"summary": f"failed: {problems[0]}", "censored": False, "error": problems[0]}
        row = summarize(records).iloc[0].to_dict()
        value, censored = trial_value(row)
        shown = f"effect {row['effect_mean']:+.1f} [{row['ci_low']:+.1f}, {row['ci_high']:+.1f}]" + (
            " censored" if censored else ""
        )
        return value, {
            "summary": shown,
            "censored": censored,
            "effect_mean": row["effect_mean"],
            "ci_low": row["ci_low"],
            "ci_high": row["ci_high"],
            "verdict": row["verdict"],
            "verdict_note": row["verdict_note"],
            "row_learner": row["learner"],
            "seconds": float(row["seconds_per_seed"] * row["n_seeds"]),
        }

    def confirm_best(self, top: int = 1) -> dict[str, Any]:
        """Re-run the `top` best measured configurations on the confirmation seeds (into OUT, so they
        are leaderboard rows) and score them as one Holm family."""
        from optuna.trial import TrialState

        done = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        ranked, seen = [], set()
        for trial in sorted(done, key=lambda t: -t.value):
            key = json.dumps(trial.params, sort_keys=True, default=str)
            if trial.value > CENSORED and key not in seen:
                seen.add(key)
                ranked.append(trial)
        chosen = ranked[:top]
        result: dict[str, Any] = {
            "name": self.name,
            "learner": self.label,
            "task": self.task,
            "pipeline": self.pipeline,
            "trials": len(done),
            "measured_trials": len(ranked),
            "explore_seeds": self.explore,
            "confirm_seeds": self.confirm,
            "fixed_params": self.params,
            "storage": self.storage,
            "confirmed": [],
        }
        if chosen:
            plans = {t.number: self._plan(t.params, self.confirm) for t in chosen}
            requests = [r for plan in plans.values() for r in plan]
            records, problems = api.execute_plan(requests, self.out, verbose=self.verbose, **self.execution)
            family = f"search:{self.name}"  # the confirmation is one declared family (PROTOCOL §5)
            records = api.declare_family(records, requests, self.out, family)
            frame = summarize(records)
            frame = frame[frame["family"] == family] if not frame.empty else frame
            by_name = {row["learner"]: row for row in frame.to_dict("records")}
            for trial in chosen:
                name = plans[trial.number][0].learner.name
                row = by_name.get(name, {})
                result["confirmed"].append(
                    {
                        "trial": trial.number,
                        "params": trial.params,
                        "row": name,
                        "explore_value": trial.value,
                        **_confirmed(row),
                    }
                )
            write_atomic(self.folder / "confirmed.csv", lambda f: frame.to_csv(f, index=False, float_format="%.4g"))
            result["problems"] = problems
            api.leaderboard(self.out)
        result["verdict"] = search_verdict(result)
        result["scoring_version"] = SCORING_VERSION  # what its trial values and verdict were scored with
        write_atomic(self.folder / "search.json", lambda f: json.dump(result, f, indent=1, default=str))
        self.write_trials()
        return result

    def write_trials(self) -> Path:
        rows = []
        for t in self.study.get_trials(deepcopy=False):
            row = {"trial": t.number, "state": t.state.name, "value": t.value}
            row.update({f"param.{k}": v for k, v in t.params.items()})
            row.update(
                {
                    k: t.user_attrs.get(k)
                    for k in ("effect_mean", "ci_low", "ci_high", "verdict", "censored", "seconds", "retry_of", "error")
                }
            )
            rows.append(row)
        path = self.folder / "trials.csv"
        write_atomic(path, lambda f: pd.DataFrame(rows).to_csv(f, index=False, float_format="%.6g"))
        return path


def _suggest(trial: Any, name: str, dist: Any) -> Any:
    import optuna.distributions as d

    if isinstance(dist, d.CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    suggest = trial.suggest_int if isinstance(dist, d.IntDistribution) else trial.suggest_float
    return suggest(name, dist.low, dist.high, log=dist.log)


def _unclaimed(trial: Any) -> bool:
    """Running for a minute without the host and pid its process writes right after asking for it:
    that process died in between (a live one takes milliseconds)."""
    started = trial.datetime_start
    return "pid" not in trial.user_attrs and started is not None and (datetime.now() - started).total_seconds() > 60


def _alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


def search(learner: str, task: str, trials: int = 20, confirm_top: int = 1, **options: Any) -> dict[str, Any]:
    """Explore `trials` configurations, confirm the best `confirm_top` on fresh seeds, write the trials
    table, the confirmation, `search.json` and the figure under OUT/searches/NAME. Returns the result
    (its "verdict" is the sentence to quote)."""
    if trials < 1 or confirm_top < 1:
        raise ImlbenchError(f"--trials and --confirm-top must be at least 1, got {trials} and {confirm_top}")
    study = Search(learner, task, **options)
    study.explore_trials(trials)
    result = study.confirm_best(confirm_top)
    result["figure"] = str(search_figure(study, result))
    return result
