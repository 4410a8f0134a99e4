#!/usr/bin/env bash
# One GPU check that fits a single 8-minute device call (no install, no network):
# GPU logits against CPU fp32, training images/s of dgcnet_r101 at 832x832 (bf16, channels-last,
# compile off and on, batch 1 and the largest that fits), sliding-window evaluation images/s at
# 1024x2048 projected to the 500 val images, then (if time is left) training through the engine
# with data loading; one markdown table, also in $OUT/gpu_check.md and $OUT/gpu_check.json when
# $OUT is set.
#
#   bash benchmarks/gpu_check.sh            # on the GPU machine, from the repository root
#   BUDGET_S=300 bash benchmarks/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,clocks.max.sm,power.limit --format=csv || true
# No stage starts after BUDGET_S; the outer timeout is a last resort (tables are written after every stage).
timeout 470 python3 benchmarks/gpu_check.py --device cuda --budget-s "${BUDGET_S:-400}" "$@"
status=$?
[ -n "${OUT:-}" ] && [ -f "$OUT/gpu_check.md" ] && { echo; cat "$OUT/gpu_check.md"; }
exit $status
