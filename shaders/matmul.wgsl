// C[M, N] = op(A) · op(B), op = identity or transpose (TRANS_A / TRANS_B override constants).
//
// Each invocation owns TM rows × TN columns of C; its columns are strided by the workgroup
// width WX so that neighbouring invocations (SIMD lanes on a CPU adapter) read neighbouring
// elements of B, while the TM values of A they read are the same for the whole workgroup.
// No workgroup memory and no barriers: both are very slow on llvmpipe. Tile shape is
// chosen per adapter through the override constants.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    alpha: f32,  // C = alpha * A·B (+ beta * C when ACCUMULATE)
    beta: f32,
};

override WX: u32 = 64u;
override TRANS_A: bool = false;
override TRANS_B: bool = false;
override ACCUMULATE: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

fn load_a(m: u32, k: u32) -> f32 {
    if (TRANS_A) { return a[k * p.m + m]; }
    return a[m * p.k + k];
}

fn load_b(k: u32, n: u32) -> f32 {
    if (TRANS_B) { return b[n * p.k + k]; }
    return b[k * p.n + n];
}

// The entry point is generated in Rust (src/ops/matmul.rs) with the TM × TN tile fully
// unrolled into scalar registers: function-local arrays indexed in loops end up in memory
// on llvmpipe, which made the first version of this kernel ten times slower.

fn store(m: u32, n: u32, v: f32) {
    let o = m * p.n + n;
    if (ACCUMULATE) {
        c[o] = p.alpha * v + p.beta * c[o];
    } else {
        c[o] = p.alpha * v;
    }
}
