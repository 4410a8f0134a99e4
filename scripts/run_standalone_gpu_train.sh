#!/usr/bin/env bash
# One-process training with the recipe of the MindSpore
# port's script, writing ./dgc_832_1p and ./train_1p.log as the port does (see train_recipe.sh).
#   bash scripts/run_standalone_gpu_train.sh DATA_DIR DATA_LIST RESTORE_FROM [more dgcnet train args]
SCRIPT_NAME=$0 exec bash "$(dirname "$0")/train_recipe.sh" 1 "$@"
