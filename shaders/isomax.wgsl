// IsoMax heads (SPEC §1): fused distance-to-prototype kernels and their gradients, the
// pieces of the normalized variants (IsoMax+, DisMax) and the softmax-entropy kernel that
// produces the loss, the probabilities and every OOD score in one pass over each row.
//
// Barrier-free by design: workgroup barriers and workgroup memory are very slow on
// llvmpipe (what CI runs), so each invocation owns a small register tile or a whole row.
// Every sum runs in a fixed order inside one invocation (no atomics): bit-exact reruns.
// Out-of-range tile members read a clamped (valid) index and are simply not written.

// Invocations per workgroup, chosen by the host per adapter (small on CPU adapters so
// that a few rows still spread over every core).
override WG: u32 = 64u;

struct Params {
    b: u32,       // rows: features / batch
    c: u32,       // prototypes / classes
    d: u32,       // feature dimension
    n: u32,       // element count for elementwise entries
    scale: f32,   // the factor each entry multiplies by: 1/divisor (abs_scale*), the
                  // logits' sign (add_row_mean), the entropic scale (softmax_entropy*)
    inv_b: f32,   // softmax_entropy_backward: 1 / B, the mean's factor
};

@group(0) @binding(0) var<uniform> p: Params;
// Read-only inputs, in binding order; each entry documents what they hold.
@group(0) @binding(1) var<storage, read> in1: array<f32>;
@group(0) @binding(2) var<storage, read> in2: array<f32>;
@group(0) @binding(3) var<storage, read> in3: array<f32>;
@group(0) @binding(4) var<storage, read> in4: array<f32>;
// Outputs: an entry with k reads writes at bindings k+1, k+2, ...
@group(0) @binding(2) var<storage, read_write> out2: array<f32>;
@group(0) @binding(3) var<storage, read_write> out3: array<f32>;
@group(0) @binding(4) var<storage, read_write> out4: array<f32>;
@group(0) @binding(5) var<storage, read_write> out5: array<f32>;

// PyTorch F.normalize's clamp of the norm.
const NORM_EPS: f32 = 1e-12;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// ---------------------------------------------------------------------------------------
// d[i, j] = sqrt(sum_k (f[i, k] - p[j, k])^2): in1 = f [B, D], in2 = p [C, D], out3 = d.
// Each invocation computes a 4 rows x 4 prototypes tile: per k it loads 8 values for 16
// squared differences. The direct difference (never |f|^2 + |p|^2 - 2 f.p) keeps d exact
// near 0, where zero-initialized prototypes start.

fn store_dist(i: u32, j0: u32, a: vec4<f32>) {
    if (i >= p.b) { return; }
    let o = i * p.c + j0;
    out3[o] = sqrt(a.x);
    if (j0 + 1u < p.c) { out3[o + 1u] = sqrt(a.y); }
    if (j0 + 2u < p.c) { out3[o + 2u] = sqrt(a.z); }
    if (j0 + 3u < p.c) { out3[o + 3u] = sqrt(a.w); }
}

@compute @workgroup_size(WG)
fn dist_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat(gid, nwg);
    let ct = (p.c + 3u) / 4u;
    if (t >= ct * ((p.b + 3u) / 4u)) { return; }
    let i0 = (t / ct) * 4u;
    let j0 = (t % ct) * 4u;
    let f0 = min(i0, p.b - 1u) * p.d;
    let f1 = min(i0 + 1u, p.b - 1u) * p.d;
    let f2 = min(i0 + 2u, p.b - 1u) * p.d;
    let f3 = min(i0 + 3u, p.b - 1u) * p.d;
    let q0 = min(j0, p.c - 1u) * p.d;
    let q1 = min(j0 + 1u, p.c - 1u) * p.d;
    let q2 = min(j0 + 2u, p.c - 1u) * p.d;
    let q3 = min(j0 + 3u, p.c - 1u) * p.d;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var k = 0u; k < p.d; k++) {
        let pv = vec4<f32>(in2[q0 + k], in2[q1 + k], in2[q2 + k], in2[q3 + k]);
        let e0 = vec4<f32>(in1[f0 + k]) - pv;
        let e1 = vec4<f32>(in1[f1 + k]) - pv;
        let e2 = vec4<f32>(in1[f2 + k]) - pv;
        let e3 = vec4<f32>(in1[f3 + k]) - pv;
        a0 += e0 * e0;
        a1 += e1 * e1;
        a2 += e2 * e2;
        a3 += e3 * e3;
    }
    store_dist(i0, j0, a0);
    store_dist(i0 + 1u, j0, a1);
    store_dist(i0 + 2u, j0, a2);
    store_dist(i0 + 3u, j0, a3);
}

