#!/usr/bin/env bash
# ImageNet deep-stem backbone (.pth) -> SAVE_DIR/dgcnet_deep.ckpt for the MindSpore port,
# with the "net." prefix its pth2ckpt writes. The reverse:
#   dgcnet convert SAVE_DIR/dgcnet_deep.ckpt backbone.pth --to pth --arch dgcnet_r101
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: bash scripts/run_pth2ckpt.sh PTH_PATH SAVE_DIR" >&2
    exit 2
fi
PTH_PATH=$1
SAVE_DIR=$2

mkdir -p "$SAVE_DIR"
"${PYTHON:-python}" -m dgcnet convert "$PTH_PATH" "$SAVE_DIR/dgcnet_deep.ckpt" --to mindspore --prefix net.
