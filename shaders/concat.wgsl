// Channel copies between [N, C, HW] tensors: concatenation along channels and its inverse
// (slicing). dst[n, dst_off + c, i] = src[n, src_off + c, i] for c < channels.

struct Params {
    n: u32,
    hw: u32,
    channels: u32,
    src_c: u32,
    src_off: u32,
    dst_c: u32,
    dst_off: u32,
};

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn copy_channels(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 256u;
    if (idx >= p.n * p.channels * p.hw) { return; }
    let i = idx % p.hw;
    let c = (idx / p.hw) % p.channels;
    let n = idx / (p.hw * p.channels);
    dst[(n * p.dst_c + p.dst_off + c) * p.hw + i] = src[(n * p.src_c + p.src_off + c) * p.hw + i];
}