// g[i, j] / d[i, j], with the d = 0 term defined as 0 (the subgradient; never NaN).
fn ratio(g: vec4<f32>, d: vec4<f32>) -> vec4<f32> {
    return select(vec4<f32>(0.0), g / d, d > vec4<f32>(0.0));
}

fn store4(buf_row: u32, k0: u32, a: vec4<f32>) {
    out5[buf_row + k0] = a.x;
    if (k0 + 1u < p.d) { out5[buf_row + k0 + 1u] = a.y; }
    if (k0 + 2u < p.d) { out5[buf_row + k0 + 2u] = a.z; }
    if (k0 + 3u < p.d) { out5[buf_row + k0 + 3u] = a.w; }
}

// grad_f[i, k] = sum_j w[i, j] (f[i, k] - p[j, k]), w = g / d.
// in1 = f, in2 = p, in3 = d [B, C], in4 = g [B, C], out5 = grad_f [B, D].
// A 4 rows x 4 columns tile per invocation, looping over j in order.
@compute @workgroup_size(WG)
fn dist_grad_f(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat(gid, nwg);
    let kt = (p.d + 3u) / 4u;
    if (t >= kt * ((p.b + 3u) / 4u)) { return; }
    let i0 = (t / kt) * 4u;
    let k0 = (t % kt) * 4u;
    let r0 = min(i0, p.b - 1u);
    let r1 = min(i0 + 1u, p.b - 1u);
    let r2 = min(i0 + 2u, p.b - 1u);
    let r3 = min(i0 + 3u, p.b - 1u);
    let c0 = k0;
    let c1 = min(k0 + 1u, p.d - 1u);
    let c2 = min(k0 + 2u, p.d - 1u);
    let c3 = min(k0 + 3u, p.d - 1u);
    let fv0 = vec4<f32>(in1[r0 * p.d + c0], in1[r0 * p.d + c1], in1[r0 * p.d + c2], in1[r0 * p.d + c3]);
    let fv1 = vec4<f32>(in1[r1 * p.d + c0], in1[r1 * p.d + c1], in1[r1 * p.d + c2], in1[r1 * p.d + c3]);
    let fv2 = vec4<f32>(in1[r2 * p.d + c0], in1[r2 * p.d + c1], in1[r2 * p.d + c2], in1[r2 * p.d + c3]);
    let fv3 = vec4<f32>(in1[r3 * p.d + c0], in1[r3 * p.d + c1], in1[r3 * p.d + c2], in1[r3 * p.d + c3]);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var j = 0u; j < p.c; j++) {
        let q = j * p.d;
        let pv = vec4<f32>(in2[q + c0], in2[q + c1], in2[q + c2], in2[q + c3]);
        let dd = vec4<f32>(in3[r0 * p.c + j], in3[r1 * p.c + j], in3[r2 * p.c + j], in3[r3 * p.c + j]);
        let gg = vec4<f32>(in4[r0 * p.c + j], in4[r1 * p.c + j], in4[r2 * p.c + j], in4[r3 * p.c + j]);
        let w = ratio(gg, dd);
        a0 += w.x * (fv0 - pv);
        a1 += w.y * (fv1 - pv);
        a2 += w.z * (fv2 - pv);
        a3 += w.w * (fv3 - pv);
    }
    store4(i0 * p.d, k0, a0);
    if (i0 + 1u < p.b) { store4((i0 + 1u) * p.d, k0, a1); }
    if (i0 + 2u < p.b) { store4((i0 + 2u) * p.d, k0, a2); }
    if (i0 + 3u < p.b) { store4((i0 + 3u) * p.d, k0, a3); }
}

