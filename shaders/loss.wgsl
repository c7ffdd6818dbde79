// Row-wise log-softmax and softmax cross-entropy over [B, C]. One invocation per row:
// C is small (classes), and a fixed loop order keeps results deterministic.

struct Params {
    b: u32,
    c: u32,
    scale: f32,   // cross-entropy: logits are multiplied by this first (IsoMax's entropic scale)
    inv_b: f32,   // 1 / B, the mean's factor
};

@group(0) @binding(0) var<uniform> p: Params;

// ---- log_softmax: y = z - logsumexp(z) ----
@group(0) @binding(1) var<storage, read> ls_z: array<f32>;
@group(0) @binding(2) var<storage, read_write> ls_y: array<f32>;

@compute @workgroup_size(64)
fn log_softmax(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if (r >= p.b) { return; }
    let o = r * p.c;
    var mx = ls_z[o];
    for (var j = 1u; j < p.c; j++) { mx = max(mx, ls_z[o + j]); }
    var s = 0.0;
    for (var j = 0u; j < p.c; j++) { s += exp(ls_z[o + j] - mx); }
    let lse = mx + log(s);
    for (var j = 0u; j < p.c; j++) { ls_y[o + j] = ls_z[o + j] - lse; }
}

// ---- log_softmax backward: dz = dy - softmax(z) * Σ dy   (y is the forward output) ----
@group(0) @binding(1) var<storage, read> lb_y: array<f32>;
@group(0) @binding(2) var<storage, read> lb_dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> lb_dz: array<f32>;

@compute @workgroup_size(64)
fn log_softmax_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if (r >= p.b) { return; }
    let o = r * p.c;
    var s = 0.0;
    for (var j = 0u; j < p.c; j++) { s += lb_dy[o + j]; }
    for (var j = 0u; j < p.c; j++) { lb_dz[o + j] = lb_dy[o + j] - exp(lb_y[o + j]) * s; }
}

// ---- cross-entropy: per-row loss of softmax(scale·z) against labels, and the
//      probabilities softmax(scale·z) that the backward needs ----
@group(0) @binding(1) var<storage, read> ce_z: array<f32>;
@group(0) @binding(2) var<storage, read> ce_labels: array<f32>;
@group(0) @binding(3) var<storage, read_write> ce_loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> ce_probs: array<f32>;

@compute @workgroup_size(64)
fn cross_entropy(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if (r >= p.b) { return; }
    let o = r * p.c;
    let y = min(u32(ce_labels[r]), p.c - 1u);
    var mx = p.scale * ce_z[o];
    for (var j = 1u; j < p.c; j++) { mx = max(mx, p.scale * ce_z[o + j]); }
    var s = 0.0;
    for (var j = 0u; j < p.c; j++) { s += exp(p.scale * ce_z[o + j] - mx); }
    let lse = mx + log(s);
    for (var j = 0u; j < p.c; j++) { ce_probs[o + j] = exp(p.scale * ce_z[o + j] - lse); }
    ce_loss[r] = lse - p.scale * ce_z[o + y];
}

// ---- cross-entropy backward: dz = g · scale · (probs − onehot(y)) / B ----
@group(0) @binding(1) var<storage, read> cb_probs: array<f32>;
@group(0) @binding(2) var<storage, read> cb_labels: array<f32>;
@group(0) @binding(3) var<storage, read> cb_g: array<f32>;
@group(0) @binding(4) var<storage, read_write> cb_dz: array<f32>;

@compute @workgroup_size(256)
fn cross_entropy_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.b * p.c) { return; }
    let r = i / p.c;
    let j = i % p.c;
    let y = min(u32(cb_labels[r]), p.c - 1u);
    let onehot = select(0.0, 1.0, j == y);
    cb_dz[i] = cb_g[0] * p.scale * p.inv_b * (cb_probs[i] - onehot);
}
