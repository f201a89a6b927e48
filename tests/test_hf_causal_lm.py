"""The hf-causal-lm learner: contract, learning, saved models, errors, offline behaviour."""

from __future__ import annotations

import json
import socket
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import imlbench  # noqa: E402
from imlbench.core.protocol import QUESTION  # noqa: E402
from imlbench.core.seeds import derive_seed  # noqa: E402
from imlbench.core.specs import ImlbenchError, resolve  # noqa: E402
from imlbench.learners.hf_causal_lm import HFCausalLM  # noqa: E402
from imlbench.learners.hf_loading import encode as encode_texts  # noqa: E402
from imlbench.learners.hf_loading import word_level_tokenizer  # noqa: E402
from imlbench.tasks.synthetic_defs_text import SyntheticDefsText  # noqa: E402
from imlbench.views.text import (  # noqa: E402
    NO_ANSWER,
    TEXT,  # noqa: E402
)

TINY = dict(d_model=32, n_layers=1, n_heads=2, epochs=2, stage2_epochs=2, batch_size=32, device="cpu")
TINY_RUN = {
    "n_entities": 40,
    "d_model": 32,
    "n_layers": 1,
    "n_heads": 2,
    "epochs": 3,
    "stage2_epochs": 2,
    "device": "cpu",
}


@pytest.fixture(scope="module")
def task_data():
    task = SyntheticDefsText(n_entities=40)
    data = task.generate(0)
    encode = lambda split, query=False: task.encode(  # noqa: E731
        TEXT, data, getattr(data, split).without_targets() if query else getattr(data, split), split
    )
    return task, data, encode


@pytest.fixture
def offline(monkeypatch):
    """The hub is unreachable, and any attempt to reach it fails the test."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    real_connect = socket.socket.connect

    def no_network(sock, address, *args, **kwargs):
        if sock.family == socket.AF_UNIX:  # the fork server a learner process starts from: local
            return real_connect(sock, address, *args, **kwargs)
        raise AssertionError("the test tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)


def test_spec_resolves_and_constructing_loads_nothing(offline):
    spec = resolve("learner", "hf-causal-lm")
    assert spec.params["model"] == "tiny-gpt-neox" and spec.params["tokenizer"] == "auto"
    learner = resolve("learner", "hf-causal-lm", {"model": "no-such-org/no-such-model"}).build()
    assert not hasattr(learner, "model_") and learner.get_params()["model"] == "no-such-org/no-such-model"
    assert learner.views == ("text",) and learner.supports("continue_training")
    with pytest.raises(ImlbenchError, match="dtype"):
        resolve("learner", "hf-causal-lm", {"dtype": "float16"})


def test_word_level_tokenizer_covers_every_split_and_is_deterministic(task_data):
    task, data, encode = task_data
    stage1 = encode("stage1")
    tokenizer = word_level_tokenizer([*stage1.lexicon, *stage1.prompts])
    again = word_level_tokenizer([*reversed(stage1.prompts), *stage1.lexicon])
    assert tokenizer.get_vocab() == again.get_vocab()
    for x in (encode("stage2"), encode("test", query=True)):
        for text in x.prompts:
            assert tokenizer.unk_token_id not in tokenizer(text)["input_ids"]


def test_tiny_model_learns_a_tiny_task(task_data):
    task, data, encode = task_data
    learner = HFCausalLM(**{**TINY, "d_model": 64, "epochs": 40, "lr": 3e-3}, random_state=1)
    assert sum(1 for _ in learner.fit(encode("stage1"))) == 40  # one yield per epoch
    questions = data.stage1.select(data.stage1.kind == QUESTION)
    queries = task.encode(TEXT, data, questions.without_targets(), "stage1")
    predicted = learner.predict(queries)
    assert np.mean(predicted == questions.target) > 0.9  # it fits its training questions
    assert learner.run_info_["model"] == "tiny-gpt-neox" and learner.run_info_["tokenizer"] == "word-level"
    assert {"transformers", "tokenizers", "revision", "n_parameters", "dtype"} <= set(learner.run_info_)
    # batching and left padding change nothing: one query at a time gives the same answers
    few = replace(queries, prompts=queries.prompts[:24])
    np.testing.assert_array_equal(learner.set_params(eval_batch_size=1).predict(few), predicted[:24])


def test_predictions_are_labels_or_no_answer(task_data):
    task, data, encode = task_data
    learner = HFCausalLM(**TINY)
    learner.prepare(encode("stage1"))  # untrained: it generates junk
    predicted = learner.predict(encode("test", query=True))
    assert set(predicted) <= set(data.label_space) | {NO_ANSWER} and NO_ANSWER in set(predicted)
    assert NO_ANSWER not in set(data.test.target) and NO_ANSWER not in set(data.label_space)


def _weights(learner: HFCausalLM) -> list:
    return [p.detach().clone() for p in learner.model_.parameters()]


def test_same_seed_same_weights_even_with_dropout_and_global_rng_untouched(task_data, tmp_path):
    """Dropout draws from the run's seed: a model with dropout trains identically twice."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    task, data, encode = task_data
    stage1 = encode("stage1")
    base = HFCausalLM(**TINY)
    base.prepare(stage1)
    config = GPTNeoXConfig(**{**base.model_.config.to_dict(), "hidden_dropout": 0.3, "attention_dropout": 0.3})
    GPTNeoXForCausalLM(config).save_pretrained(tmp_path / "dropout")
    base.tokenizer_.save_pretrained(tmp_path / "dropout")
    runs = []
    for index, seed in enumerate((5, 5, 6)):
        torch.manual_seed(index)  # a different global state each time: the run's seed must decide
        expected = torch.rand(3)
        torch.manual_seed(index)
        learner = HFCausalLM(**{**TINY, "model": str(tmp_path / "dropout")}, random_state=seed)
        for _ in learner.fit(stage1):
            pass
        runs.append(_weights(learner))
        assert torch.equal(torch.rand(3), expected)  # fitting left the global generator alone
    assert all(torch.equal(a, b) for a, b in zip(runs[0], runs[1]))
    assert not all(torch.equal(a, c) for a, c in zip(runs[0], runs[2]))


