// Batch norm over the first C channels of an [N, C_STRIDE, HW] tensor (C_STRIDE > C lets a
// DenseNet layer normalise a prefix of its block buffer without copying it), optionally
// fused with a ReLU. Per-channel statistics use one workgroup per channel and a fixed tree
// reduction, so results are bit-exact run to run. `stats` holds [mean | invstd]. Real GPUs
// (Tuning::Gpu) split each channel's sums over many workgroups instead (bn_gpu_* below).

struct Params {
    n: u32,
    c: u32,
    hw: u32,
    eps: f32,
    momentum: f32,
    frozen: u32,    // 1 = statistics are constants (eval mode)
    c_stride: u32,  // channels of the tensor x lives in
    relu: u32,      // 1 = output is relu(bn(x))
    splits: u32,    // bn_gpu_*: workgroups sharing one channel's sums
    chunk: u32,     // bn_gpu_*: samples per split (split s: [s·chunk, (s+1)·chunk) ∩ [0, N))
    centred: u32,   // bn_gpu_sums, bn_gpu_stats: 0 = the Σ x pass, 1 = the Σ (x − mean)² pass
    c_off: u32,     // statistics kernels: first channel of x to reduce (0 but in cache mode)
    cache: u32,     // statistics kernels: 1 = write [mean | biased var] of channels c_off..c_off+c
                    // into a cache laid out [mean (C_STRIDE) | var (C_STRIDE)], no running update
    accumulate: u32, // bn_backward_apply: 1 = dx += (add into the caller's gradient buffer)
};

@group(0) @binding(0) var<uniform> p: Params;

const WG: u32 = 64u;
var<workgroup> red_a: array<f32, 64>;
var<workgroup> red_b: array<f32, 64>;

// Start of plane (n, c) in x (channel stride C_STRIDE) and in the dense [N, C, HW] layout.
// Kernels walk planes with nested loops or a 3-D dispatch (x: position, y: channel,
// z: sample) rather than dividing a flat index: integer division by a runtime value is
// scalarised per lane on llvmpipe and costs more than the memory traffic.
fn x_plane(n: u32, c: u32) -> u32 { return (n * p.c_stride + c) * p.hw; }
fn dense_plane(n: u32, c: u32) -> u32 { return (n * p.c + c) * p.hw; }

fn reduce2(lid: u32) {
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red_a[lid] += red_a[lid + s];
            red_b[lid] += red_b[lid + s];
        }
        workgroupBarrier();
    }
}

// ---- statistics: mean, 1/sqrt(var + eps), running averages ----
@group(0) @binding(1) var<storage, read> st_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> st_stats: array<f32>;
@group(0) @binding(3) var<storage, read_write> st_running_mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> st_running_var: array<f32>;

// This invocation's share of Σ x (or, with `centred`, of Σ (x − mean)²) over channel c.
fn stats_share(c: u32, lid: u32, mean: f32, centred: bool) -> f32 {
    var s = 0.0;
    for (var n = 0u; n < p.n; n++) {
        let b = x_plane(n, c);
        for (var j = lid; j < p.hw; j += WG) {
            let d = st_x[b + j] - select(0.0, mean, centred);
            s += select(d, d * d, centred);
        }
    }
    return s;
}

// Two passes, the second over centred values (no cancellation, unlike E[x²] − E[x]²),
// each reduced over the workgroup in a fixed tree.
@compute @workgroup_size(64)
fn bn_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let m = f32(p.n * p.hw);
    let c = p.c_off + wid.x;
    let mean = workgroup_sum(lid, stats_share(c, lid, 0.0, false)) / m;
    workgroupBarrier();
    let var_b = workgroup_sum(lid, stats_share(c, lid, mean, true)) / m;
    if (lid == 0u) { write_stats(c, mean, var_b); }
}

// HW a multiple of 4: the same with vec4 loads.
@group(0) @binding(1) var<storage, read> st_x4: array<vec4<f32>>;

fn stats_share4(c: u32, lid: u32, mean: f32, centred: bool) -> f32 {
    var s = vec4<f32>(0.0);
    for (var n = 0u; n < p.n; n++) {
        let b = x_plane(n, c) / 4u;
        for (var j = lid; j * 4u < p.hw; j += WG) {
            let d = st_x4[b + j] - select(0.0, mean, centred);
            s += select(d, d * d, centred);
        }
    }
    return (s.x + s.y) + (s.z + s.w);
}

