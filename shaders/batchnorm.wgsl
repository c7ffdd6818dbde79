// Batch norm over the first C channels of an [N, C_STRIDE, HW] tensor (C_STRIDE > C lets a
// DenseNet layer normalise a prefix of its block buffer without copying it), optionally
// fused with a ReLU. Per-channel statistics use one workgroup per channel and a fixed tree
// reduction, so results are bit-exact run to run. `stats` holds [mean | invstd].

struct Params {
    n: u32,
    c: u32,
    hw: u32,
    eps: f32,
    momentum: f32,
    frozen: u32,    // 1 = statistics are constants (eval mode)
    c_stride: u32,  // channels of the tensor x lives in
    relu: u32,      // 1 = output is relu(bn(x))
};

@group(0) @binding(0) var<uniform> p: Params;

const WG: u32 = 64u;
var<workgroup> red_a: array<f32, 64>;
var<workgroup> red_b: array<f32, 64>;

// Element j of channel c, j running over N * HW.
fn x_index(j: u32, c: u32) -> u32 {
    return ((j / p.hw) * p.c_stride + c) * p.hw + j % p.hw;
}

// Element i of the dense [N, C, HW] layout → its index in x.
fn strided(i: u32) -> u32 {
    let c = (i / p.hw) % p.c;
    return ((i / (p.hw * p.c)) * p.c_stride + c) * p.hw + i % p.hw;
}

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

@compute @workgroup_size(64)
fn bn_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = wid.x;
    let m = p.n * p.hw;
    var s = 0.0;
    for (var j = lid; j < m; j += WG) { s += st_x[x_index(j, c)]; }
    red_a[lid] = s;
    red_b[lid] = 0.0;
    reduce2(lid);
    let mean = red_a[0] / f32(m);
    workgroupBarrier();
    // Second pass over centred values: no cancellation, unlike E[x²] − E[x]².
    var v = 0.0;
    for (var j = lid; j < m; j += WG) {
        let d = st_x[x_index(j, c)] - mean;
        v += d * d;
    }
    red_a[lid] = v;
    reduce2(lid);
    if (lid == 0u) {
        let var_b = red_a[0] / f32(m);
        st_stats[c] = mean;
        st_stats[p.c + c] = 1.0 / sqrt(var_b + p.eps);
        let unbiased = var_b * f32(m) / f32(max(m, 2u) - 1u);
        st_running_mean[c] = (1.0 - p.momentum) * st_running_mean[c] + p.momentum * mean;
        st_running_var[c] = (1.0 - p.momentum) * st_running_var[c] + p.momentum * unbiased;
    }
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

// ---- y = (x - mean) * invstd * gamma + beta  (then ReLU if p.relu); y is dense ----
@group(0) @binding(1) var<storage, read> ap_x: array<f32>;
@group(0) @binding(2) var<storage, read> ap_stats: array<f32>;
@group(0) @binding(3) var<storage, read> ap_gamma: array<f32>;
@group(0) @binding(4) var<storage, read> ap_beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> ap_y: array<f32>;

@compute @workgroup_size(256)
fn bn_apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n * p.c * p.hw) { return; }
    let c = (i / p.hw) % p.c;
    var y = (ap_x[strided(i)] - ap_stats[c]) * ap_stats[p.c + c] * ap_gamma[c] + ap_beta[c];
    if (p.relu == 1u) { y = max(y, 0.0); }
    ap_y[i] = y;
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
    let m = p.n * p.hw;
    let mean = br_stats[c];
    let inv = br_stats[p.c + c];
    var sdy = 0.0;
    var sdyx = 0.0;
    for (var j = lid; j < m; j += WG) {
        let xhat = (br_x[x_index(j, c)] - mean) * inv;
        var dy = br_dy[((j / p.hw) * p.c + c) * p.hw + j % p.hw];
        // ReLU mask recomputed from x rather than stored.
        if (p.relu == 1u && xhat * br_gamma[c] + br_beta[c] <= 0.0) { dy = 0.0; }
        sdy += dy;
        sdyx += dy * xhat;
    }
    red_a[lid] = sdy;
    red_b[lid] = sdyx;
    reduce2(lid);
    if (lid == 0u) {
        br_dbeta[c] = red_a[0];
        br_dgamma[c] = red_b[0];
    }
}

// ---- dx = gamma·invstd/M · (M·dy − Σdy − x̂·Σdy·x̂)   (frozen: dx = gamma·invstd·dy) ----
// dx has x's layout (strided when C_STRIDE > C; the caller zeroes the other channels).
@group(0) @binding(1) var<storage, read> bd_x: array<f32>;
@group(0) @binding(2) var<storage, read> bd_dy: array<f32>;
@group(0) @binding(3) var<storage, read> bd_stats: array<f32>;
@group(0) @binding(4) var<storage, read> bd_gamma: array<f32>;
@group(0) @binding(5) var<storage, read> bd_beta: array<f32>;
@group(0) @binding(6) var<storage, read> bd_dgamma: array<f32>;
@group(0) @binding(7) var<storage, read> bd_dbeta: array<f32>;
@group(0) @binding(8) var<storage, read_write> bd_dx: array<f32>;

@compute @workgroup_size(256)
fn bn_backward_apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n * p.c * p.hw) { return; }
    let c = (i / p.hw) % p.c;
    let k = strided(i);
    let inv = bd_stats[p.c + c];
    let xhat = (bd_x[k] - bd_stats[c]) * inv;
    var dy = bd_dy[i];
    if (p.relu == 1u && xhat * bd_gamma[c] + bd_beta[c] <= 0.0) { dy = 0.0; }
    if (p.frozen == 1u) {
        bd_dx[k] = bd_gamma[c] * inv * dy;
        return;
    }
    let m = f32(p.n * p.hw);
    bd_dx[k] = bd_gamma[c] * inv / m * (m * dy - bd_dbeta[c] - xhat * bd_dgamma[c]);
}