def test_stage2_continues_weights_and_optimizer(task_data):
    task, data, encode = task_data
    learner = HFCausalLM(**{**TINY, "stage2_lr": 1e-5})
    for _ in learner.fit(encode("stage1")):
        pass
    optimizer, steps = learner.optimizer_, learner.n_steps_
    assert sum(1 for _ in learner.continue_fit(encode("stage2"))) == 2
    assert learner.optimizer_ is optimizer and learner.n_steps_ > steps
    assert all(group["lr"] == 1e-5 for group in optimizer.param_groups)


def test_bfloat16_autocast_runs_on_cpu(task_data):
    import torch

    task, data, encode = task_data
    learner = HFCausalLM(**{**TINY, "epochs": 1, "dtype": "bfloat16"})
    for _ in learner.fit(encode("stage1")):
        pass
    assert learner.run_info_["dtype"] == "bfloat16"
    # autocast computes in bfloat16, but the weights and AdamW's moments stay float32
    assert {p.dtype for p in learner.model_.parameters()} == {torch.float32}
    assert {v.dtype for state in learner.optimizer_.state.values() for k, v in state.items() if k != "step"} == {
        torch.float32
    }
    assert len(learner.predict(encode("stage2", query=True))) == len(data.stage2)


def test_saved_model_directory_gives_the_same_records(tmp_path, offline):
    """save_pretrained of the built-in initialization, rerun as model=DIR: identical records."""
    seed = 2
    task = SyntheticDefsText(n_entities=TINY_RUN["n_entities"])
    data = task.generate(seed)
    params = {k: v for k, v in TINY_RUN.items() if k != "n_entities"}
    learner = HFCausalLM(**params, random_state=derive_seed(seed, 1))
    learner.prepare(task.encode(TEXT, data, data.stage1, "stage1"))
    learner.save_pretrained(tmp_path / "tiny")
    runs = {}
    for name, model in (("builtin", "tiny-gpt-neox"), ("dir", str(tmp_path / "tiny"))):
        summary = imlbench.run(
            learner="hf-causal-lm",
            task="synthetic-defs-text",
            seeds=[seed],
            params={**TINY_RUN, "model": model},
            out=tmp_path / name,
        )
        (runs[name],) = summary.attrs["records"]
        assert runs[name]["status"] == "ok", runs[name]["error"]
    # as JSON: NaN equals NaN there
    for key in ("accuracy", "accuracy_after_stage1", "definition_accuracy", "curve", "scores", "train_accuracy"):
        assert json.dumps(runs["dir"][key], sort_keys=True) == json.dumps(
            runs["builtin"][key], sort_keys=True
        )  # NaN too


