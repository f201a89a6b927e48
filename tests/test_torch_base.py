"""The torch base: what every torch learner shares (seeding, the two stages, batching, device) and
the optional diagnostics interface (per-example loss, hidden states)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import grad, vmap

from imlbench.core.protocol import DEFINITION, QUESTION
from imlbench.core.specs import ImlbenchError, resolve
from imlbench.learners.convnet import ConvNet
from imlbench.learners.mlp import MLP
from imlbench.learners.torch_base import TorchLearner
from imlbench.learners.transformer import Transformer
from imlbench.tasks.synthetic_defs import SyntheticDefs
from imlbench.tasks.tagged_digits import TaggedDigits
from imlbench.views.base import get_view

FAST = dict(epochs=2, stage2_epochs=2, device="cpu")
LEARNERS = {
    "mlp": (lambda **p: MLP(embedding_dim=8, hidden=16, **{**FAST, **p}), "table"),
    "convnet": (lambda **p: ConvNet(channels1=4, channels2=8, hidden=16, **{**FAST, **p}), "image"),
    "transformer": (
        lambda **p: Transformer(n_layers=2, d_model=16, n_heads=2, **{"batch_size": 32, **FAST, **p}),
        "tokens",
    ),
}


@pytest.fixture(scope="module")
def tasks():
    """(task, generated data) per learner: the image view is tagged-digits', the others synthetic-defs'."""
    defs, digits = SyntheticDefs(n_entities=60), TaggedDigits(n_entities=60, n_renders=2)
    defs_data, digits_data = defs.generate(0), digits.generate(0)
    return {"mlp": (defs, defs_data), "transformer": (defs, defs_data), "convnet": (digits, digits_data)}


def _encode(tasks, name: str, split: str, examples=None):
    task, data = tasks[name]
    examples = getattr(data, split) if examples is None else examples
    return task.encode(get_view(LEARNERS[name][1]), data, examples, split)


def _fit(tasks, name: str, **params) -> TorchLearner:
    learner = LEARNERS[name][0](**params)
    assert sum(1 for _ in learner.fit(_encode(tasks, name, "stage1"))) == learner.epochs  # a yield per epoch
    return learner


@pytest.fixture(scope="module")
def fitted(tasks):
    return {name: _fit(tasks, name) for name in LEARNERS}


def _queries(tasks, name: str):
    _, data = tasks[name]
    return _encode(tasks, name, "test", data.test.without_targets())


@pytest.mark.parametrize("name", LEARNERS)
def test_same_seed_same_weights_other_seed_differs(tasks, name):
    a, b, c = (_fit(tasks, name, random_state=s) for s in (3, 3, 4))
    assert all(torch.equal(p, q) for p, q in zip(a.model_.parameters(), b.model_.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.model_.parameters(), c.model_.parameters()))


@pytest.mark.parametrize("name", LEARNERS)
def test_fit_leaves_the_global_torch_rng_alone(tasks, name):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _fit(tasks, name)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("name", LEARNERS)
def test_continue_fit_before_fit_fails(tasks, name):
    with pytest.raises(RuntimeError, match="before fit"):
        next(LEARNERS[name][0]().continue_fit(_encode(tasks, name, "stage2")))


@pytest.mark.parametrize("name", LEARNERS)
def test_stage2_switches_rate_and_batch_size_and_keeps_the_optimizer(tasks, name):
    learner = _fit(tasks, name, stage2_lr=1e-5)
    optimizer, steps = learner.optimizer_, learner.n_steps_
    stage2 = _encode(tasks, name, "stage2")
    assert sum(1 for _ in learner.continue_fit(stage2)) == learner.stage2_epochs
    assert learner.optimizer_ is optimizer and all(g["lr"] == 1e-5 for g in optimizer.param_groups)
    # the mlp takes no stage2_batch_size: its stage 2 keeps the stage-1 batch size
    batch_size = learner.batch_size if name == "mlp" else learner.stage2_batch_size
    n = len(learner.tensors(stage2)[0])
    assert learner.n_steps_ - steps == learner.stage2_epochs * -(-n // batch_size)


def test_one_pass_batches_draw_one_permutation_per_epoch():
    """The batch order (the only randomness in training after the initialization) is exactly the
    seeded generator's permutations: what keeps records unchanged across refactorings."""
    learner = MLP(random_state=5)
    learner.rng_, learner.stream_ = np.random.default_rng(5), np.zeros(0, np.int64)
    reference = np.random.default_rng(5)
    for _ in range(3):
        batches = learner._epoch_batches(10, 4, 0)
        assert [len(b) for b in batches] == [4, 4, 2]
        np.testing.assert_array_equal(np.concatenate(batches), reference.permutation(10))


