// Channel copies between [N, C, HW] tensors: concatenation along channels and its inverse
// (slicing). dst[n, dst_off + c, i] = src[n, src_off + c, i] for c < channels.
// The planar kernels run over (position, channel, sample) with no division by a runtime
// value (scalarised per lane on llvmpipe); with HW a multiple of 4, four positions per
// invocation as vec4s. copy_channels (flat index) covers grids past the 65535 limit.

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

// gid = (position, channel, sample).
@compute @workgroup_size(64)
fn copy_planes(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.hw) { return; }
    let d = (gid.z * p.dst_c + p.dst_off + gid.y) * p.hw;
    let s = (gid.z * p.src_c + p.src_off + gid.y) * p.hw;
    dst[d + gid.x] = src[s + gid.x];
}

@group(0) @binding(1) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst4: array<vec4<f32>>;

// HW a multiple of 4: gid.x counts vec4s of a plane.
@compute @workgroup_size(64)
fn copy_planes_vec4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let hw4 = p.hw / 4u;
    if (gid.x >= hw4) { return; }
    let d = (gid.z * p.dst_c + p.dst_off + gid.y) * hw4;
    let s = (gid.z * p.src_c + p.src_off + gid.y) * hw4;
    dst4[d + gid.x] = src4[s + gid.x];
}
