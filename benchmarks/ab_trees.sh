#!/usr/bin/env bash
# Before/after cost of a change: bench_features and the listen latency benchmark on an older
# commit and on the working tree, interleaved (before, after, before, after) so both see the same
# machine load. The older tree is a git worktree beside this checkout (so ../shared/data resolves)
# run with PYTHONPATH pointing at it, in this checkout's .venv.
#
#   bash benchmarks/ab_trees.sh 49212a1 [rounds]      # logs in /tmp/ab-*.log, key lines printed
set -euo pipefail
cd "$(dirname "$0")/.."
here=$PWD
before=${1:?usage: ab_trees.sh COMMIT [ROUNDS]}
rounds=${2:-2}
tree=$(dirname "$here")/ab-before
[[ -d $tree ]] || git worktree add -q "$tree" "$before"
py=$here/.venv/bin/python
# the live benchmark was one script (bench_live.py) before issue 11, two after it
live_before=(benchmarks/bench_live.py --parts listen)
[[ -f $tree/benchmarks/bench_latency.py ]] && live_before=(benchmarks/bench_latency.py)
for r in $(seq "$rounds"); do
  echo "round $r before features, load $(cut -d' ' -f1-3 /proc/loadavg)"
  (cd "$tree" && PYTHONPATH=$tree $py benchmarks/bench_features.py 2>/dev/null) >/tmp/ab-feat-before-$r.log
  echo "round $r after features, load $(cut -d' ' -f1-3 /proc/loadavg)"
  $py benchmarks/bench_features.py 2>/dev/null >/tmp/ab-feat-after-$r.log
  echo "round $r before live, load $(cut -d' ' -f1-3 /proc/loadavg)"
  (cd "$tree" && PYTHONPATH=$tree $py "${live_before[@]}" 2>/dev/null) >/tmp/ab-live-before-$r.log
  echo "round $r after live, load $(cut -d' ' -f1-3 /proc/loadavg)"
  $py benchmarks/bench_latency.py 2>/dev/null >/tmp/ab-live-after-$r.log
done
for f in /tmp/ab-feat-*.log; do
  echo "== $f"; grep -E "^total|whole run|extract_offline|step lag" "$f"
done
for f in /tmp/ab-live-*.log; do
  echo "== $f"; grep -E "all steps|embedding steps|other steps|CPU per step of listen" "$f"
done