@compute @workgroup_size(64)
fn bn_stats_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let m = f32(p.n * p.hw);
    let c = p.c_off + wid.x;
    let mean = workgroup_sum(lid, stats_share4(c, lid, 0.0, false)) / m;
    workgroupBarrier();
    let var_b = workgroup_sum(lid, stats_share4(c, lid, mean, true)) / m;
    if (lid == 0u) { write_stats(c, mean, var_b); }
}

// Σ over the workgroup of each invocation's `v`, in a fixed tree (every invocation gets it).
fn workgroup_sum(lid: u32, v: f32) -> f32 {
    red_a[lid] = v;
    red_b[lid] = 0.0;
    reduce2(lid);
    return red_a[0];
}

// Mean, 1/sqrt(var + eps) and the running averages of channel c (biased variance var_b);
// in cache mode the mean and var_b of channel c into the cache.
fn write_stats(c: u32, mean: f32, var_b: f32) {
    if (p.cache == 1u) {
        st_stats[c] = mean;
        st_stats[p.c_stride + c] = var_b;
        return;
    }
    let m = p.n * p.hw;
    st_stats[c] = mean;
    st_stats[p.c + c] = 1.0 / sqrt(var_b + p.eps);
    let unbiased = var_b * f32(m) / f32(max(m, 2u) - 1u);
    st_running_mean[c] = (1.0 - p.momentum) * st_running_mean[c] + p.momentum * mean;
    st_running_var[c] = (1.0 - p.momentum) * st_running_var[c] + p.momentum * unbiased;
}

// ---- eval: stats from the running averages ----
@group(0) @binding(1) var<storage, read> ev_mean: array<f32>;
@group(0) @binding(2) var<storage, read> ev_var: array<f32>;
@group(0) @binding(3) var<storage, read_write> ev_stats: array<f32>;

@compute @workgroup_size(64)
fn bn_eval_stats(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.c) { return; }
    ev_stats[c] = ev_mean[c];
    ev_stats[p.c + c] = 1.0 / sqrt(ev_var[c] + p.eps);
}

// ---- statistics of channels 0..C from a cache of [mean | biased var] (C_STRIDE channels,
// see `cache` above): the same stats and running-average update as bn_stats, without
// reading x again (DenseNet: a channel's batch statistics do not change within a step) ----
@group(0) @binding(1) var<storage, read> cs_cache: array<f32>;
@group(0) @binding(2) var<storage, read_write> cs_stats: array<f32>;
@group(0) @binding(3) var<storage, read_write> cs_running_mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> cs_running_var: array<f32>;

@compute @workgroup_size(64)
fn bn_cached_stats(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.c) { return; }
    let mean = cs_cache[c];
    let var_b = cs_cache[p.c_stride + c];
    let m = p.n * p.hw;
    cs_stats[c] = mean;
    cs_stats[p.c + c] = 1.0 / sqrt(var_b + p.eps);
    let unbiased = var_b * f32(m) / f32(max(m, 2u) - 1u);
    cs_running_mean[c] = (1.0 - p.momentum) * cs_running_mean[c] + p.momentum * mean;
    cs_running_var[c] = (1.0 - p.momentum) * cs_running_var[c] + p.momentum * unbiased;
}

// ---- y = (x - mean) * invstd * gamma + beta  (then ReLU if p.relu); y is dense ----
@group(0) @binding(1) var<storage, read> ap_x: array<f32>;
@group(0) @binding(2) var<storage, read> ap_stats: array<f32>;
@group(0) @binding(3) var<storage, read> ap_gamma: array<f32>;
@group(0) @binding(4) var<storage, read> ap_beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> ap_y: array<f32>;

// The elementwise kernels (apply, apply + add, backward apply) run over (position,
// channel, chunk of `p.chunk` samples): an invocation loads its channel's constants once
// and loops over its samples (on llvmpipe every storage access is a loop over the SIMD
// lanes, and the constants were most of the accesses).
struct ApplyConst {
    mean: f32,
    a: f32,   // invstd · gamma
    b: f32,   // beta
};

fn apply_const(c: u32) -> ApplyConst {
    return ApplyConst(ap_stats[c], ap_stats[p.c + c] * ap_gamma[c], ap_beta[c]);
}