def test_unencodable_label_is_a_one_line_error(task_data, tmp_path):
    task, data, encode = task_data
    learner = HFCausalLM(**TINY)
    learner.prepare(encode("stage1"))
    queries = encode("test", query=True)
    strange = replace(queries, label_texts=(*queries.label_texts[:-1], "Zorblax Quux"))
    with pytest.raises(ValueError, match="cannot encode the label 'Zorblax Quux'") as info:
        learner.predict(strange)
    assert "\n" not in str(info.value)
    # a saved word-level tokenizer meets another seed's names: the same error, at fit
    learner.save_pretrained(tmp_path / "seed0")
    other = SyntheticDefsText(n_entities=40).generate(1)
    with pytest.raises(ValueError, match="cannot encode"):
        HFCausalLM(**{**TINY, "model": str(tmp_path / "seed0")}).prepare(
            task.encode(TEXT, other, other.stage1, "stage1")
        )


def test_unknown_model_is_a_one_line_error_without_network(task_data, offline, monkeypatch):
    import transformers

    task, data, encode = task_data
    attempts = []
    load = transformers.AutoTokenizer.from_pretrained
    monkeypatch.setattr(
        transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: attempts.append(a) or load(*a, **k)
    )
    for name in ("imlbench-test/no-such-model", "imlbench-test/no-such-model", "./no/such/dir"):
        learner = HFCausalLM(**{**TINY, "model": name})
        with pytest.raises(ImlbenchError) as info:
            next(learner.fit(encode("stage1")))
        message = str(info.value)
        assert "\n" not in message and repr(name) in message and "--param model=/path/to/DIR" in message
    assert len(attempts) == 1  # the hub is not asked again for a name that failed (each try can take a minute)


def test_tag_blind_sees_no_tag_text(task_data, monkeypatch):
    """What the tag-blind control hands a text learner (the view's hide_tags) holds no tag text."""
    from imlbench.views.text import TextView

    task, data, encode = task_data
    seen = []

    class Recorder(HFCausalLM):
        def prepare(self, data):
            seen.append(data)
            super().prepare(data)

    learner = Recorder(**{**TINY, "epochs": 1})
    view = TextView()
    for _ in learner.fit(view.hide_tags(encode("stage1"))):
        pass
    predicted = learner.predict(view.hide_tags(encode("stage2", query=True)))
    assert len(predicted) == len(data.stage2)
    tags = set(encode("stage1").tag_texts)
    vocab = set(learner.tokenizer_.get_vocab())
    assert not tags & vocab and not any(t in p for t in tags for p in seen[0].prompts)


def test_generic_text_view_runs_on_a_tokens_task(tmp_path):
    """Every tokens task offers `text`: synthetic-defs through the generic rendering of token names."""
    summary = imlbench.run(learner="hf-causal-lm", task="synthetic-defs", seeds=[0], params=TINY_RUN, out=tmp_path)
    (record,) = summary.attrs["records"]
    assert record["status"] == "ok", record["error"]
    assert record["view"] == "text" and set(record["accuracy"]) >= {"d1consis", "d2consis"}
    assert record["learner_info"]["model"] == "tiny-gpt-neox"


def test_tag_blind_runs_on_the_text_view(tmp_path):
    summary = imlbench.run(
        learner="tag-blind",
        task="synthetic-defs-text",
        seeds=[0],
        out=tmp_path,
        params={
            "base": "hf-causal-lm",
            "n_entities": 40,
            "base_params": {k: v for k, v in TINY_RUN.items() if k != "n_entities"},
        },
    )
    (record,) = summary.attrs["records"]
    assert record["status"] == "ok", record["error"]
    assert record["view"] == "text"


def test_llm_suite_plans_without_downloading(offline):
    requests = imlbench.api.plan_suite("llm")
    learners = {r.learner.name for r in requests}
    assert learners == {"pythia-70m", "pythia-160m", "pythia-410m"} and len(requests) == 15
    for r in requests:
        assert r.learner.params["model"].startswith("EleutherAI/pythia-") and r.learner.params["tokenizer"] == "auto"
        assert r.learner.params["dtype"] == "bfloat16" and r.pipeline == "two-stage"
        assert r.task.name == "synthetic-defs-text"


def test_without_the_extra_a_run_says_what_to_install(task_data, monkeypatch):
    import sys

    task, data, encode = task_data
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if it were not installed
    learner = resolve("learner", "hf-causal-lm").build()  # resolving (and `imlbench list`) still works
    with pytest.raises(ImlbenchError, match=r"pip install 'imlbench\[hf\]'"):
        next(learner.fit(encode("stage1")))


@pytest.mark.slow
def test_synthetic_defs_text_shows_iml(tmp_path):
    """The headline of issue 11 on the default specs (seeds 0..2; ~4 min each on one core)."""
    summary = imlbench.run(learner="hf-causal-lm", task="synthetic-defs-text", seeds=3, out=tmp_path)
    records = summary.attrs["records"]
    assert all(r["status"] == "ok" and r["definitions_learned"] for r in records)
    assert summary["effect_mean"].iloc[0] >= 20


