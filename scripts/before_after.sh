#!/usr/bin/env bash
# Before/after of one change on this machine: two builds of examples/bench_step (e.g. the
# base commit's and the working tree's), alternating ROUNDS times in one run so both see the
# same load, then the medians and the ratio after/before.
#
#   scripts/before_after.sh BEFORE_BIN AFTER_BIN [MODEL HEAD BATCH INFER_BATCH REPS]
#
# Build a before binary with e.g.
#   git worktree add /tmp/base BASE && (cd /tmp/base && cargo build --release --example bench_step)
# and pass /tmp/base/target/release/examples/bench_step and target/release/examples/bench_step.
set -euo pipefail
BEFORE=$1
AFTER=$2
shift 2
if [ $# -ge 1 ]; then ARGS=("$@"); else ARGS=(resnet-tiny isomax 64 256 3); fi
ROUNDS=${ROUNDS:-3}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
for round in $(seq 1 "$ROUNDS"); do
    for which in before after; do
        bin=$BEFORE
        [ "$which" = after ] && bin=$AFTER
        line=$("$bin" "${ARGS[@]}")
        echo "$line" | sed "s/^{/{\"build\": \"$which\", /" | tee -a "$LOG"
    done
done
python3 - "$LOG" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
med = lambda v: sorted(v)[len(v) // 2]
print()
print(f"{rows[0]['model']}, {rows[0]['head']}: per round (before | after), median ratio after/before")
for key, label in (("train_img_s", "training images/s"), ("infer_img_s", "inference images/s"),
                   ("first_step_s", "first step s"), ("peak_buffer_mib", "peak MiB")):
    b = [r[key] for r in rows if r["build"] == "before" and key in r]
    a = [r[key] for r in rows if r["build"] == "after" and key in r]
    if not a or not b:
        continue
    print(f"{label:<20} " + " ".join(f"{v:8.2f}" for v in b) + "  | " +
          " ".join(f"{v:8.2f}" for v in a) + f"  | {med(a) / med(b):.3f}")
EOF
