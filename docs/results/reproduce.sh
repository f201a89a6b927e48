#!/usr/bin/env bash
# The one command behind every number in README.md and docs/report.md:
#   bash docs/results/reproduce.sh
# Finished runs are reused (records under docs/results/records), so on a checkout with the committed
# records it trains nothing and rebuilds the leaderboard, the report and the figures; with --force
# (passed through to every run) it recomputes everything: ~40 min on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=docs/results
run() { imlbench "$@" --out "$out" -q "${FORCE[@]}"; }
FORCE=("$@")

# The leaderboard: every learner on every task it supports, both pipelines, 5 seeds.
run run --suite default --jobs 2
# Language models: the tiny GPT-NeoX on natural-language synthetic-defs, beside the transformer.
run run --learner hf-causal-lm,transformer --task synthetic-defs-text --jobs 2
# The authors' three-stage ablation.
run run --learner transformer,mlp --task synthetic-defs --pipeline three-stage --jobs 2
run run --learner convnet --task tagged-digits --pipeline three-stage --jobs 2
# The paper's three hypotheses as diagnostics (5 seeds each).
run diagnose gradient-alignment --learner transformer,mlp --task synthetic-defs --every 5
run diagnose gradient-alignment --learner convnet --task tagged-digits --every 5
run diagnose gradient-alignment --learner mlp --task synthetic-defs --every 10 --param batch_size=16
run diagnose gradient-alignment --learner mlp --task synthetic-defs --every 10 --param batch_size=256
run diagnose tag-probe --learner transformer,mlp --task synthetic-defs
run diagnose tag-probe --learner convnet --task tagged-digits
run diagnose tag-probe --learner hf-causal-lm --task synthetic-defs-text
run diagnose in-context --learner transformer --task synthetic-defs

imlbench leaderboard "$out"
imlbench report "$out" --out docs/report.md
imlbench show tagged-digits --out docs/tagged-digits.png
