#!/bin/bash
# Every shipped scenario that must PASS, N times on the minimal test kernel and N times on
# the default kernel: the distribution of each, and the median seconds from QEMU start to
# the verdict (result.json timings). Negative controls are left out: they FAIL by design.
# Usage: bench/scenarios.sh [RUNS [SCENARIO...]]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
shift || true
mpio=.venv/bin/rapido-mpio
out=${SCENARIOS_OUT:-/tmp/rapido-mpio-scenarios-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
scenarios=("$@")
if [ ${#scenarios[@]} = 0 ]; then
	# a scenario without expect_fail: in its header (or its base's) is one that must PASS
	mapfile -t scenarios < <(.venv/bin/python -c '
from rapido_mpio import scenario
from rapido_mpio.config import REPO_ROOT
for name in scenario.names(REPO_ROOT / "cut"):
    if not scenario.load(REPO_ROOT / "cut", name).expect_fail:
        print(name)')
fi
tree=$(.venv/bin/python -c 'import sys; sys.path.insert(0, "."); from tests.kernel_tree import ensure; t = ensure(); print(t.src, t.build)')
read -r src build <<<"$tree"
declare -A kargs=([minimal]="--kernel-src $src --kernel-build $build" [default]="")
for kernel in minimal default; do
	# shellcheck disable=SC2086 # kargs holds several arguments
	$mpio cut ${kargs[$kernel]} --output-dir "$out/$kernel" 2>/dev/null
	for sc in "${scenarios[@]}"; do
		line=$($mpio boot --output-dir "$out/$kernel" --scenario "$sc" --repeat "$runs" 2>/dev/null | tail -1)
		median=$(.venv/bin/python - "$out/$kernel/runs" "$sc" <<'PYEOF'
import json, pathlib, statistics, sys
runs = pathlib.Path(sys.argv[1])
results = [json.loads(p.read_text()) for p in runs.glob("*/result.json")]
times = [r["timings"]["verdict"] for r in results
         if r["scenario"] == sys.argv[2] and r["timings"]["verdict"] is not None]
print(f"{statistics.median(times):.1f}s" if times else "-")
PYEOF
)
		printf '%-8s %-26s %-40s median %s\n' "$kernel" "$sc" "$line" "$median"
	done
done
echo "artifacts: $out"
