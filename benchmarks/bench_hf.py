"""hf-causal-lm: training throughput against a plain Hugging Face `Trainer`, and the cost of generation.

Run: `pytest benchmarks/bench_hf.py --benchmark-columns=mean,stddev,rounds -s`

1. The adapter's stage-1 training at the tiny default size (`learners/hf-causal-lm.toml`) on the
   default `synthetic-defs-text` data, against `transformers.Trainer` training the same
   initialization on the same documents (same tokenizer, batch size, AdamW rate, constant schedule,
   loss on completions only, one thread). Both include building the tokenizer and the model; the
   adapter must not be slower (target "hf/trainer" in benchmarks/targets.py).
2. One default two-stage run through the harness: the share of its time spent in evaluation, and
   within it in greedy generation (the learner's `generate`), which every stage-2 checkpoint pays
   (target "hf/generation").
"""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from targets import check_speedup, check_target  # noqa: E402

from imlbench.core.specs import resolve  # noqa: E402
from imlbench.harness.stages import execute  # noqa: E402
from imlbench.learners.hf_causal_lm import HFCausalLM  # noqa: E402

EPOCHS = 3


def _default_learner(**params) -> HFCausalLM:
    return resolve("learner", "hf-causal-lm", {"device": "cpu", **params}).build()


def _stage1():
    task = resolve("task", "synthetic-defs-text").build()
    data = task.generate(0)
    return task.encode("text", data, data.stage1, "stage1")


def _adapter_seconds(stage1) -> float:
    learner = _default_learner(epochs=EPOCHS)
    start = time.perf_counter()
    for _ in learner.fit(stage1):
        pass
    return time.perf_counter() - start


def _trainer_seconds(stage1, out_dir) -> float:
    """The usual Trainer recipe: tokenized examples with labels -100 outside the completion, a
    collator that pads them, AdamW at a constant rate, no evaluation, saving or logging."""
    from transformers import Trainer, TrainingArguments

    template = _default_learner(epochs=EPOCHS)
    torch.set_num_threads(template.n_threads)
    start = time.perf_counter()
    template.prepare(stage1)  # the same tokenizer and initial weights as the adapter builds
    tokenizer, model = template.tokenizer_, copy.deepcopy(template.model_)
    prompts = tokenizer(list(stage1.prompts))["input_ids"]
    completions = tokenizer(list(stage1.completions), add_special_tokens=False)["input_ids"]
    eos = [tokenizer.eos_token_id]
    examples = [{"input_ids": p + c + eos, "labels": [-100] * len(p) + c + eos} for p, c in zip(prompts, completions)]

    def collate(batch):
        width = max(len(e["input_ids"]) for e in batch)
        pad = lambda seq, value: seq + [value] * (width - len(seq))  # noqa: E731
        return {
            "input_ids": torch.tensor([pad(e["input_ids"], tokenizer.pad_token_id) for e in batch]),
            "attention_mask": torch.tensor([pad([1] * len(e["input_ids"]), 0) for e in batch]),
            "labels": torch.tensor([pad(e["labels"], -100) for e in batch]),
        }

    args = TrainingArguments(
        output_dir=str(out_dir),
        per_device_train_batch_size=template.batch_size,
        learning_rate=template.lr,
        adam_beta2=0.98,
        weight_decay=0.0,
        lr_scheduler_type="constant",
        num_train_epochs=EPOCHS,
        use_cpu=True,
        save_strategy="no",
        logging_strategy="no",
        eval_strategy="no",
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        max_grad_norm=0.0,
        seed=0,
    )
    Trainer(model=model, args=args, train_dataset=examples, data_collator=collate).train()
    return time.perf_counter() - start


def test_adapter_is_not_slower_than_trainer(benchmark, tmp_path):
    pytest.importorskip("accelerate")  # Trainer needs it
    stage1 = _stage1()
    _adapter_seconds(stage1)  # warm-up: imports, allocator, thread pool
    adapter, trainer = [], []

    def one_round() -> None:  # both, back to back, so load on a shared machine hits them alike
        adapter.append(_adapter_seconds(stage1))
        trainer.append(_trainer_seconds(stage1, tmp_path))

    benchmark.pedantic(one_round, rounds=3, iterations=1)
    a, t = float(np.median(adapter)), float(np.median(trainer))
    documents = EPOCHS * len(stage1.prompts)
    benchmark.extra_info.update(
        adapter_seconds=a,
        trainer_seconds=t,
        adapter_docs_per_s=documents / a,
        trainer_docs_per_s=documents / t,
        speedup=t / a,
    )
    print(
        f"\n{EPOCHS} epochs of {len(stage1.prompts)} documents, median of 3: adapter {a:.2f} s "
        f"({documents / a:,.0f} documents/s), Trainer {t:.2f} s ({documents / t:,.0f} documents/s): "
        f"the adapter is {t / a:.2f}x the Trainer's speed"
    )
    check_speedup(benchmark, "hf/trainer", a, t)


def test_share_of_run_time_generating_answers(benchmark):
    task = resolve("task", "synthetic-defs-text")
    learner_spec = resolve("learner", "hf-causal-lm", {"device": "cpu"})
    spent = {"generate": 0.0}
    original = HFCausalLM.generate

    def timed_generate(self, prompts, max_new_tokens):
        start = time.perf_counter()
        try:
            return original(self, prompts, max_new_tokens)
        finally:
            spent["generate"] += time.perf_counter() - start

    HFCausalLM.generate = timed_generate
    try:
        # in this process: an isolated run's learner would call the unpatched `generate` of its own
        result = benchmark.pedantic(
            execute, args=(task, learner_spec, 0, "two-stage", 0.98), kwargs={"isolated": False}, rounds=1, iterations=1
        )
    finally:
        HFCausalLM.generate = original
    seconds = result["measurements"]["seconds"]
    info = {
        "total_s": seconds["total"],
        "evaluation_s": seconds["evaluation"],
        "generate_s": spent["generate"],
        "evaluation_share": seconds["evaluation"] / seconds["total"],
        "generate_share": spent["generate"] / seconds["total"],
        "checkpoints": len(result["curve"]),
    }
    benchmark.extra_info.update(info)
    print(
        f"\none default run: {info['total_s']:.1f} s, evaluation {info['evaluation_s']:.1f} s "
        f"({100 * info['evaluation_share']:.0f}%), of which greedy generation {info['generate_s']:.1f} s "
        f"({100 * info['generate_share']:.0f}% of the run), {info['checkpoints']} stage-2 checkpoints evaluated"
    )
    assert 0 < spent["generate"] <= seconds["evaluation"]
    # against the rest of the run rather than the whole, so that generation twice as slow misses it
    check_target(benchmark, "hf/generation", spent["generate"] / (seconds["total"] - spent["generate"]))


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, "-s"]))
