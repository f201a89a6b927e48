"""The built-in diagnostics: the paper's three hypotheses (measurements in `measures`, figures and
tables in `figures`). Each is registered in the `imlbench.diagnostics` entry-point group.

- gradient-alignment (hypothesis 3): during stage 1, is a tag-1 definition's gradient better aligned
  with its questions' gradient than a tag-2 definition's?
- tag-probe (hypothesis 2): after stage 1 and at the evaluation point, is the defining tag decodable
  from the hidden state of a question?
- in-context (hypothesis 1): with the definition placed before its question, is a tag-2 definition
  still used less than a tag-1 one?
"""

from __future__ import annotations

from functools import partial
from typing import Any

from imlbench.core.protocol import TAGS
from imlbench.diagnostics import figures
from imlbench.harness.diagnostics import Context, Diagnostic
from imlbench.harness.stages import timed


class GradientAlignment(Diagnostic):
    """Measured after the first stage-1 epoch and after every `every`-th one, with the training loss
    and the answer-only loss, over all parameters and by group; then stage 2 runs to the evaluation
    point, so that the IML effect of the same run sits beside its alignment (per batch size, say)."""

    name = "gradient-alignment"
    needs, needs_text = "example_loss", "a per-example loss (example_loss with params)"
    options = {"variables": 32, "every": 1}
    report_order = 1
    plot = staticmethod(figures.plot_gradient_alignment)
    table = staticmethod(figures.alignment_table)

    def measure(self, ctx: Context) -> dict[str, Any]:
        import time

        from imlbench.diagnostics.measures import gradient_alignment_rows, sample_variables

        every, limit = ctx.options["every"], ctx.options["variables"]
        samples = {
            tag: sample_variables(ctx.data, s, limit, ctx.rng)
            for tag, s in zip(TAGS, ("d1consis", "d2consis", "d3consis"))
        }
        seconds = {"fit": 0.0, "diagnostic": 0.0}
        rows, n_measured, checkpoint = [], 0, 0
        fit = timed(ctx.learner.fit(ctx.encode(ctx.data.stage1, "stage1")), seconds)
        try:
            for checkpoint, _ in enumerate(fit, start=1):
                if checkpoint == 1 or checkpoint % every == 0:
                    t = time.perf_counter()
                    rows += gradient_alignment_rows(ctx.learner, ctx.task, ctx.view, ctx.data, samples, checkpoint)
                    seconds["diagnostic"] += time.perf_counter() - t
                    n_measured += 1
                    ctx.progress("stage1", checkpoint, ", ".join(f"{r['tag']} {r['cosine']:+.3f}" for r in rows[-3:]))
        finally:
            fit.close()
        seconds["per_epoch"] = seconds["fit"] / max(checkpoint, 1)
        seconds["per_measured_checkpoint"] = seconds["diagnostic"] / max(n_measured, 1)
        effect = self.iml_effect(ctx, seconds)
        info = getattr(ctx.learner, "run_info_", None) or {}
        steps = info.get("optimizer_steps", {})
        for row in rows:
            row.update(iml_effect=effect["effect"], stage1_steps=steps.get("stage1"))
        return {"rows": rows, "seconds": seconds, "stage1_checkpoints": checkpoint, "iml": effect, "learner_info": info}

    def iml_effect(self, ctx: Context, seconds: dict[str, float]) -> dict[str, Any]:
        """Stage 2 to the evaluation point as `imlbench run` seeks it; the effect there, in points."""
        from imlbench.harness.evaluation import Evaluator

        evaluator = Evaluator(ctx.task, ctx.data, ctx.view)
        reached = self.stage2_to_point(ctx, evaluator, seconds)
        accuracy = evaluator.test(ctx.learner)
        return {
            "effect": 100 * (accuracy["d1consis"] - accuracy["d2consis"]),
            "d1consis": accuracy["d1consis"],
            "d2consis": accuracy["d2consis"],
            **reached,
        }


class TagProbe(Diagnostic):
    name = "tag-probe"
    needs, needs_text = "hidden_states", "hidden states (hidden_states)"
    options = {"variables": 32, "permutations": 200}
    report_order = 2
    plot = staticmethod(figures.plot_tag_probe)
    table = staticmethod(figures.probe_table)

    def measure(self, ctx: Context) -> dict[str, Any]:
        from imlbench.diagnostics.measures import probe_rows

        return self.train_two_stages(
            ctx,
            lambda point, evaluator: probe_rows(
                ctx.learner,
                ctx.task,
                ctx.view,
                ctx.data,
                point,
                ctx.options["variables"],
                ctx.rng,
                permutations=ctx.options["permutations"],
            ),
        )


class InContext(Diagnostic):
    name = "in-context"
    needs, needs_text = "predict", "a tokens- or text-view predict"
    views = ("tokens", "text")
    report_order = 3
    plot = staticmethod(figures.plot_in_context)
    table = staticmethod(figures.in_context_table)

    def measure(self, ctx: Context) -> dict[str, Any]:
        from imlbench.diagnostics.measures import in_context_queries, in_context_rows, in_context_text_queries

        queries = (
            partial(in_context_text_queries, ctx.task, ctx.data)
            if ctx.view == "text"
            else partial(in_context_queries, ctx.data)
        )
        return self.train_two_stages(
            ctx,
            lambda point, evaluator: in_context_rows(
                ctx.learner, ctx.data, point, evaluator.test(ctx.learner), queries
            ),
        )