// bn(x) for four values (the scalar entries use lane x); ReLU if p.relu.
fn apply4(x: vec4<f32>, k: ApplyConst) -> vec4<f32> {
    let y = (x - k.mean) * k.a + k.b;
    return select(y, max(y, vec4<f32>(0.0)), p.relu == 1u);
}

@compute @workgroup_size(64)
fn bn_apply(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.hw) { return; }
    let k = apply_const(gid.y);
    for (var n = gid.z * p.chunk; n < split_end(gid.z); n++) {
        let x = ap_x[x_plane(n, gid.y) + gid.x];
        ap_y[dense_plane(n, gid.y) + gid.x] = apply4(vec4<f32>(x), k).x;
    }
}

// HW a multiple of 4: vec4 loads and stores (on llvmpipe every storage access is a loop
// over the SIMD lanes, so one vec4 costs far less than four scalars).
@group(0) @binding(1) var<storage, read> ap_x4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> ap_y4: array<vec4<f32>>;

@compute @workgroup_size(64)
fn bn_apply_vec4(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x * 4u >= p.hw) { return; }
    let k = apply_const(gid.y);
    for (var n = gid.z * p.chunk; n < split_end(gid.z); n++) {
        let x = ap_x4[x_plane(n, gid.y) / 4u + gid.x];
        ap_y4[dense_plane(n, gid.y) / 4u + gid.x] = apply4(x, k);
    }
}

// ---- y = relu(bn(x) + skip) (ResNet's block output; x, skip and y dense [N, C, HW]):
// the same arithmetic as bn_apply, the add and the ReLU in one pass over memory ----
@group(0) @binding(5) var<storage, read> aa_skip: array<f32>;
@group(0) @binding(6) var<storage, read_write> aa_y: array<f32>;
@group(0) @binding(5) var<storage, read> aa_skip4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> aa_y4: array<vec4<f32>>;

@compute @workgroup_size(64)
fn bn_apply_add(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.hw) { return; }
    let kc = apply_const(gid.y);
    for (var n = gid.z * p.chunk; n < split_end(gid.z); n++) {
        let k = x_plane(n, gid.y) + gid.x;
        aa_y[k] = max(apply4(vec4<f32>(ap_x[k]), kc).x + aa_skip[k], 0.0);
    }
}

@compute @workgroup_size(64)
fn bn_apply_add_vec4(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x * 4u >= p.hw) { return; }
    let kc = apply_const(gid.y);
    for (var n = gid.z * p.chunk; n < split_end(gid.z); n++) {
        let k = x_plane(n, gid.y) / 4u + gid.x;
        aa_y4[k] = max(apply4(ap_x4[k], kc) + aa_skip4[k], vec4<f32>(0.0));
    }
}

// ---- backward, per channel: dgamma = Σ dy·x̂, dbeta = Σ dy (dy masked by the ReLU) ----
@group(0) @binding(1) var<storage, read> br_x: array<f32>;
@group(0) @binding(2) var<storage, read> br_dy: array<f32>;
@group(0) @binding(3) var<storage, read> br_stats: array<f32>;
@group(0) @binding(4) var<storage, read> br_gamma: array<f32>;
@group(0) @binding(5) var<storage, read> br_beta: array<f32>;
@group(0) @binding(6) var<storage, read_write> br_dgamma: array<f32>;
@group(0) @binding(7) var<storage, read_write> br_dbeta: array<f32>;

@compute @workgroup_size(64)
fn bn_backward_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = wid.x;
    let mean = br_stats[c];
    let inv = br_stats[p.c + c];
    var sdy = 0.0;
    var sdyx = 0.0;
    let g = br_gamma[c];
    let b = br_beta[c];
    for (var n = 0u; n < p.n; n++) {
        let xb = x_plane(n, c);
        let db = dense_plane(n, c);
        for (var j = lid; j < p.hw; j += WG) {
            let xhat = (br_x[xb + j] - mean) * inv;
            // ReLU mask recomputed from x rather than stored.
            let dy = select(br_dy[db + j], 0.0, p.relu == 1u && xhat * g + b <= 0.0);
            sdy += dy;
            sdyx += dy * xhat;
        }
    }
    write_dsums(c, lid, sdy, sdyx);
}

fn write_dsums(c: u32, lid: u32, sdy: f32, sdyx: f32) {
    red_a[lid] = sdy;
    red_b[lid] = sdyx;
    reduce2(lid);
    if (lid == 0u) {
        br_dbeta[c] = red_a[0];
        br_dgamma[c] = red_b[0];
    }
}

