#!/usr/bin/env bash
# 8-process data-parallel training (torchrun, one process per GPU, synchronised BN) with
# the recipe of the MindSpore port's script (crop 832, batch 1 per process, lr 0.01, 60000 steps,
# OHEM 0.7 / 100000), through `dgcnet train`. For several machines call torchrun directly (docs/training.md).
#   bash scripts/run_distributed_gpu_train8p.sh DATA_DIR DATA_LIST RESTORE_FROM [more dgcnet train args]
# RESTORE_FROM: ImageNet backbone or weights file; "none" starts from random weights.
# Writes ./dgc_832_8p (checkpoints, config.yaml, metrics.jsonl) and ./train_8p.log, as the port
# does, but runs in the foreground (append `&` yourself to detach). Running it again continues
# from the latest checkpoint. Without a GPU it falls back to the CPU with a warning.
set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: bash $0 DATA_DIR DATA_LIST RESTORE_FROM [dgcnet train args...]" >&2
    exit 2
fi
DATA_DIR=$1
DATA_LIST=$2
RESTORE_FROM=$3
shift 3
PYTHON=${PYTHON:-python}
SAVE_DIR=./dgc_832_8p
LOG=train_8p.log

: > "$LOG"
DEVICE=cuda
if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "warning: no GPU found, training 8 CPU processes with the gloo backend (very slow at 832x832)" | tee -a "$LOG" >&2
    DEVICE=cpu
fi
RESTORE=()
if [ "$RESTORE_FROM" != "none" ]; then
    RESTORE=(--restore_from "$RESTORE_FROM")
fi

mkdir -p "$SAVE_DIR"
echo "start training, log in $LOG"
"$PYTHON" -m torch.distributed.run --nproc_per_node=8 -m dgcnet train \
    --data_dir "$DATA_DIR" \
    --data_list "$DATA_LIST" \
    "${RESTORE[@]}" \
    --input_size 832 \
    --batch_size 1 \
    --learning_rate 0.01 \
    --num_steps 60000 \
    --run_distribute 1 \
    --save_dir "$SAVE_DIR" \
    --ohem_thres 0.7 \
    --ohem_keep 100000 \
    --device "$DEVICE" \
    --resume auto \
    "$@" 2>&1 | tee -a "$LOG"
