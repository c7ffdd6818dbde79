// The embedding path's pre- and post-processing (src/ops/preprocess.rs): a host's pixels
// (packed RGBA8 texels, or NCHW f32 in [0, 1]) to the model's normalised NCHW input, and
// the per-image decision from the fused head's score rows.
//
// `norm` is a [3, C] table per model channel c: norm[c] = 1 / (255 std) (scale of a
// 0..255 value), norm[C + c] = -mean / std (shift), norm[2C + c] = 1 / std (scale of a
// 0..1 value). The 0..255 form is exactly the CPU path's arithmetic (data::augment).

struct Params {
    n: u32,          // output elements (rgba8_to_nchw, normalize_nchw)
    channels: u32,   // model channels C
    out_h: u32,      // model height
    out_w: u32,      // model width
    in_h: u32,       // texel rows per image
    in_w: u32,       // texels per row
    rows: u32,       // decide: rows of scores
    threshold: f32,  // decide: ES threshold
    has_threshold: u32,
};

@group(0) @binding(0) var<uniform> p: Params;
// rgba8_to_nchw: texels, norm -> out
@group(0) @binding(1) var<storage, read> texels: array<u32>;
// normalize_nchw: x, norm -> out; decide: x (scores [B, 8]) -> out2 (results [B, 4])
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> norm: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> out2: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

// Channel c of one texel as a 0..255 value. A 1-channel model gets ITU-R 601 luma,
// rounded to an integer as the CPU path's 8-bit gray conversion does (so both agree).
fn channel_value(t: u32, c: u32) -> f32 {
    if (p.channels == 1u) {
        let r = f32(t & 0xffu);
        let g = f32((t >> 8u) & 0xffu);
        let b = f32((t >> 16u) & 0xffu);
        return floor(0.299 * r + 0.587 * g + 0.114 * b + 0.5);
    }
    return f32((t >> (8u * c)) & 0xffu);
}

fn texel_value(img: u32, y: u32, x: u32, c: u32) -> f32 {
    return channel_value(texels[(img * p.in_h + y) * p.in_w + x], c);
}

// One invocation per output element [n, C, out_h, out_w]. When the sizes differ:
// bilinear with pixel centres at +0.5 and edges clamped, like a texture sampler.
@compute @workgroup_size(256)
fn rgba8_to_nchw(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    let ox = i % p.out_w;
    let oy = (i / p.out_w) % p.out_h;
    let c = (i / (p.out_w * p.out_h)) % p.channels;
    let img = i / (p.out_w * p.out_h * p.channels);
    var v: f32;
    if (p.in_h == p.out_h && p.in_w == p.out_w) {
        v = texel_value(img, oy, ox, c);
    } else {
        let sy = clamp((f32(oy) + 0.5) * f32(p.in_h) / f32(p.out_h) - 0.5, 0.0, f32(p.in_h - 1u));
        let sx = clamp((f32(ox) + 0.5) * f32(p.in_w) / f32(p.out_w) - 0.5, 0.0, f32(p.in_w - 1u));
        let y0 = u32(floor(sy));
        let x0 = u32(floor(sx));
        let y1 = min(y0 + 1u, p.in_h - 1u);
        let x1 = min(x0 + 1u, p.in_w - 1u);
        let fy = sy - f32(y0);
        let fx = sx - f32(x0);
        let top = texel_value(img, y0, x0, c) * (1.0 - fx) + texel_value(img, y0, x1, c) * fx;
        let bottom = texel_value(img, y1, x0, c) * (1.0 - fx) + texel_value(img, y1, x1, c) * fx;
        v = top * (1.0 - fy) + bottom * fy;
    }
    out[i] = v * norm[c] + norm[p.channels + c];
}

// out = (x - mean) / std per channel, for NCHW f32 pixels in [0, 1].
@compute @workgroup_size(256)
fn normalize_nchw(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    let c = (i / (p.out_w * p.out_h)) % p.channels;
    out[i] = x[i] * norm[2u * p.channels + c] + norm[p.channels + c];
}

// One invocation per row: [class, max probability, ES, in-distribution 1/0] from the score
// row [mps, es, mds, energy, max_logit, mmls, mmles, prediction]. Without a threshold
// every image counts as in-distribution.
@compute @workgroup_size(64)
fn decide(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.rows) { return; }
    let es = x[i * 8u + 1u];
    let inside = p.has_threshold == 0u || es >= p.threshold;
    out2[i * 4u] = x[i * 8u + 7u];
    out2[i * 4u + 1u] = x[i * 8u];
    out2[i * 4u + 2u] = es;
    out2[i * 4u + 3u] = select(0.0, 1.0, inside);
}
