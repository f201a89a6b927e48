#!/usr/bin/env bash
# The one command behind every number in README.md and docs/report.md:
#   bash docs/results/reproduce.sh
# Finished runs are reused (records under docs/results/records), so on a checkout with the committed
# records it trains nothing and rebuilds the leaderboard, the report and the figures; with --force
# (passed through to every run) it recomputes everything (protocol v2, 10 seeds: see README for the
# wall time on 2 CPU cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=docs/results
run() { echo "$(date +%T) imlbench $*" >&2; imlbench "$@" --out "$out" -q "${FORCE[@]}"; }
FORCE=("$@")

# The leaderboard: every learner on every task it supports, both pipelines, 10 seeds.
run run --suite default --jobs 2
# Controls that can fail: the tags predict nothing (tag_reliability = 0.5), and the transformer blind to its tag.
run run --suite controls --jobs 2
run run --learner tag-blind-transformer --task synthetic-defs --seeds 10 --jobs 2
# Language models: the tiny GPT-NeoX on natural-language synthetic-defs, beside the transformer.
run run --learner hf-causal-lm,transformer --task synthetic-defs-text --seeds 10 --jobs 2

imlbench leaderboard "$out"
imlbench report "$out" --out docs/report.md
imlbench show tagged-digits --out docs/tagged-digits.png
