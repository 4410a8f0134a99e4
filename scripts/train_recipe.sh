#!/usr/bin/env bash
# The body of the port-compatible training scripts: the recipe of the MindSpore port's scripts
# (crop 832, batch 1 per process, lr 0.01, 60000 steps, OHEM 0.7 / 100000) through `dgcnet train`,
# with NPROC processes (1: one process; more: torchrun, one process per GPU, synchronised BN).
#   bash scripts/train_recipe.sh NPROC DATA_DIR DATA_LIST RESTORE_FROM [more dgcnet train args]
# RESTORE_FROM: ImageNet backbone or weights file; "none" starts from random weights.
# Writes ./dgc_832_<NPROC>p (checkpoints, config.yaml, metrics.jsonl) and ./train_<NPROC>p.log, as
# the port does, but runs in the foreground (append `&` yourself to detach). Running it again
# continues from the latest checkpoint. Without a GPU it falls back to the CPU with a warning.
set -euo pipefail

if [ $# -lt 4 ]; then
    echo "usage: bash ${SCRIPT_NAME:-$0 NPROC} DATA_DIR DATA_LIST RESTORE_FROM [dgcnet train args...]" >&2
    exit 2
fi
NPROC=$1
DATA_DIR=$2
DATA_LIST=$3
RESTORE_FROM=$4
shift 4
PYTHON=${PYTHON:-python}
SAVE_DIR=./dgc_832_${NPROC}p
LOG=train_${NPROC}p.log

: > "$LOG"
DEVICE=cuda
if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    if [ "$NPROC" = 1 ]; then
        echo "warning: no GPU found, training on the CPU (very slow at 832x832)" | tee -a "$LOG" >&2
    else
        echo "warning: no GPU found, training $NPROC CPU processes with the gloo backend (very slow at 832x832)" | tee -a "$LOG" >&2
    fi
    DEVICE=cpu
fi
RESTORE=()
if [ "$RESTORE_FROM" != "none" ]; then
    RESTORE=(--restore_from "$RESTORE_FROM")
fi
LAUNCH=(-m dgcnet train)
if [ "$NPROC" != 1 ]; then
    LAUNCH=(-m torch.distributed.run "--nproc_per_node=$NPROC" -m dgcnet train --run_distribute 1)
fi

mkdir -p "$SAVE_DIR"
echo "start training, log in $LOG"
"$PYTHON" "${LAUNCH[@]}" \
    --data_dir "$DATA_DIR" \
    --data_list "$DATA_LIST" \
    "${RESTORE[@]}" \
    --input_size 832 \
    --batch_size 1 \
    --learning_rate 0.01 \
    --num_steps 60000 \
    --save_dir "$SAVE_DIR" \
    --ohem_thres 0.7 \
    --ohem_keep 100000 \
    --device "$DEVICE" \
    --resume auto \
    "$@" 2>&1 | tee -a "$LOG"
