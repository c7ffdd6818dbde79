// 2-D convolution (NCHW, weights [OC, C, KH, KW]) as three implicit GEMMs.
//
// Every invocation keeps a register tile of TM rows x (4 * TNV) columns in vec4
// accumulators and sums in a fixed order: no atomics, no workgroup memory, no barriers
// (barriers are very slow on llvmpipe/lavapipe). The row tile is uniform across a
// workgroup (workgroup_id.y), so the weight (or dY) loads of a row are the same address
// in every lane; the columns vary across lanes. TM, TNV and WG are pipeline overrides so
// each adapter can pick its own shape (TM <= 8, TNV <= 2).

struct Params {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    oc: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    tiles: u32,   // forward / backward_data: column tiles per row
    chunk: u32,   // backward_weight: (n, oh) rows per split
};

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

override TM: u32 = 4u;
override TNV: u32 = 1u;
override WG: u32 = 64u;

// Forward: a = x, b = weight, out = y.
// Rows are output channels; columns are TN = 4*TNV consecutive `ow` of one (n, oh) row,
// so the input row `ih` (and its bounds check) is shared by the whole tile.
@compute @workgroup_size(WG)
fn forward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let t = gid.x + wid.z * nwg.x * WG;
    if (t >= p.n * p.oh * p.tiles) { return; }
    let tn = 4u * TNV;
    let row = t / p.tiles;
    let ow0 = (t % p.tiles) * tn;
    let n = row / p.oh;
    let oh = row % p.oh;
    let oc0 = wid.y * TM;
    let kk = p.c * p.kh * p.kw;
    let hw = p.h * p.w;
    let s = i32(p.stride);
    let iw0 = i32(ow0) * s - i32(p.pad);
    let ih0 = i32(oh) * s - i32(p.pad);

    // Weight rows past OC are clamped to a valid row; their results are never written.
    var wrow: array<u32, 8>;
    for (var i = 0u; i < TM; i++) { wrow[i] = min(oc0 + i, p.oc - 1u) * kk; }
    var acc: array<vec4<f32>, 16>;
    for (var i = 0u; i < TM * TNV; i++) { acc[i] = vec4<f32>(0.0); }

    var k = 0u;
    var xbase = n * p.c * hw;
    for (var c = 0u; c < p.c; c++) {
        for (var kh = 0u; kh < p.kh; kh++) {
            let ih = ih0 + i32(kh);
            if (ih < 0 || ih >= i32(p.h)) {
                k += p.kw;
                continue;
            }
            let rowbase = i32(xbase) + ih * i32(p.w);
            for (var kw = 0u; kw < p.kw; kw++) {
                var xv: array<vec4<f32>, 2>;
                for (var v = 0u; v < TNV; v++) {
                    var q = vec4<f32>(0.0);
                    for (var j = 0u; j < 4u; j++) {
                        let iw = iw0 + i32(kw) + i32(v * 4u + j) * s;
                        let ok = u32(iw) < p.w;
                        q[j] = select(0.0, a[select(0u, u32(rowbase + iw), ok)], ok);
                    }
                    xv[v] = q;
                }
                for (var i = 0u; i < TM; i++) {
                    let wv = b[wrow[i] + k];
                    for (var v = 0u; v < TNV; v++) { acc[i * TNV + v] += wv * xv[v]; }
                }
                k += 1u;
            }
        }
        xbase += hw;
    }

    let ohw = p.oh * p.ow;
    for (var i = 0u; i < TM; i++) {
        let oc = oc0 + i;
        if (oc >= p.oc) { break; }
        let base = (n * p.oc + oc) * ohw + oh * p.ow;
        for (var v = 0u; v < TNV; v++) {
            for (var j = 0u; j < 4u; j++) {
                let ow = ow0 + v * 4u + j;
                if (ow < p.ow) { out[base + ow] = acc[i * TNV + v][j]; }
            }
        }
    }
}

