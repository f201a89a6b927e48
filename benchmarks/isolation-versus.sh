#!/usr/bin/env bash
# The per-run cost of isolation at a base commit and on this checkout, alternated three times on one
# machine: benchmarks/bench_isolation.py run on each side's code with this checkout's environment.
# Usage: bash benchmarks/isolation-versus.sh BASE   (writes docs/results/performance/isolation-*.json)
set -euo pipefail
base=${1:?usage: isolation-versus.sh BASE}
root=$(cd "$(dirname "$0")/.." && pwd)
old=$(mktemp -d)
git -C "$root" worktree add -q --detach "$old" "$base"
trap 'git -C "$root" worktree remove --force "$old"' EXIT
out="$root/docs/results/performance"
mkdir -p "$out"
for round in 1 2 3; do
  for side in base now; do
    dir=$([ $side = base ] && echo "$old" || echo "$root")
    (cd "$dir" && PYTHONPATH="$dir" "$root/.venv/bin/python" -m pytest -q -p no:cacheprovider \
      "$root/benchmarks/bench_isolation.py" --rootdir "$dir" \
      --benchmark-json="$out/isolation-$side-$round.json" >/dev/null)
  done
done
"$root/.venv/bin/python" - "$out" <<'PY'
import json, sys
from pathlib import Path
for path in sorted(Path(sys.argv[1]).glob("isolation-*.json")):
    for bench in json.loads(path.read_text())["benchmarks"]:
        info = {k: v for k, v in bench["extra_info"].items() if k != "targets"}
        print(path.stem, bench["name"], info)
PY
