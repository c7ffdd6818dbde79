// SGD with momentum, Nesterov and weight decay, in place (PyTorch's rule):
//   d = g + wd·p;  v = μ·v + d;  step = nesterov ? d + μ·v : v;  p -= lr·step
// Two parameters per dispatch (elements [0, n) of the first, then [0, n1) of the second;
// n1 = 0: one): a training step's many small updates cost half the dispatches.

struct Params {
    n: u32,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    nesterov: u32,
    n1: u32,
};

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad0: array<f32>;
@group(0) @binding(2) var<storage, read> grad1: array<f32>;
@group(0) @binding(3) var<storage, read_write> param0: array<f32>;
@group(0) @binding(4) var<storage, read_write> velocity0: array<f32>;
@group(0) @binding(5) var<storage, read_write> param1: array<f32>;
@group(0) @binding(6) var<storage, read_write> velocity1: array<f32>;

// (new velocity, new parameter) from the gradient, parameter and velocity.
fn update(g: f32, w: f32, v0: f32) -> vec2<f32> {
    let d = g + p.weight_decay * w;
    let v = p.momentum * v0 + d;
    let step = select(v, d + p.momentum * v, p.nesterov == 1u);
    return vec2<f32>(v, w - p.lr * step);
}

@compute @workgroup_size(256)
fn sgd_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i < p.n) {
        let u = update(grad0[i], param0[i], velocity0[i]);
        velocity0[i] = u.x;
        param0[i] = u.y;
    } else if (i - p.n < p.n1) {
        let j = i - p.n;
        let u = update(grad1[j], param1[j], velocity1[j]);
        velocity1[j] = u.x;
        param1[j] = u.y;
    }
}
