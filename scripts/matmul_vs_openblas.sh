#!/usr/bin/env bash
# Issue 2's speed check in one run: OpenBLAS through numpy on the same cores, then the
# criterion kernel benchmarks (matmul, conv, batch norm), then OpenBLAS again.
# Usage: scripts/matmul_vs_openblas.sh [criterion filter, e.g. matmul]
set -euo pipefail
cd "$(dirname "$0")/.."
reference() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 scripts/numpy_matmul.py; }
reference
cargo bench --bench kernels -- "$@" 2>&1 | grep -E "^kernels/|time:|thrpt:"
reference