// Backward data: a = dY, b = weight, out = dX.
// Rows are input channels. Columns of one tile share (n, ih) and the residue r = iw mod s:
// iw = r + s * (q0 + j). Then only kh = (ih + pad) mod s (+ s, + 2s...) and
// kw = (r + pad) mod s (+ s...) contribute, for the whole tile, and the dY columns they
// read are consecutive: ow = (r + pad - kw) / s + q0 + j.
@compute @workgroup_size(WG)
fn backward_data(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let t = gid.x + wid.z * nwg.x * WG;
    let s = p.stride;
    if (t >= p.n * p.h * s * p.tiles) { return; }
    let tn = 4u * TNV;
    let row = t / p.tiles;
    let q0 = (t % p.tiles) * tn;
    let r = row % s;
    let ih = (row / s) % p.h;
    let n = row / (s * p.h);
    let c0 = wid.y * TM;
    let khw = p.kh * p.kw;
    let ohw = p.oh * p.ow;

    var wrow: array<u32, 8>;
    for (var i = 0u; i < TM; i++) { wrow[i] = min(c0 + i, p.c - 1u) * khw; }
    var acc: array<vec4<f32>, 16>;
    for (var i = 0u; i < TM * TNV; i++) { acc[i] = vec4<f32>(0.0); }

    let kh_start = (ih + p.pad) % s;
    let kw_start = (r + p.pad) % s;
    var dybase = n * p.oc * ohw;
    var wbase = 0u;
    for (var oc = 0u; oc < p.oc; oc++) {
        for (var kh = kh_start; kh < p.kh; kh += s) {
            if (kh > ih + p.pad) { break; }
            let oh = (ih + p.pad - kh) / s;
            if (oh >= p.oh) { continue; }
            let rowbase = dybase + oh * p.ow;
            for (var kw = kw_start; kw < p.kw; kw += s) {
                let ow0 = (i32(r + p.pad) - i32(kw)) / i32(s) + i32(q0);
                var dv: array<vec4<f32>, 2>;
                for (var v = 0u; v < TNV; v++) {
                    var q = vec4<f32>(0.0);
                    for (var j = 0u; j < 4u; j++) {
                        let ow = ow0 + i32(v * 4u + j);
                        let ok = u32(ow) < p.ow;
                        q[j] = select(0.0, a[select(0u, rowbase + u32(ow), ok)], ok);
                    }
                    dv[v] = q;
                }
                let koff = wbase + kh * p.kw + kw;
                for (var i = 0u; i < TM; i++) {
                    let wv = b[wrow[i] + koff];
                    for (var v = 0u; v < TNV; v++) { acc[i * TNV + v] += wv * dv[v]; }
                }
            }
        }
        dybase += ohw;
        wbase += p.c * khw;
    }

    let hw = p.h * p.w;
    for (var i = 0u; i < TM; i++) {
        let c = c0 + i;
        if (c >= p.c) { break; }
        let base = (n * p.c + c) * hw + ih * p.w;
        for (var v = 0u; v < TNV; v++) {
            for (var j = 0u; j < 4u; j++) {
                let iw = r + s * (q0 + v * 4u + j);
                if (iw < p.w) { out[base + iw] = acc[i * TNV + v][j]; }
            }
        }
    }
}

// Backward weight: a = dY, b = x, out = dW [OC, K] (or split partials [S, OC, K], summed
// afterwards in a fixed order). Rows are output channels, columns are TN consecutive
// k = (c, kh, kw); the invocation loops over the (n, oh) rows of its split and all ow.
@compute @workgroup_size(WG)
fn backward_weight(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let tn = 4u * TNV;
    let khw = p.kh * p.kw;
    let kk = p.c * khw;
    let k0 = gid.x * tn;
    if (k0 >= kk) { return; }
    let oc0 = wid.y * TM;
    let split = wid.z;
    let hw = p.h * p.w;
    let ohw = p.oh * p.ow;
    let s = i32(p.stride);
    let pad = i32(p.pad);

    var xoff: array<u32, 8>;
    var khs: array<i32, 8>;
    var kws: array<i32, 8>;
    for (var j = 0u; j < tn; j++) {
        let k = min(k0 + j, kk - 1u);
        let rem = k % khw;
        xoff[j] = (k / khw) * hw;
        khs[j] = i32(rem / p.kw) - pad;
        kws[j] = i32(rem % p.kw) - pad;
    }
    var dyrow: array<u32, 8>;
    for (var i = 0u; i < TM; i++) { dyrow[i] = min(oc0 + i, p.oc - 1u) * ohw; }
    var acc: array<vec4<f32>, 16>;
    for (var i = 0u; i < TM * TNV; i++) { acc[i] = vec4<f32>(0.0); }

    let rbeg = split * p.chunk;
    let rend = min(rbeg + p.chunk, p.n * p.oh);
    for (var row = rbeg; row < rend; row++) {
        let n = row / p.oh;
        let oh = row % p.oh;
        var rbase: array<i32, 8>;
        var rok: array<bool, 8>;
        var iw: array<i32, 8>;
        for (var j = 0u; j < tn; j++) {
            let ih = i32(oh) * s + khs[j];
            rok[j] = u32(ih) < p.h;
            rbase[j] = i32(n * p.c * hw + xoff[j]) + ih * i32(p.w);
            iw[j] = kws[j];
        }
        let dyb = n * p.oc * ohw + oh * p.ow;
        for (var ow = 0u; ow < p.ow; ow++) {
            var xv: array<vec4<f32>, 2>;
            for (var v = 0u; v < TNV; v++) {
                var q = vec4<f32>(0.0);
                for (var j = 0u; j < 4u; j++) {
                    let jj = v * 4u + j;
                    let ok = rok[jj] && u32(iw[jj]) < p.w;
                    q[j] = select(0.0, b[select(0u, u32(rbase[jj] + iw[jj]), ok)], ok);
                    iw[jj] += s;
                }
                xv[v] = q;
            }
            for (var i = 0u; i < TM; i++) {
                let dv = a[dyb + dyrow[i] + ow];
                for (var v = 0u; v < TNV; v++) { acc[i * TNV + v] += dv * xv[v]; }
            }
        }
    }

    let obase = split * p.oc * kk;
    for (var i = 0u; i < TM; i++) {
        let oc = oc0 + i;
        if (oc >= p.oc) { break; }
        for (var v = 0u; v < TNV; v++) {
            for (var j = 0u; j < 4u; j++) {
                let k = k0 + v * 4u + j;
                if (k < kk) { out[obase + oc * kk + k] = acc[i * TNV + v][j]; }
            }
        }
    }
}