// grad_p[j, k] = -sum_i w[i, j] (f[i, k] - p[j, k]), w = g / d.
// Same bindings as dist_grad_f, out5 = grad_p [C, D]; a 4 prototypes x 4 columns tile
// per invocation, looping over i in order.
@compute @workgroup_size(WG)
fn dist_grad_p(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat(gid, nwg);
    let kt = (p.d + 3u) / 4u;
    if (t >= kt * ((p.c + 3u) / 4u)) { return; }
    let j0 = (t / kt) * 4u;
    let k0 = (t % kt) * 4u;
    let s0 = min(j0, p.c - 1u);
    let s1 = min(j0 + 1u, p.c - 1u);
    let s2 = min(j0 + 2u, p.c - 1u);
    let s3 = min(j0 + 3u, p.c - 1u);
    let c0 = k0;
    let c1 = min(k0 + 1u, p.d - 1u);
    let c2 = min(k0 + 2u, p.d - 1u);
    let c3 = min(k0 + 3u, p.d - 1u);
    let pv0 = vec4<f32>(in2[s0 * p.d + c0], in2[s0 * p.d + c1], in2[s0 * p.d + c2], in2[s0 * p.d + c3]);
    let pv1 = vec4<f32>(in2[s1 * p.d + c0], in2[s1 * p.d + c1], in2[s1 * p.d + c2], in2[s1 * p.d + c3]);
    let pv2 = vec4<f32>(in2[s2 * p.d + c0], in2[s2 * p.d + c1], in2[s2 * p.d + c2], in2[s2 * p.d + c3]);
    let pv3 = vec4<f32>(in2[s3 * p.d + c0], in2[s3 * p.d + c1], in2[s3 * p.d + c2], in2[s3 * p.d + c3]);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var i = 0u; i < p.b; i++) {
        let r = i * p.d;
        let fv = vec4<f32>(in1[r + c0], in1[r + c1], in1[r + c2], in1[r + c3]);
        let o = i * p.c;
        let dd = vec4<f32>(in3[o + s0], in3[o + s1], in3[o + s2], in3[o + s3]);
        let gg = vec4<f32>(in4[o + s0], in4[o + s1], in4[o + s2], in4[o + s3]);
        let w = ratio(gg, dd);
        a0 += w.x * (fv - pv0);
        a1 += w.y * (fv - pv1);
        a2 += w.z * (fv - pv2);
        a3 += w.w * (fv - pv3);
    }
    store4(j0 * p.d, k0, -a0);
    if (j0 + 1u < p.c) { store4((j0 + 1u) * p.d, k0, -a1); }
    if (j0 + 2u < p.c) { store4((j0 + 2u) * p.d, k0, -a2); }
    if (j0 + 3u < p.c) { store4((j0 + 3u) * p.d, k0, -a3); }
}

// ---------------------------------------------------------------------------------------
// Normalized variants: u = x / max(|x|, eps) per row, then the fused distance above, then
// d = |s| * scale * r.

// One invocation per row of in1 = x [n, D]: out2 = u [n, D], out3 = |x| (unclamped) [n].
@compute @workgroup_size(WG)
fn row_normalize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat(gid, nwg);
    if (t >= p.n) { return; }
    let base = t * p.d;
    var s = 0.0;
    for (var k = 0u; k < p.d; k++) {
        let v = in1[base + k];
        s += v * v;
    }
    let n = sqrt(s);
    out3[t] = n;
    let den = max(n, NORM_EPS);
    for (var k = 0u; k < p.d; k++) {
        out2[base + k] = in1[base + k] / den;
    }
}

// Backward of row_normalize, one invocation per row: in1 = u, in2 = |x| [n], in3 = grad_u,
// out4 = grad_x = (g - u (u.g)) / |x|, or g / eps where the clamp was active (clamp_min
// passes no gradient to the norm there).
@compute @workgroup_size(WG)
fn row_normalize_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat(gid, nwg);
    if (t >= p.n) { return; }
    let base = t * p.d;
    let n = in2[t];
    if (n >= NORM_EPS) {
        var dot = 0.0;
        for (var k = 0u; k < p.d; k++) {
            dot += in1[base + k] * in3[base + k];
        }
        for (var k = 0u; k < p.d; k++) {
            out4[base + k] = (in3[base + k] - in1[base + k] * dot) / n;
        }
    } else {
        for (var k = 0u; k < p.d; k++) {
            out4[base + k] = in3[base + k] / NORM_EPS;
        }
    }
}

// out3 = in1 * |in2[0]| * scale over n elements (the learnable scale s stays on the GPU).
@compute @workgroup_size(WG)
fn abs_scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    out3[i] = in1[i] * (abs(in2[0]) * p.scale);
}

// Per-row partial of grad_s: out3[i] = sum_j g[i, j] r[i, j]; in1 = g, in2 = r, [B, C].
@compute @workgroup_size(WG)
fn abs_scale_partial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.b) { return; }
    var acc = 0.0;
    for (var j = 0u; j < p.c; j++) {
        acc += in1[i * p.c + j] * in2[i * p.c + j];
    }
    out3[i] = acc;
}

// grad_s = sign(s) * scale * sum_i partial[i]: in1 = partial [B], in2 = s [1], out3 [1].
// One invocation, rows in order (deterministic).
@compute @workgroup_size(1)
fn abs_scale_final(@builtin(global_invocation_id) gid: vec3<u32>) {
    var acc = 0.0;
    for (var i = 0u; i < p.b; i++) {
        acc += in1[i];
    }
    out3[0] = sign(in2[0]) * p.scale * acc;
}

// DisMax logits, one invocation per row: out2 = scale * (x + mean_row(x)); scale = -1.
// The map is symmetric, so the same entry computes its own backward.
@compute @workgroup_size(WG)
fn add_row_mean(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.b) { return; }
    let base = i * p.c;
    var s = 0.0;
    for (var j = 0u; j < p.c; j++) {
        s += in1[base + j];
    }
    let mean = s / f32(p.c);
    for (var j = 0u; j < p.c; j++) {
        out2[base + j] = p.scale * (in1[base + j] + mean);
    }
}

