// Elementwise ops and their gradients. One invocation per element; 2-D dispatch for
// large tensors (index = gid.x + gid.y * num_workgroups.x * 256).

struct Params {
    n: u32,        // elements
    inner: u32,    // broadcast: size of the axes after the broadcast axis
    c: u32,        // broadcast: size of the broadcast axis
    alpha: f32,    // scale / first coefficient
    beta: f32,     // second coefficient
};

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// Unary kernels bind `a` then `out1` at binding 2.
@group(0) @binding(2) var<storage, read_write> out1: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

// out = alpha * a + beta * b
@compute @workgroup_size(256)
fn axpby(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = p.alpha * a[i] + p.beta * b[i];
}

// out = a * b
@compute @workgroup_size(256)
fn mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = a[i] * b[i];
}

// out = a + b[(i / inner) % c]   (bias over rows or channels)
@compute @workgroup_size(256)
fn add_broadcast(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = a[i] + b[(i / p.inner) % p.c];
}

// out = a * b[(i / inner) % c]   (per-channel scale)
@compute @workgroup_size(256)
fn mul_broadcast(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = a[i] * b[(i / p.inner) % p.c];
}

// out = max(a, 0) * alpha + beta   (alpha = 1, beta = 0 for ReLU; relu=0 -> plain affine)
@compute @workgroup_size(256)
fn relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out1[i] = max(a[i], 0.0);
}

// out = alpha * a + beta
@compute @workgroup_size(256)
fn affine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out1[i] = p.alpha * a[i] + p.beta;
}

// out = b where a > 0 else 0   (ReLU backward: a = forward output, b = output gradient)
@compute @workgroup_size(256)
fn relu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = select(0.0, b[i], a[i] > 0.0);
}

// out = sqrt(a)
@compute @workgroup_size(256)
fn sqrt_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out1[i] = sqrt(a[i]);
}

// out = b / (2 a) where a > 0 else 0   (sqrt backward: a = forward output, b = output
// gradient; 0 at sqrt(0) is the subgradient convention of the distance heads, never inf/NaN)
@compute @workgroup_size(256)
fn sqrt_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = select(0.0, 0.5 * b[i] / a[i], a[i] > 0.0);
}