def test_hidden_states_feed_the_tag_probe(task_data):
    """The diagnostics interface: one (n, width) array per layer, embeddings first, at the last prompt
    token; `imlbench diagnose` accepts the learner for the tag probe and for gradient alignment."""
    from imlbench.harness.diagnostics import get_diagnostic

    task, data, encode = task_data
    learner = HFCausalLM(**TINY)
    for _ in learner.fit(encode("stage1")):
        pass
    queries = encode("test", query=True)
    layers = learner.hidden_states(queries)
    assert len(layers) == TINY["n_layers"] + 1
    assert all(h.shape == (len(data.test), TINY["d_model"]) and np.isfinite(h).all() for h in layers)
    # batching and left padding change nothing: one query at a time gives the same states
    few = replace(queries, prompts=queries.prompts[:16])
    assert len({len(learner.tokenizer_(p)["input_ids"]) for p in few.prompts}) > 1  # so padding differs
    alone = learner.set_params(eval_batch_size=1).hidden_states(few)
    for one, batched in zip(alone, layers):
        np.testing.assert_allclose(one, batched[:16], rtol=1e-4, atol=1e-5)
    assert get_diagnostic("tag-probe").supports(HFCausalLM)
    assert get_diagnostic("gradient-alignment").supports(HFCausalLM)


def test_per_example_loss_feeds_gradient_alignment(task_data):
    """`example_loss` ignores padding, agrees with the training loss (weighted by loss tokens), and
    vmapped per-example gradients through `functional_call` equal a plain autograd loop."""
    import torch
    from reference import per_example_grads_loop

    from imlbench.diagnostics.measures import per_example_grads

    task, data, encode = task_data
    learner = HFCausalLM(**{**TINY, "epochs": 1})
    for _ in learner.fit(encode("stage1")):
        pass
    tensors = learner.tensors(encode("stage1"))  # questions and definitions: lengths differ
    rows = torch.argsort(tensors[1], stable=True)[:6]  # the shortest documents: the batch has padding to cut
    full, cropped = tuple(t[rows] for t in tensors), learner.make_batch(tensors, rows)
    assert cropped[0].shape[1] < full[0].shape[1]  # the batch was cut to its longest document
    losses = learner.example_loss(cropped)
    assert losses.shape == (6,) and torch.allclose(learner.example_loss(full), losses, atol=1e-6)
    tokens = cropped[2][:, 1:].sum(dim=1)
    assert torch.allclose(learner.batch_loss(cropped), (losses * tokens).sum() / tokens.sum(), atol=1e-6)
    vmapped, looped = per_example_grads(learner, full), per_example_grads_loop(learner, full)
    assert vmapped.shape == (6, sum(p.numel() for p in learner.model_.parameters()))
    torch.testing.assert_close(vmapped, looped, rtol=1e-4, atol=1e-5)


def test_answer_scores_are_the_labels_log_probabilities(task_data):
    task, data, encode = task_data
    learner = HFCausalLM(**{**TINY, "epochs": 5, "lr": 3e-3}, random_state=2)
    for _ in learner.fit(encode("stage1")):
        pass
    queries = replace(encode("test", query=True), prompts=encode("test", query=True).prompts[:12])
    candidates = data.label_space[:7]
    scores = learner.predict_scores(queries, candidates)
    assert scores.shape == (12, 7) and np.all(scores <= 0) and np.isfinite(scores).all()
    # the same numbers from one unpadded forward pass per query and label, written out
    import torch

    where = {int(v): i for i, v in enumerate(queries.label_space)}
    for row in (0, 5):
        prompt = encode_texts(learner.tokenizer_, learner.tokenizer_name_, [queries.prompts[row]], special=True)[0]
        for column in (0, 6):
            label = encode_texts(
                learner.tokenizer_,
                learner.tokenizer_name_,
                [" " + queries.label_texts[where[int(candidates[column])]]],
                special=False,
            )[0]
            with torch.no_grad():
                logits = learner.model_(input_ids=torch.tensor([prompt + label])).logits[0]
            logp = torch.log_softmax(logits.float(), dim=-1)
            expected = sum(float(logp[len(prompt) - 1 + k, t]) for k, t in enumerate(label))
            assert scores[row, column] == pytest.approx(expected, abs=1e-4)
    # batching and left padding change nothing
    np.testing.assert_allclose(
        learner.set_params(eval_batch_size=1).predict_scores(queries, candidates), scores, atol=1e-5
    )
    with pytest.raises(ValueError, match="no text"):
        learner.predict_scores(queries, np.array([10**6]))
