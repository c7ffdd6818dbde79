#!/usr/bin/env bash
# The README's results table: resnet-tiny trained with SoftMax and with IsoMax on MNIST
# (Fashion-MNIST as OOD) and on Fashion-MNIST (MNIST as OOD), evaluated on the full test sets.
# Usage: scripts/mnist_fashion.sh DATA_DIR [TRAIN_LIMIT=12000] [EPOCHS=2]
#   DATA_DIR holds mnist/ and fashion-mnist/ with the IDX files (train and t10k).
set -euo pipefail
if [ $# -lt 1 ]; then
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
data="$1"
limit="${2:-12000}"
epochs="${3:-2}"
bin=target/release/isomax
cargo build --release --quiet
mkdir -p runs
for pair in "mnist fashion-mnist" "fashion-mnist mnist"; do
    set -- $pair
    inset=$1 outset=$2
    for loss in softmax isomax; do
        out="runs/$inset-$loss"
        $bin train --model resnet-tiny --loss "$loss" --epochs "$epochs" --limit "$limit" \
            --lr 0.05 --holdout 1000 --force \
            --train "idx:$data/$inset/train-images-idx3-ubyte.gz" --out "$out"
        $bin eval --checkpoint "$out/checkpoint.safetensors" \
            --test "idx:$data/$inset/t10k-images-idx3-ubyte.gz" \
            --ood "idx:$data/$outset/t10k-images-idx3-ubyte.gz" --json "$out/eval.json" | tee "$out/eval.txt"
    done
done
