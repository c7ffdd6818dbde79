// Max and average pooling over [N, C, H, W] (planes = N * C) and their gradients.
// Backward passes gather: one invocation per input element sums, in a fixed order, the
// output gradients of the windows that cover it (no atomics, deterministic).

struct Params {
    planes: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    k: u32,
    stride: u32,
    pad: u32,
    scale: f32,   // average pooling: 1 / k^2
};

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
// max_forward: out, argmax; avg_*: out at binding 2.
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> arg_out: array<u32>;
// max_backward: argmax at binding 2, dX at binding 3.
@group(0) @binding(2) var<storage, read> arg_in: array<u32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

// Output rows/cols whose window covers input row/col `i`: [lo, hi).
fn covering(i: u32, n_out: u32) -> vec2<u32> {
    let top = i + p.pad;
    var lo = 0u;
    if (top + 1u > p.k) { lo = (top + 1u - p.k + p.stride - 1u) / p.stride; }
    let hi = min(top / p.stride + 1u, n_out);
    return vec2<u32>(lo, max(hi, lo));
}

// out = max over the window (padding never wins); arg_out = the winner's index in its
// plane (ih * W + iw), first in scan order on ties.
@compute @workgroup_size(256)
fn max_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    let ohw = p.oh * p.ow;
    if (i >= p.planes * ohw) { return; }
    let plane = i / ohw;
    let oy = (i % ohw) / p.ow;
    let ox = i % p.ow;
    let base = plane * p.h * p.w;
    var best = -3.402823e38;
    var arg = 0xffffffffu;
    for (var ky = 0u; ky < p.k; ky++) {
        let iy = i32(oy * p.stride + ky) - i32(p.pad);
        if (iy < 0 || iy >= i32(p.h)) { continue; }
        for (var kx = 0u; kx < p.k; kx++) {
            let ix = i32(ox * p.stride + kx) - i32(p.pad);
            if (ix < 0 || ix >= i32(p.w)) { continue; }
            let j = u32(iy) * p.w + u32(ix);
            let v = a[base + j];
            if (arg == 0xffffffffu || v > best) {
                best = v;
                arg = j;
            }
        }
    }
    out[i] = best;
    arg_out[i] = arg;
}

// dx[n, c, ih, iw] = sum of dY over the windows whose argmax is this element.
@compute @workgroup_size(256)
fn max_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    let hw = p.h * p.w;
    if (i >= p.planes * hw) { return; }
    let plane = i / hw;
    let j = i % hw;
    let ry = covering(j / p.w, p.oh);
    let rx = covering(j % p.w, p.ow);
    let obase = plane * p.oh * p.ow;
    var acc = 0.0;
    for (var oy = ry.x; oy < ry.y; oy++) {
        for (var ox = rx.x; ox < rx.y; ox++) {
            let o = obase + oy * p.ow + ox;
            if (arg_in[o] == j) { acc += a[o]; }
        }
    }
    dx[i] = acc;
}

// out = mean over the k x k window (no padding).
@compute @workgroup_size(256)
fn avg_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    let ohw = p.oh * p.ow;
    if (i >= p.planes * ohw) { return; }
    let plane = i / ohw;
    let oy = (i % ohw) / p.ow;
    let ox = i % p.ow;
    var row = plane * p.h * p.w + oy * p.stride * p.w + ox * p.stride;
    var acc = 0.0;
    for (var ky = 0u; ky < p.k; ky++) {
        for (var kx = 0u; kx < p.k; kx++) { acc += a[row + kx]; }
        row += p.w;
    }
    out[i] = acc * p.scale;
}

// dx = sum of dY / k^2 over the windows covering the element.
@compute @workgroup_size(256)
fn avg_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    let hw = p.h * p.w;
    if (i >= p.planes * hw) { return; }
    let plane = i / hw;
    let j = i % hw;
    let ry = covering(j / p.w, p.oh);
    let rx = covering(j % p.w, p.ow);
    let obase = plane * p.oh * p.ow;
    var acc = 0.0;
    for (var oy = ry.x; oy < ry.y; oy++) {
        for (var ox = rx.x; ox < rx.y; ox++) { acc += a[obase + oy * p.ow + ox]; }
    }
    out[i] = acc * p.scale;
}

// Average pooling whose windows tile the input exactly (stride = k, no padding, H = OH·k,
// W = OW·k; DenseNet's transitions): one invocation per output element, grid (output
// position, plane), one division each. The forward sums in the same order as avg_forward;
// the backward spreads dY·scale over the window (the one window covering each element),
// so both give avg_forward's / avg_backward's values exactly.
fn tiled_origin(i: u32, plane: u32) -> u32 {
    let oy = i / p.ow;
    let ox = i - oy * p.ow;
    return (plane * p.h + oy * p.k) * p.w + ox * p.k;
}

@compute @workgroup_size(64)
fn avg_forward_tiled(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.oh * p.ow) { return; }
    var row = tiled_origin(gid.x, gid.y);
    var acc = 0.0;
    for (var ky = 0u; ky < p.k; ky++) {
        for (var kx = 0u; kx < p.k; kx++) { acc += a[row + kx]; }
        row += p.w;
    }
    out[gid.y * p.oh * p.ow + gid.x] = acc * p.scale;
}

@compute @workgroup_size(64)
fn avg_backward_tiled(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.oh * p.ow) { return; }
    let v = (0.0 + a[gid.y * p.oh * p.ow + gid.x]) * p.scale;
    var row = tiled_origin(gid.x, gid.y);
    for (var ky = 0u; ky < p.k; ky++) {
        for (var kx = 0u; kx < p.k; kx++) { out[row + kx] = v; }
        row += p.w;
    }
}
