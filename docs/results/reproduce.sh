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
# Dose-response (README, "How reliable must the tag be?"): tag_reliability between the null (0.5, run
# above as the controls suite) and the default (1.0, the default suite).
for r in 0.625 0.75 0.875; do
  run run --learner transformer --task synthetic-defs --param tag_reliability=$r --seeds 10 --jobs 2
  run run --learner convnet --task tagged-digits --param tag_reliability=$r --seeds 10 --jobs 2
done
# The language model's null control.
run run --learner hf-causal-lm --task synthetic-defs-text --param tag_reliability=0.5 --seeds 10 --jobs 2

# Elicitation searches (README, "Can any configuration show IML?"): 3 exploration seeds per trial,
# the best configuration confirmed on seeds 0-9; the tag-blind transformer is the search's control.
# A search resumes its study (docs/results/searches/NAME/study.db): delete that folder to search anew.
search() { echo "$(date +%T) imlbench search $*" >&2; imlbench search "$@" --out "$out" -q; }
search --learner rf --task synthetic-defs --pipeline one-stage --trials 20
search --learner mlp --task synthetic-defs --trials 12
search --learner gbm --task synthetic-defs --trials 8
search --learner tag-blind-transformer --task synthetic-defs --trials 20
# The control of the configuration the mlp search confirmed: the same mlp, blind to its tag.
run run --learner tag-blind --task synthetic-defs --seeds 10 --jobs 2 --param 'base_params={batch_size = 128, embedding_dim = 16, epochs = 49, hidden = 725, lr = 0.0020822265649313204, stage2_epochs = 58, stage2_lr = 0.0027136655617871694}'

imlbench leaderboard "$out"
imlbench report "$out" --out docs/report.md
imlbench show tagged-digits --out docs/tagged-digits.png
