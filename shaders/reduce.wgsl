// Sums over axes and their broadcasts back. A tensor is viewed as [outer, r, inner].
// Sums run in a fixed order (no atomics), so results are bit-exact run to run.

struct Params {
    outer: u32,
    r: u32,
    inner: u32,
    alpha: f32,   // scale applied to the result (1 for sum, 1/count for mean)
};

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;
var<workgroup> partial: array<f32, 64>;

// out[o, i] = alpha * sum_r x[o, r, i]; one invocation per output element.
@compute @workgroup_size(256)
fn sum_mid(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 256u;
    if (idx >= p.outer * p.inner) { return; }
    let o = idx / p.inner;
    let i = idx % p.inner;
    var acc = 0.0;
    var k = o * p.r * p.inner + i;
    for (var j = 0u; j < p.r; j++) {
        acc += x[k];
        k += p.inner;
    }
    out[idx] = p.alpha * acc;
}

// out[c] = alpha * sum_{o, i} x[o, c, i]; one workgroup per c (here r is the kept axis).
@compute @workgroup_size(64)
fn sum_keep_mid(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = wid.x;
    let count = p.outer * p.inner;
    var acc = 0.0;
    for (var j = lid; j < count; j += WG) {
        let o = j / p.inner;
        let i = j % p.inner;
        acc += x[(o * p.r + c) * p.inner + i];
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) { partial[lid] += partial[lid + s]; }
        workgroupBarrier();
    }
    if (lid == 0u) { out[c] = p.alpha * partial[0]; }
}

// out[o, r, i] = alpha * x[o, i]   (backward of sum_mid)
@compute @workgroup_size(256)
fn expand_mid(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 256u;
    if (idx >= p.outer * p.r * p.inner) { return; }
    let i = idx % p.inner;
    let o = idx / (p.r * p.inner);
    out[idx] = p.alpha * x[o * p.inner + i];
}

// out[o, c, i] = alpha * x[c]   (backward of sum_keep_mid)
@compute @workgroup_size(256)
fn expand_keep_mid(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 256u;
    if (idx >= p.outer * p.r * p.inner) { return; }
    out[idx] = p.alpha * x[(idx / p.inner) % p.r];
}
