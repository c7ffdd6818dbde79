#!/usr/bin/env bash
# The paper's Table 2 protocol, for a machine with a GPU and the data: DenseNet-BC-100 and
# ResNet-34, SoftMax vs IsoMax, 300 epochs, batch 64, SGD-Nesterov lr 0.1 ×0.1 at epochs
# 150/200/250, weight decay 1e-4, random crop + flip, E_s = 10, trained on the whole training
# set (--holdout 0); in-distribution CIFAR-10, CIFAR-100 and SVHN, out-of-distribution the
# other two and TinyImageNet / LSUN (resized 32×32 image folders). Rows whose training data
# are missing are skipped by name, and so are missing OOD sets.
#
# Usage: scripts/paper_table2.sh DATA_DIR [OUT_DIR] [SEEDS]
#   DATA_DIR/cifar10/   data_batch_{1..5}.bin, test_batch.bin
#   DATA_DIR/cifar100/  train.bin, test.bin
#   DATA_DIR/svhn/      train_32x32.mat, test_32x32.mat
#   DATA_DIR/TinyImagenet_resize/, DATA_DIR/LSUN_resize/   folders of images
#   OUT_DIR default runs/paper-table2; SEEDS default 1 (e.g. 1,2,3,4,5: mean ± std)
# Environment: EPOCHS (default 300), MODELS (default "densenet100 resnet34"),
#   LOSSES (default "softmax isomax"), ISOMAX (the binary; default target/release/isomax),
#   DRY_RUN=1 (print the commands only). A finished run leaves OUT/ROW/seed-N/done; an
#   interrupted one is resumed from its checkpoint.
set -euo pipefail
if [ $# -lt 1 ]; then
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
data="$1"
out="${2:-runs/paper-table2}"
seeds="${3:-1}"
epochs="${EPOCHS:-300}"
models="${MODELS:-densenet100 resnet34}"
losses="${LOSSES:-softmax isomax}"
bin="${ISOMAX:-target/release/isomax}"
[ -x "$bin" ] || [ -n "${DRY_RUN:-}" ] || cargo build --release --quiet

# name -> training spec, test spec (empty when the files are missing)
train_spec() {
    case "$1" in
        cifar10) [ -f "$data/cifar10/data_batch_1.bin" ] && echo "cifar10:$data/cifar10" ;;
        cifar100) [ -f "$data/cifar100/train.bin" ] && echo "cifar100:$data/cifar100/train.bin" ;;
        svhn) [ -f "$data/svhn/train_32x32.mat" ] && echo "svhn:$data/svhn/train_32x32.mat" ;;
    esac
    return 0
}
test_spec() {
    case "$1" in
        cifar10) [ -f "$data/cifar10/test_batch.bin" ] && echo "cifar10:$data/cifar10/test_batch.bin" ;;
        cifar100) [ -f "$data/cifar100/test.bin" ] && echo "cifar100:$data/cifar100/test.bin" ;;
        svhn) [ -f "$data/svhn/test_32x32.mat" ] && echo "svhn:$data/svhn/test_32x32.mat" ;;
        TinyImagenet_resize | LSUN_resize) [ -d "$data/$1" ] && echo "folder:$data/$1" ;;
    esac
    return 0
}

# DRY_RUN=1 prints the commands instead of running them.
run() {
    if [ -n "${DRY_RUN:-}" ]; then echo "$*"; else "$@"; fi
}

[ -n "${DRY_RUN:-}" ] || mkdir -p "$out"
for inset in cifar10 cifar100 svhn; do
    tr="$(train_spec "$inset")"
    te="$(test_spec "$inset")"
    if [ -z "$tr" ] || [ -z "$te" ]; then
        echo "skipping $inset in-distribution rows: no training or test data under $data/$inset" >&2
        continue
    fi
    oods=()
    for o in cifar10 cifar100 svhn TinyImagenet_resize LSUN_resize; do
        [ "$o" = "$inset" ] && continue
        s="$(test_spec "$o")"
        if [ -n "$s" ]; then oods+=("$s"); else echo "$inset: skipping OOD set $o (not found under $data)" >&2; fi
    done
    if [ ${#oods[@]} -eq 0 ]; then
        echo "skipping $inset rows: no OOD set found" >&2
        continue
    fi
    for model in $models; do
        for loss in $losses; do
            dir="$out/$inset-$model-$loss"
            for seed in ${seeds//,/ }; do
                sdir="$dir/seed-$seed"
                [ -f "$sdir/done" ] && continue
                resume=()
                [ -f "$sdir/checkpoint.safetensors" ] && resume=(--resume)
                run "$bin" train --model "$model" --loss "$loss" --epochs "$epochs" --batch-size 64 \
                    --lr 0.1 --holdout 0 --train "$tr" --test "$te" --seed "$seed" --out "$sdir" \
                    "${resume[@]}"
                run touch "$sdir/done"
            done
            cks=()
            for seed in ${seeds//,/ }; do cks+=("$dir/seed-$seed/checkpoint.safetensors"); done
            run "$bin" eval --checkpoint "${cks[@]}" --test "$te" --ood "${oods[@]}" \
                --json "$dir/eval.json"
        done
    done
done