// HW a multiple of 4: the same with vec4 loads.
@group(0) @binding(1) var<storage, read> br_x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> br_dy4: array<vec4<f32>>;

@compute @workgroup_size(64)
fn bn_backward_reduce_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = wid.x;
    let mean = br_stats[c];
    let inv = br_stats[p.c + c];
    var sdy = vec4<f32>(0.0);
    var sdyx = vec4<f32>(0.0);
    let g = br_gamma[c];
    let b = br_beta[c];
    let relu = vec4<bool>(p.relu == 1u);
    for (var n = 0u; n < p.n; n++) {
        let xb = x_plane(n, c) / 4u;
        let db = dense_plane(n, c) / 4u;
        for (var j = lid; j * 4u < p.hw; j += WG) {
            let xhat = (br_x4[xb + j] - mean) * inv;
            let dy = select(br_dy4[db + j], vec4<f32>(0.0), relu & (xhat * g + b <= vec4<f32>(0.0)));
            sdy += dy;
            sdyx += dy * xhat;
        }
    }
    write_dsums(c, lid, (sdy.x + sdy.y) + (sdy.z + sdy.w), (sdyx.x + sdyx.y) + (sdyx.z + sdyx.w));
}

// ---- dx = gamma·invstd/M · (M·dy − Σdy − x̂·Σdy·x̂)   (frozen: dx = gamma·invstd·dy) ----
// dx has x's layout (strided when C_STRIDE > C; the caller zeroes the other channels, or,
// with `accumulate`, dx is added into a gradient buffer of x's layout that it owns).
@group(0) @binding(1) var<storage, read> bd_x: array<f32>;
@group(0) @binding(2) var<storage, read> bd_dy: array<f32>;
@group(0) @binding(3) var<storage, read> bd_stats: array<f32>;
@group(0) @binding(4) var<storage, read> bd_gamma: array<f32>;
@group(0) @binding(5) var<storage, read> bd_beta: array<f32>;
@group(0) @binding(6) var<storage, read> bd_dgamma: array<f32>;
@group(0) @binding(7) var<storage, read> bd_dbeta: array<f32>;
@group(0) @binding(8) var<storage, read_write> bd_dx: array<f32>;

// A channel's constants for dx.
struct BwdConst {
    mean: f32,
    inv: f32,
    gamma: f32,
    beta: f32,
    scale: f32,   // gamma·invstd (frozen), else gamma·invstd/M
    sdy: f32,     // Σ dy
    sdyx: f32,    // Σ dy·x̂
};

fn bwd_const(c: u32) -> BwdConst {
    let inv = bd_stats[p.c + c];
    let g = bd_gamma[c];
    let scale = select(g * inv / f32(p.n * p.hw), g * inv, p.frozen == 1u);
    return BwdConst(bd_stats[c], inv, g, bd_beta[c], scale, bd_dbeta[c], bd_dgamma[c]);
}

// dx for four values of one channel (frozen: statistics are constants).
fn backward4(x: vec4<f32>, dy_in: vec4<f32>, k: BwdConst) -> vec4<f32> {
    let xhat = (x - k.mean) * k.inv;
    let dy = select(dy_in, vec4<f32>(0.0), vec4<bool>(p.relu == 1u) & (xhat * k.gamma + k.beta <= vec4<f32>(0.0)));
    if (p.frozen == 1u) { return k.scale * dy; }
    let m = f32(p.n * p.hw);
    return k.scale * (m * dy - k.sdy - xhat * k.sdyx);
}

@compute @workgroup_size(64)
fn bn_backward_apply(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.hw) { return; }
    let kc = bwd_const(gid.y);
    for (var n = gid.z * p.chunk; n < split_end(gid.z); n++) {
        let k = x_plane(n, gid.y) + gid.x;
        let dy = bd_dy[dense_plane(n, gid.y) + gid.x];
        let dx = backward4(vec4<f32>(bd_x[k]), vec4<f32>(dy), kc).x;
        if (p.accumulate == 1u) { bd_dx[k] += dx; } else { bd_dx[k] = dx; }
    }
}

@group(0) @binding(1) var<storage, read> bd_x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bd_dy4: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> bd_dx4: array<vec4<f32>>;

