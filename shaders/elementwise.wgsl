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

// ---- flat ops: out[i] = op(a[i], b[i]) ----
// Each op is written once on vec4s, with two entry points: `NAME` (one element per
// invocation, `op(vec4(a[i]), vec4(b[i])).x`) and `NAME_vec4` (four elements per
// invocation, used when the length is a multiple of 4: on llvmpipe every storage access is
// a loop over the SIMD lanes, so one vec4 costs far less than four scalars). Unary ops
// ignore `b` and write `out1`.
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out1_4: array<vec4<f32>>;

// alpha * a + beta * b
fn axpby_op(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> { return p.alpha * a + p.beta * b; }

// a * b
fn mul_op(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> { return a * b; }

// max(a, 0)
fn relu_op(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> { return max(a, vec4<f32>(0.0)); }

// alpha * a + beta
fn affine_op(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> { return p.alpha * a + p.beta; }

// b where a > 0 else 0   (ReLU backward: a = forward output, b = output gradient)
fn relu_backward_op(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
    return select(vec4<f32>(0.0), b, a > vec4<f32>(0.0));
}

// sqrt(a)
fn sqrt_fwd_op(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> { return sqrt(a); }

// b / (2 a) where a > 0 else 0   (sqrt backward: a = forward output, b = output gradient;
// 0 at sqrt(0) is the subgradient convention of the distance heads, never inf/NaN)
fn sqrt_backward_op(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
    return select(vec4<f32>(0.0), 0.5 * b / a, a > vec4<f32>(0.0));
}

// ---- entry points of the flat ops ----

@compute @workgroup_size(256)
fn axpby(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = axpby_op(vec4<f32>(a[i]), vec4<f32>(b[i])).x;
}

@compute @workgroup_size(256)
fn axpby_vec4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n / 4u) { return; }
    out4[i] = axpby_op(a4[i], vec4<f32>(b4[i]));
}

@compute @workgroup_size(256)
fn mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = mul_op(vec4<f32>(a[i]), vec4<f32>(b[i])).x;
}

@compute @workgroup_size(256)
fn mul_vec4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n / 4u) { return; }
    out4[i] = mul_op(a4[i], vec4<f32>(b4[i]));
}

@compute @workgroup_size(256)
fn relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out1[i] = relu_op(vec4<f32>(a[i]), vec4<f32>(0.0)).x;
}

@compute @workgroup_size(256)
fn relu_vec4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n / 4u) { return; }
    out1_4[i] = relu_op(a4[i], vec4<f32>(0.0));
}

@compute @workgroup_size(256)
fn affine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out1[i] = affine_op(vec4<f32>(a[i]), vec4<f32>(0.0)).x;
}

@compute @workgroup_size(256)
fn affine_vec4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n / 4u) { return; }
    out1_4[i] = affine_op(a4[i], vec4<f32>(0.0));
}

@compute @workgroup_size(256)
fn relu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = relu_backward_op(vec4<f32>(a[i]), vec4<f32>(b[i])).x;
}

@compute @workgroup_size(256)
fn relu_backward_vec4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n / 4u) { return; }
    out4[i] = relu_backward_op(a4[i], vec4<f32>(b4[i]));
}

@compute @workgroup_size(256)
fn sqrt_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out1[i] = sqrt_fwd_op(vec4<f32>(a[i]), vec4<f32>(0.0)).x;
}

@compute @workgroup_size(256)
fn sqrt_fwd_vec4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n / 4u) { return; }
    out1_4[i] = sqrt_fwd_op(a4[i], vec4<f32>(0.0));
}

@compute @workgroup_size(256)
fn sqrt_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = sqrt_backward_op(vec4<f32>(a[i]), vec4<f32>(b[i])).x;
}

@compute @workgroup_size(256)
fn sqrt_backward_vec4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n / 4u) { return; }
    out4[i] = sqrt_backward_op(a4[i], vec4<f32>(b4[i]));
}
