#!/usr/bin/env bash
# 8-process data-parallel training (torchrun, one process per GPU, synchronised BN) with the recipe of the MindSpore
# port's script, writing ./dgc_832_8p and ./train_8p.log as the port does (see train_recipe.sh).
#   bash scripts/run_distributed_gpu_train8p.sh DATA_DIR DATA_LIST RESTORE_FROM [more dgcnet train args]
SCRIPT_NAME=$0 exec bash "$(dirname "$0")/train_recipe.sh" 8 "$@"
