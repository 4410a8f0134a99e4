#!/usr/bin/env bash
# Evaluate a checkpoint on one GPU by the published protocol (sliding window, tile 832, stride 555,
# single scale, no flip), as the MindSpore port's script does; results in ./eval_dual_seg_r101_832.
# Without a CUDA GPU it warns and runs on the CPU (slow: minutes per image for R101).
# Extra `dgcnet eval` flags can be passed in DGCNET_EVAL_ARGS, e.g. "--save-pred labelids --amp bf16".
set -euo pipefail

if [ $# -ne 3 ]; then
    echo "usage: bash scripts/run_standalone_gpu_eval.sh DATA_DIR DATA_LIST RESTORE_FROM" >&2
    echo "example: bash scripts/run_standalone_gpu_eval.sh /data/cityscapes /data/cityscapes/val.txt dgcnet_r101.safetensors" >&2
    exit 2
fi
DATA_DIR=$1
DATA_LIST=$2
RESTORE_FROM=$3
PYTHON=${PYTHON:-python}

if "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    DEVICE=cuda
else
    echo "warning: no CUDA GPU found, evaluating on the CPU (this is slow)" >&2
    DEVICE=cpu
fi

# DGCNET_EVAL_ARGS is split into words on purpose.
# shellcheck disable=SC2086
"$PYTHON" -m dgcnet eval \
    --data-dir "$DATA_DIR" \
    --data-list "$DATA_LIST" \
    --restore-from "$RESTORE_FROM" \
    --output-dir ./eval_dual_seg_r101_832 \
    --device "$DEVICE" \
    ${DGCNET_EVAL_ARGS:-}