@compute @workgroup_size(64)
fn bn_backward_apply_vec4(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x * 4u >= p.hw) { return; }
    let kc = bwd_const(gid.y);
    for (var n = gid.z * p.chunk; n < split_end(gid.z); n++) {
        let k = x_plane(n, gid.y) / 4u + gid.x;
        let dy = bd_dy4[dense_plane(n, gid.y) / 4u + gid.x];
        let dx = backward4(bd_x4[k], dy, kc);
        if (p.accumulate == 1u) { bd_dx4[k] += dx; } else { bd_dx4[k] = dx; }
    }
}

// ---- Real GPUs (Tuning::Gpu): each channel's sums are split over `splits` workgroups of
// 256 invocations (split s covers samples [s·chunk, (s+1)·chunk)), so a layer with few
// channels still fills the GPU; a second kernel adds the partial sums of each channel in a
// fixed order (no atomics: bit-exact run to run). Vec4 loads when HW is a multiple of 4.
// Statistics: bn_gpu_sums (Σ x) → bn_gpu_stats (mean) → bn_gpu_sums centred (Σ (x − mean)²)
// → bn_gpu_stats centred (invstd, running averages). Backward: bn_gpu_dsums → bn_gpu_dfinish.
const GWG: u32 = 256u;
var<workgroup> gred_a: array<f32, 256>;
var<workgroup> gred_b: array<f32, 256>;

// Σ over the workgroup of (a, b), in a fixed tree.
fn gpu_sum2(lid: u32, a: f32, b: f32) -> vec2<f32> {
    gred_a[lid] = a;
    gred_b[lid] = b;
    workgroupBarrier();
    for (var s = GWG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            gred_a[lid] += gred_a[lid + s];
            gred_b[lid] += gred_b[lid + s];
        }
        workgroupBarrier();
    }
    return vec2<f32>(gred_a[0], gred_b[0]);
}

// End of the samples of split (or chunk) s.
fn split_end(s: u32) -> u32 { return min((s + 1u) * p.chunk, p.n); }

@group(0) @binding(1) var<storage, read> gs_x: array<f32>;
@group(0) @binding(1) var<storage, read> gs_x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> gs_stats: array<f32>;
@group(0) @binding(3) var<storage, read_write> gs_partial: array<f32>;

// partial[c · splits + s] = Σ x (or Σ (x − mean)²) over channel c = wid.x, split s = wid.y.
@compute @workgroup_size(256)
fn bn_gpu_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = wid.x;
    let mean = select(0.0, gs_stats[p.c_off + c], p.centred == 1u);
    var acc = 0.0;
    for (var n = wid.y * p.chunk; n < split_end(wid.y); n++) {
        let b = x_plane(n, p.c_off + c);
        for (var j = lid; j < p.hw; j += GWG) {
            let d = gs_x[b + j] - mean;
            acc += select(d, d * d, p.centred == 1u);
        }
    }
    let t = gpu_sum2(lid, acc, 0.0);
    if (lid == 0u) { gs_partial[c * p.splits + wid.y] = t.x; }
}

@compute @workgroup_size(256)
fn bn_gpu_sums_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = wid.x;
    let mean = select(0.0, gs_stats[p.c_off + c], p.centred == 1u);
    var acc = vec4<f32>(0.0);
    for (var n = wid.y * p.chunk; n < split_end(wid.y); n++) {
        let b = x_plane(n, p.c_off + c) / 4u;
        for (var j = lid; j * 4u < p.hw; j += GWG) {
            let d = gs_x4[b + j] - mean;
            acc += select(d, d * d, p.centred == 1u);
        }
    }
    let t = gpu_sum2(lid, (acc.x + acc.y) + (acc.z + acc.w), 0.0);
    if (lid == 0u) { gs_partial[c * p.splits + wid.y] = t.x; }
}

@group(0) @binding(1) var<storage, read> gf_partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> gf_stats: array<f32>;
@group(0) @binding(3) var<storage, read_write> gf_running_mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> gf_running_var: array<f32>;

