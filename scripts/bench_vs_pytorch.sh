#!/usr/bin/env bash
# isomax vs PyTorch on the CPU, the same models, batch, head and input shapes, alternating
# in one run: training step (forward, loss, backward, SGD-Nesterov) and inference.
#
#   scripts/bench_vs_pytorch.sh                 # resnet-tiny, densenet100, resnet34
#   MODELS="resnet-tiny" ROUNDS=3 scripts/bench_vs_pytorch.sh
#
# Settings (environment): MODELS, HEAD (isomax), BATCH (64, resnet-tiny) and BIG_BATCH (64,
# the paper's models), INFER_BATCH (256) and BIG_INFER_BATCH (64), REPS (timed steps per
# measurement: 3, and BIG_REPS 1), ROUNDS (3: isomax then PyTorch, three times), THREADS
# (PyTorch's intra-op threads, 2). isomax runs on whatever adapter wgpu picks (WGPU_BACKEND
# to choose); PyTorch's models are scripts/torch_reference.py's. Without PyTorch only the
# isomax figures are printed. Each line is the JSON of one measurement, then a table.
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS=${MODELS:-"resnet-tiny densenet100 resnet34"}
HEAD=${HEAD:-isomax}
BATCH=${BATCH:-64}
BIG_BATCH=${BIG_BATCH:-64}
INFER_BATCH=${INFER_BATCH:-256}
BIG_INFER_BATCH=${BIG_INFER_BATCH:-64}
REPS=${REPS:-3}
BIG_REPS=${BIG_REPS:-1}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}

cargo build --release --example bench_step >&2
BIN=target/release/examples/bench_step
HAVE_TORCH=1
python3 -c "import torch" 2>/dev/null || { HAVE_TORCH=0; echo "PyTorch not importable: isomax figures only" >&2; }
if [ "$HAVE_TORCH" = 1 ]; then
    python3 -c "import torch; print('PyTorch', torch.__version__, 'threads', $THREADS)" >&2
fi
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT

for round in $(seq 1 "$ROUNDS"); do
    for m in $MODELS; do
        case "$m" in
            resnet-tiny|densenet-tiny) b=$BATCH; ib=$INFER_BATCH; r=$REPS ;;
            *) b=$BIG_BATCH; ib=$BIG_INFER_BATCH; r=$BIG_REPS ;;
        esac
        line=$("$BIN" "$m" "$HEAD" "$b" "$ib" "$r")
        echo "$line" | tee -a "$LOG"
        if [ "$HAVE_TORCH" = 1 ]; then
            line=$(OMP_NUM_THREADS=$THREADS python3 scripts/torch_reference.py bench --model "$m" \
                --head "$HEAD" --batch "$b" --infer-batch "$ib" --steps "$r" --threads "$THREADS")
            echo "$line" | sed 's/^{/{"engine": "pytorch", /' | tee -a "$LOG"
        fi
    done
done

python3 - "$LOG" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
models = []
for r in rows:
    if r["model"] not in models:
        models.append(r["model"])
def fig(engine, model, key):
    v = [r[key] for r in rows if r["engine"] == engine and r["model"] == model and key in r]
    return v
print()
print("images/s per measurement (isomax | PyTorch-CPU), ratio isomax/PyTorch of the medians")
for m in models:
    for key, label in (("train_img_s", "training step"), ("infer_img_s", "inference")):
        a, b = fig("isomax", m, key), fig("pytorch", m, key)
        if not a:
            continue
        batch = [r for r in rows if r["model"] == m][0]["batch" if key == "train_img_s" else "infer_batch"]
        med = lambda v: sorted(v)[len(v) // 2]
        line = f"{m:<14} {label:<14} batch {batch:<4} isomax " + " ".join(f"{v:7.1f}" for v in a)
        if b:
            line += "  | PyTorch " + " ".join(f"{v:7.1f}" for v in b)
            line += f"  | ratio {med(a) / med(b):.3f}"
        print(line)
EOF
