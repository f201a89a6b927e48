"""Transformer training throughput: a baseline for later speed work.

Run: `pytest benchmarks/bench_transformer.py --benchmark-columns=mean,stddev,rounds -s`

Measures stage-1 training of the default `transformer` spec on default `synthetic-defs` data in
tokens per second (input positions per second), and in the same run the machine's float32 matmul
throughput at the same thread count, so the printed fraction says how close training gets to what
the hardware does on a large, ideal matmul. Sequences are 3 tokens long, so the model spends its
time in small matmuls and per-step overhead; a low fraction is expected, not a measurement error.
Its target is "transformer/matmul" in benchmarks/targets.py.
"""

from __future__ import annotations

import time

import pytest
import torch
from targets import check_target

from imlbench.core.specs import resolve
from imlbench.learners.transformer import n_parameters
from imlbench.views.base import encode

MATMUL_N = 1024


def _threads() -> int:
    return int(resolve("learner", "transformer").params["n_threads"])


def _matmul_flops_per_second(threads: int, seconds: float = 2.0) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(MATMUL_N, MATMUL_N), torch.randn(MATMUL_N, MATMUL_N)
    torch.matmul(a, b)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.matmul(a, b)
        count += 1
    return 2 * MATMUL_N**3 * count / (time.perf_counter() - start)


def test_matmul_throughput(benchmark):
    threads = _threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(MATMUL_N, MATMUL_N), torch.randn(MATMUL_N, MATMUL_N)
    benchmark.pedantic(torch.matmul, args=(a, b), rounds=20, iterations=1, warmup_rounds=2)
    flops = 2 * MATMUL_N**3 / benchmark.stats.stats.mean
    benchmark.extra_info.update(threads=threads, gflops=flops / 1e9)
    print(f"\nfloat32 matmul {MATMUL_N}x{MATMUL_N}, {threads} thread(s): {flops / 1e9:.1f} GFLOP/s")


def test_stage1_training_throughput(benchmark):
    spec = resolve("learner", "transformer", {"device": "cpu"})
    data = resolve("task", "synthetic-defs").build().generate(0)
    tokens = encode("tokens", data, data.stage1)
    learner = spec.build()
    fit = learner.fit(tokens)
    next(fit)  # builds the model and runs one warm-up epoch

    benchmark.pedantic(lambda: next(fit), rounds=3, iterations=1, warmup_rounds=0)
    fit.close()
    seconds = benchmark.stats.stats.mean
    n, length = tokens.tokens.shape
    positions = n * (length - 1)  # input positions per epoch (the model reads tokens[:, :-1])
    loss_positions = int(tokens.loss_mask[:, 1:].sum())

    d, layers, vocab = learner.d_model, learner.n_layers, tokens.vocab_size
    # Matmul FLOPs of forward + backward (x3): 12 d^2 per layer per position (qkv, proj, 4x MLP),
    # the tied output layer only where there is loss (the learner projects only those positions).
    flops = 6 * (12 * d * d * layers * positions + d * vocab * loss_positions)
    achieved = flops / seconds
    matmul = _matmul_flops_per_second(learner.n_threads)  # right after training: under the same load
    info = {
        "parameters": n_parameters(learner.model_),
        "threads": learner.n_threads,
        "sequences_per_epoch": n,
        "tokens_per_second": positions / seconds,
        "model_gflops": achieved / 1e9,
        "matmul_gflops": matmul / 1e9,
        "fraction_of_matmul": achieved / matmul,
    }
    benchmark.extra_info.update(info)
    print(
        f"\ntransformer stage 1: {info['parameters']:,} parameters (d_model {d}, {layers} layers, vocab {vocab}), "
        f"{n} sequences of {length} tokens per epoch, {seconds:.2f} s/epoch, "
        f"{info['tokens_per_second']:,.0f} tokens/s, {info['model_gflops']:.1f} GFLOP/s = "
        f"{100 * info['fraction_of_matmul']:.0f}% of the {info['matmul_gflops']:.1f} GFLOP/s float32 matmul"
    )
    check_target(benchmark, "transformer/matmul", info["fraction_of_matmul"])


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, "-s"]))
