#!/bin/bash
# Wall time of the same commands on this checkout and on an earlier commit, one after the other on
# this machine (#19's ratios are measured this way against 2aa6489, the last protocol-v1 main).
#
#   bash benchmarks/versus.sh REF [main-rf] [main-transformer] [suite]   (default: all three)
#
# Each side gets a worktree and a virtual environment whose packages are this one's (the current
# interpreter's site-packages), so only imlbench differs. Appends "command,ref,seconds" rows to
# docs/results/performance/versus-REF.csv; every command writes to a fresh results folder. Run it on
# a quiet machine: anything else on the cores is measured too. Exits 1 when a command misses the
# target "versus" of benchmarks/targets.py (this checkout's seconds / REF's).
set -euo pipefail
ref=${1:?usage: versus.sh REF [main-rf] [main-transformer] [suite]}; shift
what=${*:-main-rf main-transformer suite}
root=$(git rev-parse --show-toplevel)
work=${VERSUS_DIR:-/tmp/imlbench-versus}
site=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
csv="$root/docs/results/performance/versus-$ref.csv"
mkdir -p "$work" "$(dirname "$csv")"
[ -f "$csv" ] || echo "command,ref,seconds" > "$csv"

side() {  # side NAME COMMIT: a worktree at COMMIT with its own venv; prints the venv's imlbench
    local dir="$work/$1"
    if [ ! -x "$dir-venv/bin/imlbench" ]; then
        rm -rf "$dir" "$dir-venv"
        git -C "$root" worktree add --force --detach "$dir" "$2" > /dev/null
        python -m venv "$dir-venv"
        echo "$site" > "$dir-venv/lib/python$(python -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')/site-packages/zz-shared.pth"
        "$dir-venv/bin/pip" install -q --no-deps -e "$dir"
    fi
    git -C "$dir" checkout -q --detach "$2"  # a kept worktree moves to the commit asked for (editable install)
    echo "$dir-venv/bin/imlbench"
}

timed() {  # timed LABEL REF IMLBENCH ARGS...: one command's wall seconds, appended to the CSV and printed
    local label=$1 name=$2 exe=$3; shift 3
    local out="$work/out-$name-$label"
    rm -rf "$out"
    local start=$(date +%s.%N)
    "$exe" "$@" --out "$out" -q > "$out.log" 2>&1
    local seconds=$(python -c "print(round($(date +%s.%N) - $start, 1))")
    echo "$label,$name,$seconds" | tee -a "$csv" >&2
    echo "$seconds"
}

old=$(side old "$ref")
new=$(side new "$(git -C "$root" rev-parse HEAD)")
missed=0
for item in $what; do
    case $item in
        main-rf) args=(run --learner rf --task synthetic-defs) ;;
        main-transformer) args=(run --learner transformer --task synthetic-defs) ;;
        suite) args=(run --suite default --jobs 2) ;;
        *) echo "unknown item $item (main-rf, main-transformer, suite)" >&2; exit 2 ;;
    esac
    before=$(timed "$item" "$ref" "$old" "${args[@]}")
    after=$(timed "$item" "$(git -C "$root" rev-parse --short HEAD)" "$new" "${args[@]}")
    echo "$item: $after s / $before s" >&2
    python "$root/benchmarks/targets.py" versus "$(python -c "print($after / $before)")" || missed=1
done
exit $missed
