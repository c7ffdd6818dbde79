#!/usr/bin/env bash
# Reduced-scale reproduction on CIFAR-10 as an open-set split: the network trains on classes
# 0-5 (airplane, automobile, bird, cat, deer, dog) and the test images of classes 6-9 (frog,
# horse, ship, truck) are the out-of-distribution set. SoftMax vs IsoMax vs IsoMax+, one run
# per seed, the paper's protocol otherwise (SGD-Nesterov, lr 0.1 ×0.1 at ⌊E/2⌋/⌊2E/3⌋/⌊5E/6⌋,
# weight decay 1e-4, random crop + flip, E_s = 10), evaluated on the full test batch; every
# metric is reported as mean ± std over the seeds (runs/…/LOSS/eval.json, eval.txt).
#
# Usage: scripts/cifar10_openset.sh DATA_DIR [OUT_DIR] [EPOCHS] [TRAIN_LIMIT] [MODEL]
#   DATA_DIR     a CIFAR-10 binary-format folder (data_batch_*.bin, test_batch.bin)
#   OUT_DIR      default runs/cifar10-openset
#   EPOCHS       default 3
#   TRAIN_LIMIT  first N training images of the in-distribution classes (default: all)
#   MODEL        resnet-tiny (default) or densenet-tiny; resnet34/densenet100 need a GPU
# Environment: SEEDS (default 1,2,3), LOSSES (default "softmax isomax isomaxplus"),
#   HOLDOUT (default 500), ISOMAX (the binary; default target/release/isomax, built if absent).
set -euo pipefail
if [ $# -lt 1 ]; then
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
data="$1"
out="${2:-runs/cifar10-openset}"
epochs="${3:-3}"
limit="${4:-}"
model="${5:-resnet-tiny}"
seeds="${SEEDS:-1,2,3}"
losses="${LOSSES:-softmax isomax isomaxplus}"
holdout="${HOLDOUT:-500}"
bin="${ISOMAX:-target/release/isomax}"
[ -x "$bin" ] || cargo build --release --quiet
in_classes=0,1,2,3,4,5
out_classes=6,7,8,9
limit_args=()
[ -n "$limit" ] && limit_args=(--limit "$limit")
mkdir -p "$out"
# Seeds outside, losses inside: if the run is cut short, the losses stay comparable.
for seed in ${seeds//,/ }; do
    for loss in $losses; do
        dir="$out/$loss/seed-$seed"
        [ -f "$dir/done" ] && continue
        rm -rf "$dir"
        mkdir -p "$out/$loss"
        "$bin" train --model "$model" --loss "$loss" --epochs "$epochs" --seed "$seed" \
            --train "cifar10:$data" --classes "$in_classes" "${limit_args[@]}" \
            --holdout "$holdout" --out "$dir" 2>&1 | tee "$dir.log"
        touch "$dir/done"
    done
done
for loss in $losses; do
    cks=("$out/$loss"/seed-*/checkpoint.safetensors)
    "$bin" eval --checkpoint "${cks[@]}" \
        --test "cifar10:$data/test_batch.bin" --classes "$in_classes" \
        --ood "cifar10:$data/test_batch.bin" --ood-classes "$out_classes" \
        --json "$out/$loss/eval.json" | tee "$out/$loss/eval.txt"
done
