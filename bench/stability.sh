#!/bin/bash
# How often a good kernel PASSes: the failover scenario N times back to back on the minimal
# test kernel and on the default kernel, then M times on the minimal kernel while a second
# VM keeps the same cores busy (a matrix run or a busy CI machine makes that load, and a
# timing-dependent check shows there first). Prints each distribution; artifacts stay in
# the output directory for any run that did not PASS.
# Usage: bench/stability.sh [MINIMAL_RUNS [DEFAULT_RUNS [LOADED_RUNS]]]
set -euo pipefail
cd "$(dirname "$0")/.."
minimal_runs=${1:-50} default_runs=${2:-30} loaded_runs=${3:-20}
mpio=.venv/bin/rapido-mpio
out=${STABILITY_OUT:-/tmp/rapido-mpio-stability-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
tree=$(.venv/bin/python -c 'import sys; sys.path.insert(0, "."); from tests.kernel_tree import ensure; t = ensure(); print(t.src, t.build)')
read -r src build <<<"$tree"
minimal=(--kernel-src "$src" --kernel-build "$build")
# every run that did not PASS, then the distribution
runs() { "$@" | grep -v '^run [0-9/]*: PASS (' || true; }

echo "== minimal kernel, $minimal_runs runs"
runs $mpio run "${minimal[@]}" --output-dir "$out/minimal" --repeat "$minimal_runs"
echo "== default kernel, $default_runs runs"
runs $mpio run --output-dir "$out/default" --repeat "$default_runs"

echo "== minimal kernel, $loaded_runs runs, a second VM busy beside it"
$mpio cut --output-dir "$out/load" 2>/dev/null
$mpio boot --output-dir "$out/load" --repeat 1000 >/dev/null 2>&1 &
load=$!
trap 'kill -TERM $load 2>/dev/null; wait $load 2>/dev/null || true' EXIT
runs $mpio run "${minimal[@]}" --output-dir "$out/loaded" --repeat "$loaded_runs"
echo "artifacts: $out"
