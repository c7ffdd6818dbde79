// Batch norm over [N, C, HW]: per-channel statistics (one workgroup per channel, a fixed
// tree reduction, so results are bit-exact run to run), the normalisation, and backward.

struct Params {
    n: u32,
    c: u32,
    hw: u32,
    eps: f32,
    momentum: f32,
    flag: u32,   // bn_apply: 1 = `invstd` holds a variance (eval mode); bn_backward_apply: 1 = frozen statistics
};

@group(0) @binding(0) var<uniform> p: Params;

const WG: u32 = 64u;
var<workgroup> red_a: array<f32, 64>;
var<workgroup> red_b: array<f32, 64>;

fn x_index(j: u32, c: u32) -> u32 {
    // j runs over N * HW for channel c
    return ((j / p.hw) * p.c + c) * p.hw + j % p.hw;
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
@group(0) @binding(2) var<storage, read_write> st_mean: array<f32>;
@group(0) @binding(3) var<storage, read_write> st_invstd: array<f32>;
@group(0) @binding(4) var<storage, read_write> st_running_mean: array<f32>;
@group(0) @binding(5) var<storage, read_write> st_running_var: array<f32>;

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
        st_mean[c] = mean;
        st_invstd[c] = 1.0 / sqrt(var_b + p.eps);
        let unbiased = var_b * f32(m) / f32(max(m, 2u) - 1u);
        st_running_mean[c] = (1.0 - p.momentum) * st_running_mean[c] + p.momentum * mean;
        st_running_var[c] = (1.0 - p.momentum) * st_running_var[c] + p.momentum * unbiased;
    }
}

// ---- y = (x - mean) * invstd * gamma + beta ----
@group(0) @binding(1) var<storage, read> ap_x: array<f32>;
@group(0) @binding(2) var<storage, read> ap_mean: array<f32>;
@group(0) @binding(3) var<storage, read> ap_invstd: array<f32>;
@group(0) @binding(4) var<storage, read> ap_gamma: array<f32>;
@group(0) @binding(5) var<storage, read> ap_beta: array<f32>;
@group(0) @binding(6) var<storage, read_write> ap_y: array<f32>;

@compute @workgroup_size(256)
fn bn_apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n * p.c * p.hw) { return; }
    let c = (i / p.hw) % p.c;
    var inv = ap_invstd[c];
    if (p.flag == 1u) { inv = 1.0 / sqrt(inv + p.eps); }
    ap_y[i] = (ap_x[i] - ap_mean[c]) * inv * ap_gamma[c] + ap_beta[c];
}

// ---- backward, per channel: dgamma = Σ dy·x̂, dbeta = Σ dy ----
@group(0) @binding(1) var<storage, read> br_x: array<f32>;
@group(0) @binding(2) var<storage, read> br_dy: array<f32>;
@group(0) @binding(3) var<storage, read> br_mean: array<f32>;
@group(0) @binding(4) var<storage, read> br_invstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> br_dgamma: array<f32>;
@group(0) @binding(6) var<storage, read_write> br_dbeta: array<f32>;

@compute @workgroup_size(64)
fn bn_backward_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = wid.x;
    let m = p.n * p.hw;
    let mean = br_mean[c];
    var inv = br_invstd[c];
    if (p.flag == 1u) { inv = 1.0 / sqrt(inv + p.eps); }
    var sdy = 0.0;
    var sdyx = 0.0;
    for (var j = lid; j < m; j += WG) {
        let k = x_index(j, c);
        let dy = br_dy[k];
        sdy += dy;
        sdyx += dy * (br_x[k] - mean) * inv;
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
@group(0) @binding(1) var<storage, read> bd_x: array<f32>;
@group(0) @binding(2) var<storage, read> bd_dy: array<f32>;
@group(0) @binding(3) var<storage, read> bd_mean: array<f32>;
@group(0) @binding(4) var<storage, read> bd_invstd: array<f32>;
@group(0) @binding(5) var<storage, read> bd_gamma: array<f32>;
@group(0) @binding(6) var<storage, read> bd_dgamma: array<f32>;
@group(0) @binding(7) var<storage, read> bd_dbeta: array<f32>;
@group(0) @binding(8) var<storage, read_write> bd_dx: array<f32>;

@compute @workgroup_size(256)
fn bn_backward_apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n * p.c * p.hw) { return; }
    let c = (i / p.hw) % p.c;
    var inv = bd_invstd[c];
    if (p.flag == 1u) {
        inv = 1.0 / sqrt(inv + p.eps);
        bd_dx[i] = bd_gamma[c] * inv * bd_dy[i];
        return;
    }
    let m = f32(p.n * p.hw);
    let xhat = (bd_x[i] - bd_mean[c]) * inv;
    bd_dx[i] = bd_gamma[c] * inv / m * (m * bd_dy[i] - bd_dbeta[c] - xhat * bd_dgamma[c]);
}
