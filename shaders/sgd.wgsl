// SGD with momentum, Nesterov and weight decay, in place on one parameter (PyTorch's rule):
//   d = g + wd·p;  v = μ·v + d;  step = nesterov ? d + μ·v : v;  p -= lr·step

struct Params {
    n: u32,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    nesterov: u32,
};

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read_write> velocity: array<f32>;

@compute @workgroup_size(256)
fn sgd_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let d = grad[i] + p.weight_decay * param[i];
    let v = p.momentum * velocity[i] + d;
    velocity[i] = v;
    var step = v;
    if (p.nesterov == 1u) { step = d + p.momentum * v; }
    param[i] = param[i] - p.lr * step;
}
