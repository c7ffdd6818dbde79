#!/usr/bin/env bash
# One script for a real GPU: runs the prebuilt test binaries, the criterion benches (kernels,
# isomax, train_step with the paper's models) and the same resnet-tiny and DenseNet-BC-100
# training steps in isomax and, when importable, in PyTorch on the same GPU; writes one JSON.
#
# On a machine with Rust (it need not have a GPU), build everything once:
#     scripts/gpu_check.sh --build
# which runs `cargo test --release --no-run`, `cargo bench --no-run` and builds the `isomax`
# binary and the `bench_step` example, and lists the executables in target/gpu-check/manifest.
# Then, on the GPU machine, from the same checkout (copied with target/, tests/fixtures and
# assets/ at the SAME absolute path: the tests find their fixtures through the path they were
# built in):
#     scripts/gpu_check.sh [OUT.json]        # default gpu-check.json
# Settings: WGPU_BACKEND (vulkan), ISOMAX_ADAPTER (part of the adapter name), SKIP_BENCHES=1,
# TORCH_DEVICE (cuda), STEP_BATCH (64), STEP_REPS (10).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DIR=target/gpu-check
MANIFEST=$DIR/manifest

if [ "${1:-}" = "--build" ]; then
    set -e
    mkdir -p "$DIR"
    : > "$MANIFEST"
    cargo build --release --bin isomax --example bench_step
    echo "tool isomax $ROOT/target/release/isomax" >> "$MANIFEST"
    echo "tool bench_step $ROOT/target/release/examples/bench_step" >> "$MANIFEST"
    list() { # kind, then cargo arguments: every executable the build produced
        cargo "${@:2}" --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(sys.argv[1], m["target"]["name"], m["executable"])
' "$1" >> "$MANIFEST"
    }
    cargo test --release --no-run
    list test test --release --no-run
    cargo bench --no-run
    list bench bench --no-run
    echo "built; executables listed in $MANIFEST:"
    cat "$MANIFEST"
    exit 0
fi

OUT=${1:-gpu-check.json}
[ -f "$MANIFEST" ] || { echo "no $MANIFEST: run scripts/gpu_check.sh --build first" >&2; exit 2; }
export WGPU_BACKEND=${WGPU_BACKEND:-vulkan}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
TORCH_DEVICE=${TORCH_DEVICE:-cuda}
STEP_BATCH=${STEP_BATCH:-64}
STEP_REPS=${STEP_REPS:-10}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
tool() { awk -v n="$1" '$1 == "tool" && $2 == n { print $3 }' "$MANIFEST"; }

echo "== adapter"
"$(tool isomax)" info | tee "$WORK/info.txt"

echo "== tests"
awk '$1 == "test" { print $2, $3 }' "$MANIFEST" | while read -r name exe; do
    echo "-- $name"
    start=$(date +%s.%N)
    "$exe" --test-threads 1 > "$WORK/test-$name.txt" 2>&1
    rc=$?
    end=$(date +%s.%N)
    echo "$name $rc $start $end" >> "$WORK/tests.txt"
    tail -n 3 "$WORK/test-$name.txt"
done

if [ "${SKIP_BENCHES:-0}" != 1 ]; then
    echo "== benches"
    awk '$1 == "bench" { print $2, $3 }' "$MANIFEST" | while read -r name exe; do
        echo "-- $name"
        ISOMAX_BENCH_PAPER=1 "$exe" --bench > "$WORK/bench-$name.txt" 2>&1
        echo "$name $?" >> "$WORK/benches.txt"
        grep -E "time:" "$WORK/bench-$name.txt" | head -40
    done
fi

echo "== training step: isomax"
for m in resnet-tiny densenet100; do
    "$(tool bench_step)" "$m" isomax "$STEP_BATCH" "$STEP_BATCH" "$STEP_REPS" | tee -a "$WORK/steps.jsonl"
done
if python3 -c "import torch; assert torch.cuda.is_available() or '$TORCH_DEVICE' == 'cpu'" 2>/dev/null; then
    echo "== training step: PyTorch ($TORCH_DEVICE)"
    for m in resnet-tiny densenet100; do
        python3 scripts/torch_reference.py bench --model "$m" --head isomax --batch "$STEP_BATCH" \
            --infer-batch "$STEP_BATCH" --steps "$STEP_REPS" --device "$TORCH_DEVICE" \
            | sed 's/^{/{"engine": "pytorch", /' | tee -a "$WORK/steps.jsonl"
    done
else
    echo "PyTorch with $TORCH_DEVICE not importable: isomax only"
fi

python3 - "$WORK" "$OUT" <<'EOF'
import json, os, re, sys
work, out = sys.argv[1], sys.argv[2]
def read(name):
    p = os.path.join(work, name)
    return open(p).read() if os.path.exists(p) else ""
res = {"adapter": read("info.txt").strip(), "tests": {}, "benches": {}, "steps": []}
for line in read("tests.txt").splitlines():
    name, rc, start, end = line.split()
    text = read(f"test-{name}.txt")
    m = re.findall(r"test result: \w+\. (\d+) passed; (\d+) failed", text)
    res["tests"][name] = {
        "exit_code": int(rc),
        "passed": sum(int(a) for a, _ in m),
        "failed": sum(int(b) for _, b in m),
        "seconds": round(float(end) - float(start), 2),
        "failures": re.findall(r"^---- (.*) stdout ----$", text, re.M),
    }
unit = {"ps": 1e-12, "ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}
for line in read("benches.txt").splitlines():
    name, rc = line.split()
    text = read(f"bench-{name}.txt")
    medians, last = {}, None
    for l in text.splitlines():  # "NAME time: [lo u mid u hi u]", NAME alone above when long
        m = re.match(r"^(\S.*?)?\s+time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", l)
        if m:
            bench = (m.group(1) or last or "?").strip()
            medians[bench] = float(m.group(2)) * unit.get(m.group(3), float("nan"))
        elif l and not l[0].isspace():
            last = l.strip()
    res["benches"][name] = {"exit_code": int(rc), "median_s": medians}
for line in read("steps.jsonl").splitlines():
    if line.startswith("{"):
        res["steps"].append(json.loads(line))
json.dump(res, open(out, "w"), indent=1)
failed = [n for n, t in res["tests"].items() if t["exit_code"] != 0]
print(f"wrote {out}: {len(res['tests'])} test binaries ({len(failed)} failed: {failed}), "
      f"{sum(len(b['median_s']) for b in res['benches'].values())} bench figures, {len(res['steps'])} step figures")
EOF