def test_steps_per_epoch_batches_larger_than_the_data_repeat_documents_evenly():
    learner = Transformer()
    learner.rng_, learner.stream_ = np.random.default_rng(0), np.zeros(0, np.int64)
    batches = learner._epoch_batches(5, 12, 2)
    counts = np.bincount(np.concatenate(batches), minlength=5)
    assert [len(b) for b in batches] == [12, 12] and counts.max() - counts.min() <= 1


@pytest.mark.parametrize("name", ["mlp", "transformer"])
def test_stage1_steps_per_epoch_holds_optimizer_steps_fixed_across_batch_sizes(tasks, name):
    """The batch-size sweep at equal optimizer steps: `steps_per_epoch` fixes stage 1's steps whatever
    the batch size, and `run_info_` records each stage's steps (records carry them)."""
    n = len(_encode(tasks, name, "stage1").X if name == "mlp" else _encode(tasks, name, "stage1").tokens)
    free = {b: _fit(tasks, name, batch_size=b).run_info_["optimizer_steps"]["stage1"] for b in (8, 64)}
    assert free == {b: 2 * -(-n // b) for b in (8, 64)}  # off: one pass per epoch
    fixed = {b: _fit(tasks, name, batch_size=b, steps_per_epoch=3) for b in (8, 64)}
    assert {b: f.run_info_["optimizer_steps"]["stage1"] for b, f in fixed.items()} == {8: 6, 64: 6}
    learner = fixed[8]
    for _ in learner.continue_fit(_encode(tasks, name, "stage2")):
        pass
    assert set(learner.run_info_["optimizer_steps"]) == {"stage1", "stage2"}
    assert learner.run_info_["n_parameters"] == sum(p.numel() for p in learner.model_.parameters())


def test_parameters_added_at_their_neutral_value_keep_old_record_keys():
    """`steps_per_epoch` (and the mlp's `stage2_batch_size`) came after the published records: at the
    value those records were made with they are left out of a run's identity, set they are in it."""
    for name, key, neutral in (
        ("transformer", "steps_per_epoch", 0),
        ("mlp", "steps_per_epoch", 0),
        ("mlp", "stage2_batch_size", None),
    ):
        spec = resolve("learner", name)
        assert spec.params[key] == neutral and key not in spec.to_dict()["params"]
        assert "epochs" in spec.to_dict()["params"]
    assert resolve("learner", "mlp", {"stage2_batch_size": 32}).to_dict()["params"]["stage2_batch_size"] == 32
    with pytest.raises(ImlbenchError, match="steps_per_epoch"):
        resolve("learner", "mlp", {"steps_per_epoch": -1})


def test_mlp_takes_a_device_like_the_others():
    for cls in (MLP, ConvNet, Transformer):
        assert cls.param_defaults()["device"] == "auto"
    assert resolve("learner", "mlp").params["device"] == "auto"
    with pytest.raises(ImlbenchError, match="device"):
        resolve("learner", "mlp", {"device": "no-such-device"})


# -- the diagnostics interface ---------------------------------------------------------------


@pytest.mark.parametrize("name", LEARNERS)
def test_example_loss_has_one_value_per_document_and_averages_to_the_training_loss(tasks, fitted, name):
    learner = fitted[name]
    batch = tuple(t[:24] for t in learner.tensors(_encode(tasks, name, "stage1")))
    per_example = learner.example_loss(batch)
    assert per_example.shape == (24,) and (per_example > 0).all()
    if name == "transformer":
        # the training loss averages over loss positions (definitions carry two, questions one)
        positions = batch[2].sum(dim=1).float()
        torch.testing.assert_close((per_example * positions).sum() / positions.sum(), learner.batch_loss(batch))
    else:
        torch.testing.assert_close(per_example.mean(), learner.batch_loss(batch))


@pytest.mark.parametrize("kind", [DEFINITION, QUESTION])
def test_transformer_example_loss_mean_is_the_training_loss_on_uniform_batches(tasks, fitted, kind):
    learner, (_, data) = fitted["transformer"], tasks["transformer"]
    batch = learner.tensors(_encode(tasks, "transformer", "stage1", data.stage1.select(data.stage1.kind == kind)))
    torch.testing.assert_close(learner.example_loss(batch).mean(), learner.batch_loss(batch))


@pytest.mark.filterwarnings("ignore:There is a performance drop")  # vmap of attention falls back to a loop
@pytest.mark.parametrize("name", LEARNERS)
def test_per_example_gradients_by_vmap_equal_a_loop(tasks, fitted, name):
    learner = fitted[name]
    batch = tuple(t[:4] for t in learner.tensors(_encode(tasks, name, "stage1")))
    params = {k: v.detach() for k, v in learner.model_.named_parameters()}

    def loss(p, *example):
        return learner.example_loss(tuple(t.unsqueeze(0) for t in example), p)[0]

    vmapped = vmap(grad(loss), in_dims=(None, *[0] * len(batch)))(params, *batch)
    for i in range(4):
        learner.model_.zero_grad()
        learner.example_loss(tuple(t[i : i + 1] for t in batch))[0].backward()
        for k, p in learner.model_.named_parameters():
            torch.testing.assert_close(vmapped[k][i], p.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", LEARNERS)
def test_hidden_states_shapes_and_they_are_what_predict_reads(tasks, fitted, name):
    learner, queries = fitted[name], _queries(tasks, name)
    states = learner.hidden_states(queries)
    n = len(tasks[name][1].test)
    assert all(isinstance(s, np.ndarray) and s.ndim == 2 and len(s) == n for s in states)
    model = learner.model_
    if name == "transformer":
        assert [s.shape[1] for s in states] == [16] * 3  # embeddings + 2 blocks
        logits = model.lm_head(model.ln_f(torch.from_numpy(states[-1])))
        np.testing.assert_array_equal(logits.argmax(dim=1).numpy(), learner.predict(queries))
    else:
        # mlp: 8-wide embeddings of every field, then hidden; convnet: 8x32 strips pooled twice, then hidden
        widths = [8 * queries.X.shape[1], 16] if name == "mlp" else [4 * 4 * 16, 8 * 2 * 8, 16]
        assert [s.shape[1] for s in states] == widths
        logits = model.head[2](torch.from_numpy(states[-1]))
        np.testing.assert_array_equal(learner.label_space_[logits.argmax(dim=1).numpy()], learner.predict(queries))


@pytest.mark.parametrize("name", list(LEARNERS))
def test_predictions_and_scores_share_one_forward_pass_per_state_of_the_model(tasks, name, monkeypatch):
    """The window asks for predictions and then answer scores at every checkpoint: both read one
    forward pass, equal to a fresh one, and a training step (or other queries) computes anew."""
    learner = _fit(tasks, name)
    queries, other = _queries(tasks, name), _encode(tasks, name, "stage2")
    candidates = tasks[name][1].label_space
    fresh_predictions, fresh_scores = learner.predict(queries), learner.predict_scores(queries, candidates)
    learner.logits_cache_ = (None, None)
    calls = []
    logits = learner.logits
    monkeypatch.setattr(learner, "logits", lambda q: calls.append(q) or logits(q))
    np.testing.assert_array_equal(learner.predict(queries), fresh_predictions)
    np.testing.assert_array_equal(learner.predict_scores(queries, candidates), fresh_scores)
    assert len(calls) == 1
    learner.predict(other)
    learner.predict(queries)
    assert len(calls) == 3  # other queries replace the cached pass
    next(learner.continue_fit(_encode(tasks, name, "stage2")))
    learner.predict_scores(queries, candidates)
    assert len(calls) == 4  # a training step invalidates it
    assert not np.array_equal(learner.predict_scores(queries, candidates), fresh_scores)
