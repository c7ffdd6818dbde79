// 2-D convolution (NCHW, weights [OC, C, KH, KW]) as three implicit GEMMs: forward,
// backward data and backward weight.
//
// The entry points are generated in Rust (src/ops/conv.rs) for each register tile of
// TM rows x TN columns, unrolled into scalars: function-local arrays indexed in loops end
// up in memory on llvmpipe. Every invocation sums in a fixed order: no atomics, no
// workgroup memory, no barriers (barriers are very slow on llvmpipe/lavapipe).
// Rows are uniform across a workgroup (workgroup_id.y), so the row operand (weights, or dY
// for backward weight) is the same for all lanes; columns are strided by WX across lanes.
// In the subgroup variants (one subgroup per workgroup, `sl` = lane) each lane loads a
// different row and subgroupBroadcast shares it: on llvmpipe every storage load is a loop
// over the SIMD lanes, so this replaces one load per lane by one per subgroup. Loops over
// the reduction are uniform too (no divergent `continue`, as subgroup operations need):
// taps outside the image are masked with `select`, never skipped per lane.

struct Params {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    oc: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    tiles: u32,   // backward_data: channel tiles (workgroup_id.y = class * tiles + tile)
    chunk: u32,   // backward_weight: (n, oh) rows per split (workgroup_id.z = split)
};

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

override WX: u32 = 64u;

// The forward kernel reads the weight as vec4s along k: on llvmpipe every storage load is
// a loop over the SIMD lanes, so one vec4 load costs far less than four scalar ones.
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
// Backward weight reads dY as vec4s along ow when OW is a multiple of 4.
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> packed: array<f32>;

// packed[r, k] = a[r, k] for k < K (= p.c), zero up to kp (= p.h); p.n rows.
// With p.w = 1 the source is a weight [R', p.n, T] (T = p.oh taps, R' = K / T) read
// transposed with its taps reversed: packed[r, (o, t)] = a[o, r, T - 1 - t] (the weight of
// the transposed convolution that gives backward data at stride 1).
@compute @workgroup_size(256)
fn pack_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n * p.h) { return; }
    let r = i / p.h;
    let k = i % p.h;
    let ok = k < p.c;
    var src = r * p.c + k;
    if (p.w == 1u) {
        let t = k % p.oh;
        src = ((k / p.oh) * p.n + r) * p.oh + (p.oh - 1u - t);
    }
    packed[i] = select(0.0, a[select(0u, src, ok)], ok);
}
