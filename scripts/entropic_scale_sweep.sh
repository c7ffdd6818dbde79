#!/usr/bin/env bash
# The paper's Fig. 2 at small scale: IsoMax with entropic scale E_s = 1, 3, 10, MNIST in,
# Fashion-MNIST out, mean ± std over seeds; prints a table and writes OUT/sweep.json and
# the plot OUT/entropic_scale.png.
# Usage: scripts/entropic_scale_sweep.sh [DATA_DIR] [OUT_DIR] [EPOCHS] [TRAIN_LIMIT] [SEEDS]
#   DATA_DIR     holds mnist/ and fashion-mnist/ IDX files (default: the subsets in assets/)
#   OUT_DIR      default runs/es-sweep;  EPOCHS default 2;  TRAIN_LIMIT default: all
#   SEEDS        default 1,2,3
set -euo pipefail
data="${1:-assets}"
out="${2:-runs/es-sweep}"
epochs="${3:-2}"
limit="${4:-}"
seeds="${5:-1,2,3}"
limit_args=()
[ -n "$limit" ] && limit_args=(--limit "$limit")
cargo run --release --quiet --example entropic_scale_sweep -- \
    --train "idx:$data/mnist/train-images-idx3-ubyte.gz" \
    --test "idx:$data/mnist/t10k-images-idx3-ubyte.gz" \
    --ood "idx:$data/fashion-mnist/t10k-images-idx3-ubyte.gz" \
    --out "$out" --epochs "$epochs" --seeds "$seeds" --scales 1,3,10 "${limit_args[@]}"