// One invocation per channel: the splits' sums in order; then the mean, or (centred) the
// invstd and the running averages.
@compute @workgroup_size(64)
fn bn_gpu_stats(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.c) { return; }
    var total = 0.0;
    for (var s = 0u; s < p.splits; s++) { total += gf_partial[c * p.splits + s]; }
    let m = p.n * p.hw;
    if (p.centred == 0u) {
        gf_stats[p.c_off + c] = total / f32(m);
        return;
    }
    let var_b = total / f32(m);
    if (p.cache == 1u) {
        gf_stats[p.c_stride + p.c_off + c] = var_b;
        return;
    }
    let mean = gf_stats[c];
    gf_stats[p.c + c] = 1.0 / sqrt(var_b + p.eps);
    let unbiased = var_b * f32(m) / f32(max(m, 2u) - 1u);
    gf_running_mean[c] = (1.0 - p.momentum) * gf_running_mean[c] + p.momentum * mean;
    gf_running_var[c] = (1.0 - p.momentum) * gf_running_var[c] + p.momentum * unbiased;
}

@group(0) @binding(1) var<storage, read> gd_x: array<f32>;
@group(0) @binding(1) var<storage, read> gd_x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> gd_dy: array<f32>;
@group(0) @binding(2) var<storage, read> gd_dy4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> gd_stats: array<f32>;
@group(0) @binding(4) var<storage, read> gd_gamma: array<f32>;
@group(0) @binding(5) var<storage, read> gd_beta: array<f32>;
@group(0) @binding(6) var<storage, read_write> gd_partial: array<f32>;

// partial[(c · splits + s) · 2] = Σ dy, [.. + 1] = Σ dy·x̂ (dy masked by the ReLU).
@compute @workgroup_size(256)
fn bn_gpu_dsums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = wid.x;
    let mean = gd_stats[c];
    let inv = gd_stats[p.c + c];
    let g = gd_gamma[c];
    let b = gd_beta[c];
    var sdy = 0.0;
    var sdyx = 0.0;
    for (var n = wid.y * p.chunk; n < split_end(wid.y); n++) {
        let xb = x_plane(n, c);
        let db = dense_plane(n, c);
        for (var j = lid; j < p.hw; j += GWG) {
            let xhat = (gd_x[xb + j] - mean) * inv;
            let dy = select(gd_dy[db + j], 0.0, p.relu == 1u && xhat * g + b <= 0.0);
            sdy += dy;
            sdyx += dy * xhat;
        }
    }
    let t = gpu_sum2(lid, sdy, sdyx);
    if (lid == 0u) {
        gd_partial[(c * p.splits + wid.y) * 2u] = t.x;
        gd_partial[(c * p.splits + wid.y) * 2u + 1u] = t.y;
    }
}

@compute @workgroup_size(256)
fn bn_gpu_dsums_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = wid.x;
    let mean = gd_stats[c];
    let inv = gd_stats[p.c + c];
    let g = gd_gamma[c];
    let b = gd_beta[c];
    let relu = vec4<bool>(p.relu == 1u);
    var sdy = vec4<f32>(0.0);
    var sdyx = vec4<f32>(0.0);
    for (var n = wid.y * p.chunk; n < split_end(wid.y); n++) {
        let xb = x_plane(n, c) / 4u;
        let db = dense_plane(n, c) / 4u;
        for (var j = lid; j * 4u < p.hw; j += GWG) {
            let xhat = (gd_x4[xb + j] - mean) * inv;
            let dy = select(gd_dy4[db + j], vec4<f32>(0.0), relu & (xhat * g + b <= vec4<f32>(0.0)));
            sdy += dy;
            sdyx += dy * xhat;
        }
    }
    let t = gpu_sum2(lid, (sdy.x + sdy.y) + (sdy.z + sdy.w), (sdyx.x + sdyx.y) + (sdyx.z + sdyx.w));
    if (lid == 0u) {
        gd_partial[(c * p.splits + wid.y) * 2u] = t.x;
        gd_partial[(c * p.splits + wid.y) * 2u + 1u] = t.y;
    }
}

@group(0) @binding(1) var<storage, read> gdf_partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> gdf_dgamma: array<f32>;
@group(0) @binding(3) var<storage, read_write> gdf_dbeta: array<f32>;

// One invocation per channel: dbeta = Σ dy, dgamma = Σ dy·x̂ over the splits in order.
@compute @workgroup_size(64)
fn bn_gpu_dfinish(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.c) { return; }
    var sdy = 0.0;
    var sdyx = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        sdy += gdf_partial[(c * p.splits + s) * 2u];
        sdyx += gdf_partial[(c * p.splits + s) * 2u + 1u];
    }
    gdf_dbeta[c] = sdy;
    gdf_dgamma[c] = sdyx;
}
