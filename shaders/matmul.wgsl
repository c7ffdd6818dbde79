// C[M, N] = op(A) · op(B), op = identity or transpose.
//
// `pack_a` first writes op(A) as rows padded to a multiple of 4 along k, so the main kernel
// reads A as vec4s. In `matmul` (generated in src/ops/matmul.rs with the register tile fully
// unrolled into scalars) each invocation owns TM rows × TN columns of C; rows are uniform
// over a workgroup and columns are spread over lanes, WX apart. No workgroup memory and no
// barriers: both are very slow on llvmpipe, and on that adapter every storage load costs a
// loop over the SIMD lanes, so the tile is chosen to maximise FMAs per load.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    tiles: u32,    // ceil(k / 4): vec4s per packed row of A, and packed rows of B / 4
    trans_a: u32,
    trans_b: u32,
    nq: u32,       // ceil(n / 4): vec4s per packed row of B
};

override WX: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

// ---- pack_a: packed[m, k] = op(A)[m, k], zero past k ----
@group(0) @binding(1) var<storage, read> pk_a: array<f32>;
@group(0) @binding(2) var<storage, read_write> pk_out: array<f32>;

@compute @workgroup_size(256)
fn pack_a(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    let width = p.tiles * 4u;
    if (i >= p.m * width) { return; }
    let m = i / width;
    let k = i % width;
    var v = 0.0;
    if (k < p.k) {
        if (p.trans_a == 1u) { v = pk_a[k * p.m + m]; } else { v = pk_a[m * p.k + k]; }
    }
    pk_out[i] = v;
}

// ---- pack_b: packed[k, n] = op(B)[k, n], zero past k and n; rows of nq vec4s ----
@compute @workgroup_size(256)
fn pack_b(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    let width = p.nq * 4u;
    if (i >= p.tiles * 4u * width) { return; }
    let k = i / width;
    let n = i % width;
    var v = 0.0;
    if (k < p.k && n < p.n) {
        if (p.trans_b == 1u) { v = pk_a[n * p.k + k]; } else { v = pk_a[k * p.n + n]; }
    }
    pk_out[i] = v;
}

// ---- matmul (entry point generated in Rust): both operands packed, read as vec4s ----
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

// Columns 4q..4q+3 of row m, clipped at n.
fn store4(m: u32, q: u32, v: vec4<f32>) {
    let n = q * 4u;
    let o = m * p.n + n;
    c[o] = v.x;
    if (n + 1u < p.n) { c[o + 1u] = v.y; }
    if (n + 2u < p.n) { c[o + 2u] = v.z; }
    if (n + 3u < p.n) { c[o + 3u] = v.w; }
}