// ---------------------------------------------------------------------------------------
// Softmax entropy, one invocation per row. in1 = z [B, C], in2 = labels [B] (f32 class
// ids, clamped into [0, C-1] so a bad label cannot read out of bounds), scale = E_s.
// out3 = softmax(z) [B, C] at scale 1, out4 = scores [B, 8]
// (mps, es, mds, energy, max_logit, mmls, mmles, prediction), out5 = per-row loss
// -log softmax(scale z)[y] [B].

fn label(i: u32) -> u32 {
    return min(u32(max(in2[i], 0.0)), p.c - 1u);
}

// log(1 + x) for x >= 0, accurate in relative terms for small x: losses near 0 and
// confident rows' log-probabilities need it, and software `log` is only accurate in
// absolute terms near 1. Below 1/4 it uses 2 atanh(t), t = x / (2 + x), whose odd series
// to t^9 is exact to ~1e-10 relative; above, log(1 + x) >= 0.22 so plain log is enough.
fn log1p(x: f32) -> f32 {
    if (x >= 0.25) { return log(1.0 + x); }
    let t = x / (2.0 + x);
    let t2 = t * t;
    return 2.0 * t * (1.0 + t2 * (1.0 / 3.0 + t2 * (0.2 + t2 * (1.0 / 7.0 + t2 / 9.0))));
}

// Row max of scale z and the sums of exp(scale z - max): all terms, and all but label y's.
// Returns (max, sum, sum without y).
fn scaled_sums(base: u32, y: u32, s: f32) -> vec3<f32> {
    var ms = s * in1[base];
    for (var j = 1u; j < p.c; j++) {
        ms = max(ms, s * in1[base + j]);
    }
    var ss = 0.0;
    var rest = 0.0;
    for (var j = 0u; j < p.c; j++) {
        let e = exp(s * in1[base + j] - ms);
        ss += e;
        if (j != y) { rest += e; }
    }
    return vec3<f32>(ms, ss, rest);
}

@compute @workgroup_size(WG)
fn softmax_entropy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.b) { return; }
    let base = i * p.c;
    let y = label(i);
    var m = in1[base];
    var arg = 0u;
    var sum = 0.0;
    for (var j = 0u; j < p.c; j++) {
        let v = in1[base + j];
        if (v > m) { m = v; arg = j; }
        sum += v;
    }
    // Scale 1: log Σ exp(z - m) = log1p(Σ_{j≠argmax} exp(z_j - m)), exact for confident rows.
    var rest = 0.0;
    for (var j = 0u; j < p.c; j++) {
        if (j != arg) { rest += exp(in1[base + j] - m); }
    }
    let lsr = log1p(rest);
    var es = 0.0;
    for (var j = 0u; j < p.c; j++) {
        let lp = (in1[base + j] - m) - lsr;
        let pr = exp(lp);
        out3[base + j] = pr;
        // 0 log 0 = 0 for probabilities that underflow.
        if (pr > 0.0) { es += pr * lp; }
    }
    let mean = sum / f32(p.c);
    let o = i * 8u;
    out4[o] = exp(-lsr);
    out4[o + 1u] = es;
    out4[o + 2u] = m;
    out4[o + 3u] = m + lsr;
    out4[o + 4u] = m;
    out4[o + 5u] = m + mean;
    out4[o + 6u] = m + mean + es;
    out4[o + 7u] = f32(arg);
    // Scale E_s: -log p_y = log(1 + rest_y / e_y), accurate as the loss goes to 0; when
    // e_y < 1/2 the loss exceeds log 2 and the plain max-shifted form is exact enough
    // (and stays finite if e_y underflows).
    let t = scaled_sums(base, y, p.scale);
    let gap = t.x - p.scale * in1[base + y];
    let ey = exp(-gap);
    out5[i] = select(gap + log(t.y), log1p(t.z / ey), ey >= 0.5);
}

// Backward, one invocation per row: in1 = z, in2 = labels, in3 = grad of the mean loss [1],
// out4 = grad_z = scale (softmax(scale z) - onehot(y)) * inv_b * g, inv_b = 1/B. The label's
// entry p_y - 1 = -(Σ_{j≠y} e_j) / Σ e_j avoids cancellation when p_y ≈ 1.
@compute @workgroup_size(WG)
fn softmax_entropy_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.b) { return; }
    let base = i * p.c;
    let y = label(i);
    let s = p.scale;
    let t = scaled_sums(base, y, s);
    let k = s * p.inv_b * in3[0];
    for (var j = 0u; j < p.c; j++) {
        let pr = exp(s * in1[base + j] - t.x) / t.y;
        out4[base + j] = k * select(pr, -t.z / t.y, j == y);
    }
}
