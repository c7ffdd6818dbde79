// 2-D convolution (NCHW, weights [OC, C, KH, KW]) as three implicit GEMMs: forward,
// backward data and backward weight.
//
// The entry points are generated in Rust (src/ops/conv.rs) for each register tile of
// TM rows x TN columns, unrolled into scalars: function-local arrays indexed in loops end
// up in memory on llvmpipe. Every invocation sums in a fixed order: no atomics, no
// workgroup memory, no barriers (barriers are very slow on llvmpipe/lavapipe).
// Rows are uniform across a workgroup (workgroup_id.y), so the row operand (weights, or dY
// for backward weight) is the same for all lanes; columns are strided by WX across lanes.
// In the subgroup variants (one subgroup per workgroup, `sl` = lane) each lane loads a
// different row and subgroupBroadcast shares it: on llvmpipe every storage load is a loop
// over the SIMD lanes, so this replaces one load per lane by one per subgroup. Loops over
// the reduction are uniform too (no divergent `continue`, as subgroup operations need):
// taps outside the image are masked with `select`, never skipped per lane.

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
    kq: u32,      // forward, tiled backward data: vec4s per packed weight row (4·kq ≥ its k)
    c_tiles: u32, // backward data: channel tiles (workgroup_id.y = class · c_tiles + tile)
    chunk: u32,   // backward weight: (n, oh) rows per split (workgroup_id.z = split)
    xc: u32,      // direct kernels: channels per image of x's buffer (x may be a prefix)
};

// pack_rows' parameters.
struct PackParams {
    rows: u32,    // rows of the packed matrix
    k: u32,       // source entries per row
    kp: u32,      // packed row length: k rounded up to a multiple of 4, zero-filled
    flip: u32,    // 1: read a weight [k / taps, rows, taps] transposed, taps reversed
    taps: u32,    // KH·KW (flip only)
    group: u32,   // > 0: the k entries come in groups of `group` (≤ 4), each padded to 4
};

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

override WX: u32 = 64u;

// The forward kernel reads the weight as vec4s along k: on llvmpipe every storage load is
// a loop over the SIMD lanes, so one vec4 load costs far less than four scalar ones.
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
// Backward weight reads dY as vec4s along ow when OW is a multiple of 4.
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
// The direct forward kernel writes vec4s.
@group(0) @binding(3) var<storage, read_write> out4: array<vec4<f32>>;
// The direct kernels with AFFINE read x through relu(batch norm): (x − mean)·(γ/σ) + β with
// bn_stats = [mean; 1/σ] of x's first C channels; the output then moves to binding 6.
@group(0) @binding(3) var<storage, read> bn_stats: array<f32>;
@group(0) @binding(4) var<storage, read> bn_gamma: array<f32>;
@group(0) @binding(5) var<storage, read> bn_beta: array<f32>;
@group(0) @binding(6) var<storage, read_write> dst: array<f32>;
@group(0) @binding(6) var<storage, read_write> dst4: array<vec4<f32>>;

// x as read (`ACT` = keep4 without batch norm): 0 where `ok` is false (padding, channels
// past C). `bn` is unused; it keeps the signature of bn_relu4.
fn keep4(v: vec4<f32>, bn: vec3<f32>, ok: bool, lim: i32) -> vec4<f32> {
    return select(vec4<f32>(0.0), v, ok);
}

// Batch norm of channel c as (mean, 1/σ · γ, β): fetched once per channel, not per load
// (the backward-weight kernel's lanes hold different channels, so on llvmpipe each fetch
// is a gather).
fn bn_of(c: u32) -> vec3<f32> {
    let cc = min(c, p.c - 1u);
    return vec3<f32>(bn_stats[cc], bn_stats[p.c + cc] * bn_gamma[cc], bn_beta[cc]);
}

// relu(bn(v)) with channel c's batch norm `bn` (from bn_of), 0 where `ok` is false
// (padding, channels past C) and in lanes from `lim` on (columns a widened copy added:
// zero there, but relu(bn(0)) is not).
fn bn_relu4(v: vec4<f32>, bn: vec3<f32>, ok: bool, lim: i32) -> vec4<f32> {
    let y = max((v - vec4<f32>(bn.x)) * vec4<f32>(bn.y) + vec4<f32>(bn.z), vec4<f32>(0.0));
    let keep = vec4<bool>(ok && lim > 0, ok && lim > 1, ok && lim > 2, ok && lim > 3);
    return select(vec4<f32>(0.0), y, keep);
}
@group(0) @binding(2) var<storage, read_write> packed4: array<vec4<f32>>;

// packed[r, k] = a[r, k] for k < K, zero up to kp; `rows` rows. With flip = 1 the source is
// a weight [R', rows, T] (T = taps, R' = K / T) read transposed with its taps reversed:
// packed[r, (o, t)] = a[o, r, T - 1 - t] (the weight of the transposed convolution that
// gives backward data at stride 1). With group = G > 0 the row is read in groups of G
// entries (a kernel row of G taps), each padded with zeros to a vec4: packed[r, 4·g + j] =
// the entry g·G + j for j < G (the direct kernels' layout).
@group(0) @binding(0) var<uniform> pk: PackParams;

// One packed vec4 per invocation: the row and source are located once per vec4 and then
// stepped, not divided per entry (llvmpipe has no vector integer division: each one is a
// scalar division per lane, which made this copy cost 4 % of a ResNet-34 step).
@compute @workgroup_size(256)
fn pack_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    let q4 = pk.kp / 4u;
    if (i >= pk.rows * q4) { return; }
    let r = i / q4;
    let q = i % q4;
    // Source entries k0 .. k0 + n − 1 of row r fill lanes 0 .. n − 1.
    let n = select(4u, pk.group, pk.group > 0u);
    let k0 = q * n;
    let taps = max(pk.taps, 1u);
    var o = k0 / taps;
    var t = k0 % taps;
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < n; j++) {
        let k = k0 + j;
        if (k < pk.k) {
            var src = r * pk.k + k;
            if (pk.flip == 1u) { src = (o * pk.rows + r) * taps + (taps - 1u - t); }
            v[j] = a[src];
        }
        t += 1u;
        if (t == taps) { t = 0u; o += 1u; }
    }
    packed4[i] = v;
}

// widen_rows' parameters.
struct WidenParams {
    rows: u32,
    w_in: u32,    // source row length
    w_out: u32,   // destination row length: a multiple of 4, at least w_in
};

@group(0) @binding(0) var<uniform> wd: WidenParams;

// packed4 = rows of `a` padded with zero columns to w_out, one vec4 per invocation. The
// direct kernels run widths that are not a multiple of 4 on such a copy (the added columns
// are exactly the convolution's own zero padding on the right).
@compute @workgroup_size(256)
fn widen_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    let q = wd.w_out / 4u;
    if (i >= wd.rows * q) { return; }
    let r = i / q;
    let x = (i % q) * 4u;
    var v = vec4<f32>(0.0);
    for (var t = 0u; t < 4u; t++) {
        if (x + t < wd.w_in) { v[t] = a[r * wd.w_in + x + t]; }
    }
    packed4[i] = v;
}

// widen_rows for a source whose length is a multiple of 4, read as vec4s, one row per
// invocation: the 4 inputs of an output vec4 lie in two neighbouring aligned vec4s, the
// second of which is the next output's first (one vec4 load per output instead of four
// scalar ones; the copy is bound by memory bandwidth either way on lavapipe).
@compute @workgroup_size(64)
fn widen_rows4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.x + gid.y * nwg.x * 64u;
    if (r >= wd.rows) { return; }
    let f = r * wd.w_in; let al = f % 4u; let last = arrayLength(&a4) - 1u;
    var i = f / 4u; var v0 = a4[i];
    var o = r * (wd.w_out / 4u);
    for (var x = 0u; x < wd.w_out; x += 4u) {
        i += 1u;
        let v1 = a4[min(i, last)];
        var v = select(v0, vec4<f32>(v0.yzw, v1.x), al == 1u);
        v = select(v, vec4<f32>(v0.zw, v1.xy), al == 2u);
        v = select(v, vec4<f32>(v0.w, v1.xyz), al == 3u);
        packed4[o] = select(vec4<f32>(0.0), v, vec4<u32>(x) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(wd.w_in));
        v0 = v1; o += 1u;
    }
}

// ---- The generated kernels: one template, expanded per register tile (src/ops/template.rs
// documents the substitution). Variables: ENTRY (the entry point's name), KIND (1 forward,
// 2 backward data, 3 backward weight, 4 direct forward, 5 direct backward weight, 6 direct
// stride-2 backward data; 0 expands only the code above, for pack_rows), TM × TN
// (accumulators per invocation, `acc{row}_{col}`; for KIND 4 and 6 a column is a vec4 quad
// of positions, for KIND 5 an input channel with its K × K taps), SG (the subgroup width
// of a subgroup variant, 0 for the plain one), VEC4 (backward weight: dY read as vec4s),
// K, PAD and S (KIND 4 to 6: the square kernel's size, padding and stride), CROP (KIND 4
// and 6: the output is narrower than the kernel's running width), AFFINE
// (KIND 4 and 5: x read through relu(batch norm), `ACT` = bn_relu4, else keep4; the output
// `OUT` is then `dst` at binding 6, else `out`).
// Row operands (weights, or dY for backward weight): the plain variant loads row i as
// `r$i`; in the subgroup variant lane `sl` loads row `i·SG + sl` and row i's value is
// broadcast from lane i % SG of load i / SG.
//# if KIND > 0 && !TILED
@compute @workgroup_size(WX)
fn ${ENTRY}(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
//# if SG
    @builtin(subgroup_invocation_id) sl: u32,
//# end
) {
//# end
//# if KIND == 1 && !TILED
    // Forward: rows = output channels, cols = output positions (n, oh, ow) flattened;
    // `a` = x, `b4` = the weight packed as [OC, 4·kq] by pack_rows.
    let ohw = p.oh * p.ow; let npos = p.n * ohw; let hw = p.h * p.w;
    let kk = p.c * p.kh * p.kw; let s = i32(p.stride); let pad = i32(p.pad);
    let m0 = wid.y * ${TM}u;
    let qb = (wid.x + wid.z * nwg.x) * WX * ${TN}u + lid.x;
//# if SG
//# for i in 0..TM / SG
    let r${i} = min(m0 + ${i}u * ${SG}u + sl, p.oc - 1u) * p.kq;
//# end
//# else
//# for i in 0..TM
    let r${i} = min(m0 + ${i}u, p.oc - 1u) * p.kq;
//# end
//# end
//# for i in 0..TN
    let q${i} = min(qb + ${i}u * WX, npos - 1u); let n${i} = q${i} / ohw; let o${i} = q${i} % ohw;
//# end
//# for i in 0..TN
    let ih${i} = i32(o${i} / p.ow) * s - pad; let iw${i} = i32(o${i} % p.ow) * s - pad;
//# end
//# for i in 0..TN
    let xb${i} = i32(n${i} * p.c * hw);
//# end
//# for i in 0..TM
//# for j in 0..TN
    var acc${i}_${j} = 0.0;
//# end
//# end
    // k = (c, kh, kw) advances one step per k, branch-free (the wrap is a select).
    var kh = 0u; var kw = 0u; var xc = 0;
    for (var kv = 0u; kv < p.kq; kv++) {
//# for i in 0..ROW_LOADS
        let w${i} = b4[r${i} + kv];
//# end
        // The inputs of all four k-steps first, then the FMAs row by row (so one row's
        // accumulators stay in registers).
//# for t in 0..4
//# for i in 0..TN
        let y${i}_${t} = ih${i} + i32(kh); let xw${i}_${t} = iw${i} + i32(kw);
//# end
//# for i in 0..TN
        let ok${i}_${t} = u32(y${i}_${t}) < p.h && u32(xw${i}_${t}) < p.w && xc < i32(p.c * hw);
//# end
//# for i in 0..TN
        let x${i}_${t} = select(0.0, a[select(0u, u32(xb${i} + xc + y${i}_${t} * i32(p.w) + xw${i}_${t}), ok${i}_${t})], ok${i}_${t});
//# end
        kw += 1u; let wrap_w${t} = kw == p.kw; kw = select(kw, 0u, wrap_w${t}); kh += u32(wrap_w${t});
        let wrap_h${t} = kh == p.kh; kh = select(kh, 0u, wrap_h${t}); xc += select(0, i32(hw), wrap_h${t});
//# end
//# for i in 0..TM
//# for t in 0..4
//# if SG
        let wv${i}_${t} = subgroupBroadcast(w${i / SG}.${t:xyzw}, ${i % SG}u);
//# else
        let wv${i}_${t} = w${i}.${t:xyzw};
//# end
//# for j in 0..TN
        acc${i}_${j} = fma(wv${i}_${t}, x${j}_${t}, acc${i}_${j});
//# end
//# end
//# end
    }
//# for i in 0..TM
//# for j in 0..TN
    if (m0 + ${i}u < p.oc && qb + ${j}u * WX < npos) { out[(n${j} * p.oc + m0 + ${i}u) * ohw + o${j}] = acc${i}_${j}; }
//# end
//# end
//# end
//# if KIND == 2 && !TILED
    // Backward data: rows = input channels, cols = input positions of one residue class
    // (ih mod s, iw mod s) = workgroup_id.y / c_tiles, so every tap loop is uniform and only
    // visits the taps kh ≡ ih + pad (mod s) that reach the position; `a` = dY,
    // `b` = weight [OC, C, KH, KW].
    let st = p.stride; let khw = p.kh * p.kw; let ohw = p.oh * p.ow;
    let cls = wid.y / p.c_tiles; let rh = cls / st; let rw = cls % st;
    let hm = (p.h + st - 1u) / st; let wm = (p.w + st - 1u) / st; let npos = p.n * hm * wm;
    let m0 = (wid.y % p.c_tiles) * ${TM}u;
    let qb = (wid.x + wid.z * nwg.x) * WX * ${TN}u + lid.x;
    let kh0 = (rh + p.pad) % st; let kw0 = (rw + p.pad) % st;
//# if SG
//# for i in 0..TM / SG
    let r${i} = min(m0 + ${i}u * ${SG}u + sl, p.c - 1u) * khw;
//# end
//# else
//# for i in 0..TM
    let r${i} = min(m0 + ${i}u, p.c - 1u) * khw;
//# end
//# end
//# for i in 0..TN
    let q${i} = min(qb + ${i}u * WX, npos - 1u); let n${i} = q${i} / (hm * wm);
//# end
//# for i in 0..TN
    let ih${i} = rh + st * ((q${i} / wm) % hm); let iw${i} = rw + st * (q${i} % wm);
//# end
//# for i in 0..TN
    let live${i} = qb + ${i}u * WX < npos && ih${i} < p.h && iw${i} < p.w;
//# end
    // Output row / column reached by the first tap of the class; later taps step back by 1.
//# for i in 0..TN
    let oy${i} = i32((ih${i} + p.pad - kh0) / st); let ox${i} = i32((iw${i} + p.pad - kw0) / st);
//# end
//# for i in 0..TN
    var db${i} = i32(n${i} * p.oc * ohw);
//# end
//# for i in 0..TM
//# for j in 0..TN
    var acc${i}_${j} = 0.0;
//# end
//# end
    var wb = 0u;
    for (var oc = 0u; oc < p.oc; oc++) {
        var dh = 0;
        for (var kh = kh0; kh < p.kh; kh += st) {
//# for i in 0..TN
            let y${i} = oy${i} - dh; let hok${i} = u32(y${i}) < p.oh; let rb${i} = db${i} + y${i} * i32(p.ow);
//# end
            var dw = 0;
            for (var kw = kw0; kw < p.kw; kw += st) {
//# for i in 0..TN
                let xw${i} = ox${i} - dw; let ok${i} = hok${i} && u32(xw${i}) < p.ow;
//# end
//# for i in 0..TN
                let d${i} = select(0.0, a[select(0u, u32(rb${i} + xw${i}), ok${i})], ok${i});
//# end
                let ko = wb + kh * p.kw + kw;
//# if SG
//# for i in 0..TM / SG
                let wl${i} = b[r${i} + ko];
//# end
//# for i in 0..TM
                let w${i} = subgroupBroadcast(wl${i / SG}, ${i % SG}u);
//# for j in 0..TN
                acc${i}_${j} = fma(w${i}, d${j}, acc${i}_${j});
//# end
//# end
//# else
//# for i in 0..TM
                let w${i} = b[r${i} + ko];
//# end
//# for i in 0..TM
//# for j in 0..TN
                acc${i}_${j} = fma(w${i}, d${j}, acc${i}_${j});
//# end
//# end
//# end
                dw += 1;
            }
            dh += 1;
        }
//# for i in 0..TN
        db${i} += i32(ohw);
//# end
        wb += p.c * khw;
    }
//# for i in 0..TM
//# for j in 0..TN
    if (m0 + ${i}u < p.c && live${j}) { out[((n${j} * p.c + m0 + ${i}u) * p.h + ih${j}) * p.w + iw${j}] = acc${i}_${j}; }
//# end
//# end
//# end
//# if KIND == 3 && !TILED
    // Backward weight: rows = output channels, cols = weight entries k = (c, kh, kw); the
    // invocation sums over the (n, oh) rows of its split (workgroup_id.z) and every ow;
    // `a` = dY (`a4` with VEC4), `b` = x, `out` = [splits, OC, K].
    let khw = p.kh * p.kw; let kk = p.c * khw; let hw = p.h * p.w; let ohw = p.oh * p.ow;
    let s = i32(p.stride); let pad = i32(p.pad);
    let m0 = wid.y * ${TM}u;
    let kb = wid.x * WX * ${TN}u + lid.x;
//# if SG
//# for i in 0..TM / SG
    let r${i} = min(m0 + ${i}u * ${SG}u + sl, p.oc - 1u) * ohw;
//# end
//# else
//# for i in 0..TM
    let r${i} = min(m0 + ${i}u, p.oc - 1u) * ohw;
//# end
//# end
//# for i in 0..TN
    let kq${i} = min(kb + ${i}u * WX, kk - 1u); let rem${i} = kq${i} % khw;
//# end
//# for i in 0..TN
    let cx${i} = i32((kq${i} / khw) * hw); let kh${i} = i32(rem${i} / p.kw) - pad; let kw${i} = i32(rem${i} % p.kw) - pad;
//# end
//# for i in 0..TM
//# for j in 0..TN
    var acc${i}_${j} = 0.0;
//# end
//# end
    let rbeg = wid.z * p.chunk; let rend = min(rbeg + p.chunk, p.n * p.oh);
    var n = rbeg / p.oh; var oh = rbeg % p.oh;
    for (var row = rbeg; row < rend; row++) {
        let xn = i32(n * p.c * hw); let dyb = n * p.oc * ohw + oh * p.ow;
//# for i in 0..TN
        let y${i} = i32(oh) * s + kh${i}; let hok${i} = u32(y${i}) < p.h; let rb${i} = xn + cx${i} + y${i} * i32(p.w);
//# end
//# for i in 0..TN
        var xw${i} = kw${i};
//# end
//# if VEC4
        for (var ow = 0u; ow < p.ow; ow += 4u) {
//# for i in 0..ROW_LOADS
            let d${i} = a4[(dyb + r${i} + ow) / 4u];
//# end
//# else
        for (var ow = 0u; ow < p.ow; ow++) {
//# for i in 0..ROW_LOADS
            let d${i} = a[dyb + r${i} + ow];
//# end
//# end
            // The inputs of every step (4 with VEC4, else 1) first, then the FMAs row by row.
//# for t in 0..1 + 3 * VEC4
//# for i in 0..TN
            let ok${i}_${t} = hok${i} && u32(xw${i}) < p.w;
//# end
//# for i in 0..TN
            let x${i}_${t} = select(0.0, b[select(0u, u32(rb${i} + xw${i}), ok${i}_${t})], ok${i}_${t});
//# end
//# for i in 0..TN
            xw${i} += s;
//# end
//# end
//# for i in 0..TM
//# for t in 0..1 + 3 * VEC4
//# if SG && VEC4
            let dv${i}_${t} = subgroupBroadcast(d${i / SG}.${t:xyzw}, ${i % SG}u);
//# end
//# if SG && !VEC4
            let dv${i}_${t} = subgroupBroadcast(d${i / SG}, ${i % SG}u);
//# end
//# if !SG && VEC4
            let dv${i}_${t} = d${i}.${t:xyzw};
//# end
//# if !SG && !VEC4
            let dv${i}_${t} = d${i};
//# end
//# for j in 0..TN
            acc${i}_${j} = fma(dv${i}_${t}, x${j}_${t}, acc${i}_${j});
//# end
//# end
//# end
        }
        oh += 1u; if (oh == p.oh) { oh = 0u; n += 1u; }
    }
    let ob = wid.z * p.oc * kk;
//# for i in 0..TM
//# for j in 0..TN
    if (m0 + ${i}u < p.oc && kb + ${j}u * WX < kk) { out[ob + (m0 + ${i}u) * kk + kb + ${j}u * WX] = acc${i}_${j}; }
//# end
//# end
//# end
//# if KIND == 4
    // Forward, direct (stride S of 1 or 2, K × K taps, padding PAD, output 1/S of the
    // input's size): each column is a quad of 4 neighbouring output positions, read and
    // written as vec4s,
    // so a lane fetches 4 inputs per load instead of 1 (on llvmpipe a load whose address
    // differs per lane is a loop over the lanes: the costliest step of the gather kernel).
    // K == 1: quads run along the flattened (h, w) plane (H·W % 4 == 0); the packed weight
    // is [OC, 4·kq] (4 channels per vec4). K > 1: quads run along a row (W % 4 == 0); the
    // taps of a row come from the quad and its neighbours (`l`, `m`, `r`) by swizzles; the
    // packed weight is [OC, C, K, 4] (one vec4 per kernel row, the last lanes 0). A lane's
    // TN quads are neighbours in one row, so each quad's `m` is the next one's `l` and the
    // previous one's `r`: TN + 2 loads, not 3·TN.
    // S == 2 (quads along a row, also for K == 1; W % 4 == 0): output quad (oy, ox) reads
    // x's vec4s `u` and `v` at 2·ox and 2·ox + 1 of row 2·oy + kh − PAD (`v` is 0 past the
    // row: W % 8 == 4), and `l` (the previous quad's `v`) on its left; the taps are their
    // even or odd lanes. A row has ⌈p.ow / 4⌉ quads; CROP stores the part inside p.ow.
    let hw4 = p.h * p.w / 4u; let w4 = p.w / 4u;
    // dY's quads per row and per plane (1 × 1 at stride 1: quads of the flattened plane).
//# if K > 1 || S > 1
    let ow4 = (p.ow + 3u) / 4u; let ohw4 = p.oh * ow4;
//# else
    let ow4 = w4; let ohw4 = hw4;
//# end
    let nq = p.n * ohw4;
    let m0 = wid.y * ${TM}u;
//# if K > 1 || S > 1
    // A lane runs TN neighbouring quads of one output row: run `ru` of `rpr` per row. When
    // TN does not divide the row's quads, the last run's extra quads are dead: their loads
    // read 0 (as padding would) and they store nothing.
    let rpr = (ow4 + ${TN - 1}u) / ${TN}u; let ru = (wid.x + wid.z * nwg.x) * WX + lid.x;
    let orow = min(ru / rpr, p.n * p.oh - 1u); let oxr = (ru % rpr) * ${TN}u;
    let live = ru < p.n * p.oh * rpr;
//# else
    let qb = (wid.x + wid.z * nwg.x) * WX * ${TN}u + lid.x;
//# end
//# if SG
//# for i in 0..TM / SG
    let r${i} = min(m0 + ${i}u * ${SG}u + sl, p.oc - 1u) * p.kq;
//# end
//# else
//# for i in 0..TM
    let r${i} = min(m0 + ${i}u, p.oc - 1u) * p.kq;
//# end
//# end
//# for j in 0..TN
//# if K > 1 || S > 1
    let n${j} = orow / p.oh; let oy${j} = i32(orow % p.oh); let ox${j} = oxr + ${j}u;
    let o${j} = u32(oy${j}) * ow4 + ox${j}; let lv${j} = live && ox${j} < ow4;
//# else
    let q${j} = min(qb + ${j}u * WX, nq - 1u); let n${j} = q${j} / ohw4; let o${j} = q${j} % ohw4;
    let lv${j} = qb + ${j}u * WX < nq;
//# end
    let xb${j} = n${j} * p.xc * hw4;
    // Lanes of the quad inside x's real width p.ow (p.w > p.ow: x was widened); along a
    // row (K > 1) the lanes of the next quad are those less 4.
    let lim${j} = select(4, i32(p.ow) - i32((o${j} % w4) * 4u), ${K} > 1 || p.w != p.ow);
//# end
//# for i in 0..TM
//# for j in 0..TN
    var acc${i}_${j} = vec4<f32>(0.0);
//# end
//# end
//# if K == 1 && S == 1
    for (var kv = 0u; kv < p.kq; kv++) {
//# for i in 0..ROW_LOADS
        let w${i} = b4[r${i} + kv];
//# end
//# for t in 0..4
        let cok${t} = kv * 4u + ${t}u < p.c; let xc${t} = (kv * 4u + ${t}u) * hw4;
//# for j in 0..TN
//# if AFFINE
        let x${j}_${t} = bn_relu4(a4[select(0u, xb${j} + xc${t} + o${j}, cok${t})], bn_of(kv * 4u + ${t}u), cok${t}, lim${j});
//# else
        let x${j}_${t} = select(vec4<f32>(0.0), a4[select(0u, xb${j} + xc${t} + o${j}, cok${t})], cok${t});
//# end
//# end
//# end
//# for i in 0..TM
//# for t in 0..4
//# if SG
        let wv${i}_${t} = vec4<f32>(subgroupBroadcast(w${i / SG}.${t:xyzw}, ${i % SG}u));
//# else
        let wv${i}_${t} = vec4<f32>(w${i}.${t:xyzw});
//# end
//# for j in 0..TN
        acc${i}_${j} = fma(wv${i}_${t}, x${j}_${t}, acc${i}_${j});
//# end
//# end
//# end
    }
//# else
    for (var c = 0u; c < p.c; c++) {
        let wq = c * ${K}u; let xc = c * hw4;
//# if AFFINE
        let bnc = bn_of(c);
//# else
        let bnc = vec3<f32>(0.0);
//# end
//# for kh in 0..K
//# for i in 0..ROW_LOADS
        let w${i}_${kh} = b4[r${i} + wq + ${kh}u];
//# end
//# end
//# for kh in 0..K
//# for j in 0..TN
        let y${j}_${kh} = oy${j} * ${S} + ${kh - PAD}; let yok${j}_${kh} = u32(y${j}_${kh}) < p.h && lv${j};
        let rb${j}_${kh} = select(0u, xb${j} + xc + u32(y${j}_${kh}) * w4 + ${S}u * ox${j}, yok${j}_${kh});
//# if S == 1
        let m${j}_${kh} = ${ACT}(a4[rb${j}_${kh}], bnc, yok${j}_${kh}, lim${j});
//# else
        let u${j}_${kh} = ${ACT}(a4[rb${j}_${kh}], bnc, yok${j}_${kh}, 4);
        let vok${j}_${kh} = yok${j}_${kh} && ${S}u * ox${j} + 1u < w4;
        let v${j}_${kh} = ${ACT}(a4[select(0u, rb${j}_${kh} + 1u, vok${j}_${kh})], bnc, vok${j}_${kh}, 4);
//# end
//# end
//# if S == 2 && PAD > 0
        let lok0_${kh} = yok0_${kh} && ox0 > 0u;
        let l0_${kh} = ${ACT}(a4[select(0u, rb0_${kh} - 1u, lok0_${kh})], bnc, lok0_${kh}, 4);
//# for j in 1..TN
        let l${j}_${kh} = v${j - 1}_${kh};
//# end
//# end
//# if S == 1
//# for j in 0..TN
//# if PAD > 0 && j > 0
        let l${j}_${kh} = m${j - 1}_${kh};
//# end
//# if PAD > 0 && j == 0
        let lok${j}_${kh} = yok${j}_${kh} && ox${j} > 0u;
//# if SG
        // Neighbouring lanes run neighbouring runs of a row: the quad left of this run is
        // the previous lane's last m, read by a shuffle (as cheap as an add on llvmpipe, a
        // load as ~20 vec4 FMAs); only lane 0 loads it.
        var l${j}_${kh} = select(vec4<f32>(0.0), subgroupShuffle(m${TN - 1}_${kh}, (sl + ${SG - 1}u) % ${SG}u), lok${j}_${kh});
        if (sl == 0u && lok${j}_${kh}) { l${j}_${kh} = ${ACT}(a4[rb${j}_${kh} - 1u], bnc, true, 4); }
//# else
        let l${j}_${kh} = ${ACT}(a4[select(0u, rb${j}_${kh} - 1u, lok${j}_${kh})], bnc, lok${j}_${kh}, 4);
//# end
//# end
//# if K - 1 - PAD > 0 && j + 1 < TN
        let r${j}_${kh} = m${j + 1}_${kh};
//# end
//# if K - 1 - PAD > 0 && j + 1 == TN
        let rok${j}_${kh} = yok${j}_${kh} && ox${j} + 1u < w4;
//# if SG
        // The quad right of this run: the next lane's first m (the last lane loads it).
        var r${j}_${kh} = select(vec4<f32>(0.0), subgroupShuffle(m0_${kh}, (sl + 1u) % ${SG}u), rok${j}_${kh});
        if (sl == ${SG - 1}u && rok${j}_${kh}) { r${j}_${kh} = ${ACT}(a4[rb${j}_${kh} + 1u], bnc, true, lim${j} - 4); }
//# else
        let r${j}_${kh} = ${ACT}(a4[select(0u, rb${j}_${kh} + 1u, rok${j}_${kh})], bnc, rok${j}_${kh}, lim${j} - 4);
//# end
//# end
//# end
//# end
//# end
        // Tap kw of the quad: inputs S·ow + kw − PAD + S·(0..4), from the 12 values l, m, r
        // (S = 1) or l, u, v (S = 2).
//# for kh in 0..K
//# for kw in 0..K
//# for j in 0..TN
//# if S == 1
        let x${j}_${kh}_${kw} = vec4<f32>(${(4 + kw - PAD) / 4:lmr}${j}_${kh}.${(4 + kw - PAD) % 4:xyzw}, ${(5 + kw - PAD) / 4:lmr}${j}_${kh}.${(5 + kw - PAD) % 4:xyzw}, ${(6 + kw - PAD) / 4:lmr}${j}_${kh}.${(6 + kw - PAD) % 4:xyzw}, ${(7 + kw - PAD) / 4:lmr}${j}_${kh}.${(7 + kw - PAD) % 4:xyzw});
//# else
        let x${j}_${kh}_${kw} = vec4<f32>(${(4 + kw - PAD) / 4:luv}${j}_${kh}.${(4 + kw - PAD) % 4:xyzw}, ${(6 + kw - PAD) / 4:luv}${j}_${kh}.${(6 + kw - PAD) % 4:xyzw}, ${(8 + kw - PAD) / 4:luv}${j}_${kh}.${(8 + kw - PAD) % 4:xyzw}, ${(10 + kw - PAD) / 4:luv}${j}_${kh}.${(10 + kw - PAD) % 4:xyzw});
//# end
//# end
//# end
//# end
//# for i in 0..TM
//# for kh in 0..K
//# for kw in 0..K
//# if SG
        let wv${i}_${kh}_${kw} = vec4<f32>(subgroupBroadcast(w${i / SG}_${kh}.${kw:xyzw}, ${i % SG}u));
//# else
        let wv${i}_${kh}_${kw} = vec4<f32>(w${i}_${kh}.${kw:xyzw});
//# end
//# for j in 0..TN
        acc${i}_${j} = fma(wv${i}_${kh}_${kw}, x${j}_${kh}_${kw}, acc${i}_${j});
//# end
//# end
//# end
//# end
    }
//# end
    // CROP: p.ow is not a multiple of 4 (x was widened at stride 1, or the last quad
    // sticks out at stride 2): the outputs past p.ow are dropped.
//# for i in 0..TM
//# for j in 0..TN
//# if CROP
    if (m0 + ${i}u < p.oc && lv${j}) {
        let sx = (o${j} % ow4) * 4u;
        let ob = (n${j} * p.oc + m0 + ${i}u) * p.oh * p.ow + (o${j} / ow4) * p.ow + sx;
//# for t in 0..4
        if (sx + ${t}u < p.ow) { ${OUT}[ob + ${t}u] = acc${i}_${j}.${t:xyzw}; }
//# end
    }
//# else
    if (m0 + ${i}u < p.oc && lv${j}) { ${OUT}4[(n${j} * p.oc + m0 + ${i}u) * ohw4 + o${j}] = acc${i}_${j}; }
//# end
//# end
//# end
//# end
//# if KIND == 5
    // Backward weight, direct (the direct forward kernel's shapes): rows = output channels,
    // cols = input channels (spread over lanes), each with its K × K taps; the invocation
    // sums over the output quads of its split (workgroup_id.z, `chunk` quads each), with
    // dY (`a4`, 4·⌈p.ow / 4⌉ wide) and x (`b4`) read as vec4s; out = [splits, OC, C, K, K].
    let hw4 = p.h * p.w / 4u; let w4 = p.w / 4u;
    // dY's quads per row and per plane (as in the forward kernel).
//# if K > 1 || S > 1
    let ow4 = (p.ow + 3u) / 4u; let ohw4 = p.oh * ow4;
//# else
    let ow4 = w4; let ohw4 = hw4;
//# end
    let m0 = wid.y * ${TM}u;
    let cb = wid.x * WX * ${TN}u + lid.x;
//# if SG
//# for i in 0..TM / SG
    let r${i} = min(m0 + ${i}u * ${SG}u + sl, p.oc - 1u) * ohw4;
//# end
//# else
//# for i in 0..TM
    let r${i} = min(m0 + ${i}u, p.oc - 1u) * ohw4;
//# end
//# end
//# for j in 0..TN
    let c${j} = min(cb + ${j}u * WX, p.c - 1u); let xo${j} = c${j} * hw4;
//# if AFFINE
    let bn${j} = bn_of(c${j});
//# else
    let bn${j} = vec3<f32>(0.0);
//# end
//# end
//# for i in 0..TM
//# for j in 0..TN
//# for kh in 0..K
//# for kw in 0..K
    var acc${i}_${j}_${kh}_${kw} = 0.0;
//# end
//# end
//# end
//# end
    let qbeg = wid.z * p.chunk; let qend = min(qbeg + p.chunk, p.n * ohw4);
//# if K > 1 || S > 1
    // A row's quads come in order, so the vec4s a quad shares with the previous one are
    // carried over instead of loaded again (a load costs as much as ~20 vec4 FMAs on
    // llvmpipe): at stride 1 its l and m are the previous m and r (1 load per kernel row,
    // not 3), at stride 2 its l is the previous v (2, not 3).
//# for kh in 0..K
//# for j in 0..TN
//# if S == 1
    var cm${j}_${kh} = vec4<f32>(0.0); var cr${j}_${kh} = vec4<f32>(0.0);
//# end
//# if S == 2 && PAD > 0
    var cv${j}_${kh} = vec4<f32>(0.0);
//# end
//# end
//# end
//# end
    for (var q = qbeg; q < qend; q++) {
        let n = q / ohw4; let o = q % ohw4;
        let db = n * p.oc * ohw4 + o; let xn = n * p.xc * hw4;
        // Lanes of the quad inside x's real width (as in the forward kernel).
        let lim = select(4, i32(p.ow) - i32((o % w4) * 4u), ${K} > 1 || p.w != p.ow);
//# for i in 0..ROW_LOADS
        let d${i} = a4[db + r${i}];
//# end
//# if K == 1 && S == 1
//# for j in 0..TN
        let x${j}_0_0 = ${ACT}(b4[xn + xo${j} + o], bn${j}, true, lim);
//# end
//# else
        let oy = i32(o / ow4); let ox = o % ow4;
        // The first quad of a row or of this split loads its whole window; so does every
        // quad of the 32-row batch-norm tiles, where carrying was slower (the carried
        // vec4s spill: ResNet-34's weight gradient +17 %). A constant `fresh` folds away.
        let fresh = ${AFFINE && TM > 16} == 1 || ox == 0u || q == qbeg;
//# for kh in 0..K
//# for j in 0..TN
        let y${j}_${kh} = oy * ${S} + ${kh - PAD}; let yok${j}_${kh} = u32(y${j}_${kh}) < p.h;
        let rb${j}_${kh} = select(0u, xn + xo${j} + u32(y${j}_${kh}) * w4 + ${S}u * ox, yok${j}_${kh});
//# if S == 2
        let u${j}_${kh} = ${ACT}(b4[rb${j}_${kh}], bn${j}, yok${j}_${kh}, 4);
        let vok${j}_${kh} = yok${j}_${kh} && ${S}u * ox + 1u < w4;
        let v${j}_${kh} = ${ACT}(b4[select(0u, rb${j}_${kh} + 1u, vok${j}_${kh})], bn${j}, vok${j}_${kh}, 4);
//# if PAD > 0
        var l${j}_${kh} = cv${j}_${kh};
        if (fresh) {
            let lok = yok${j}_${kh} && ox > 0u;
            l${j}_${kh} = ${ACT}(b4[select(0u, rb${j}_${kh} - 1u, lok)], bn${j}, lok, 4);
        }
        cv${j}_${kh} = v${j}_${kh};
//# end
//# else
        // Stride 1 is always 3 × 3 with padding 1 here (Direct::plan): l, m, r.
        var l${j}_${kh} = cm${j}_${kh}; var m${j}_${kh} = cr${j}_${kh};
        if (fresh) {
            let lok = yok${j}_${kh} && ox > 0u;
            l${j}_${kh} = ${ACT}(b4[select(0u, rb${j}_${kh} - 1u, lok)], bn${j}, lok, 4);
            m${j}_${kh} = ${ACT}(b4[rb${j}_${kh}], bn${j}, yok${j}_${kh}, lim);
        }
        let rok${j}_${kh} = yok${j}_${kh} && ox + 1u < w4;
        let r${j}_${kh} = ${ACT}(b4[select(0u, rb${j}_${kh} + 1u, rok${j}_${kh})], bn${j}, rok${j}_${kh}, lim - 4);
        cm${j}_${kh} = m${j}_${kh}; cr${j}_${kh} = r${j}_${kh};
//# end
//# end
//# end
//# for kh in 0..K
//# for kw in 0..K
//# for j in 0..TN
//# if S == 1
        let x${j}_${kh}_${kw} = vec4<f32>(${(4 + kw - PAD) / 4:lmr}${j}_${kh}.${(4 + kw - PAD) % 4:xyzw}, ${(5 + kw - PAD) / 4:lmr}${j}_${kh}.${(5 + kw - PAD) % 4:xyzw}, ${(6 + kw - PAD) / 4:lmr}${j}_${kh}.${(6 + kw - PAD) % 4:xyzw}, ${(7 + kw - PAD) / 4:lmr}${j}_${kh}.${(7 + kw - PAD) % 4:xyzw});
//# else
        let x${j}_${kh}_${kw} = vec4<f32>(${(4 + kw - PAD) / 4:luv}${j}_${kh}.${(4 + kw - PAD) % 4:xyzw}, ${(6 + kw - PAD) / 4:luv}${j}_${kh}.${(6 + kw - PAD) % 4:xyzw}, ${(8 + kw - PAD) / 4:luv}${j}_${kh}.${(8 + kw - PAD) % 4:xyzw}, ${(10 + kw - PAD) / 4:luv}${j}_${kh}.${(10 + kw - PAD) % 4:xyzw});
//# end
//# end
//# end
//# end
//# end
//# for i in 0..TM
//# for t in 0..4
//# if SG
        let dv${i}_${t} = subgroupBroadcast(d${i / SG}.${t:xyzw}, ${i % SG}u);
//# else
        let dv${i}_${t} = d${i}.${t:xyzw};
//# end
//# for j in 0..TN
//# for kh in 0..K
//# for kw in 0..K
        acc${i}_${j}_${kh}_${kw} = fma(dv${i}_${t}, x${j}_${kh}_${kw}.${t:xyzw}, acc${i}_${j}_${kh}_${kw});
//# end
//# end
//# end
//# end
//# end
    }
//# for i in 0..TM
//# for j in 0..TN
    if (m0 + ${i}u < p.oc && cb + ${j}u * WX < p.c) {
        let ob${i}_${j} = ((wid.z * p.oc + m0 + ${i}u) * p.c + cb + ${j}u * WX) * ${K * K}u;
//# for kh in 0..K
//# for kw in 0..K
        ${OUT}[ob${i}_${j} + ${kh * K + kw}u] = acc${i}_${j}_${kh}_${kw};
//# end
//# end
    }
//# end
//# end
//# end
//# if KIND == 6
    // Backward data of a stride-2 convolution (3 × 3 with padding 1, or 1 × 1), direct:
    // rows = input channels, cols = quads of dY (4 neighbouring positions of a row, read as
    // vec4s; a lane's TN quads are neighbours, so they share their right-hand loads). dY
    // position (a, b) feeds dX rows 2a, 2a + 1 and columns 2b, 2b + 1, and each of these
    // four phases sums only the taps that reach it (no multiply by the zeros between
    // strides); with W = the weight of one (oc, c):
    //   dX[2a][2b]         += W11·dY[a][b]
    //   dX[2a][2b + 1]     += W10·dY[a][b + 1] + W12·dY[a][b]
    //   dX[2a + 1][2b]     += W01·dY[a + 1][b] + W21·dY[a][b]
    //   dX[2a + 1][2b + 1] += W00·dY[a + 1][b + 1] + W02·dY[a + 1][b] + W20·dY[a][b + 1]
    //                         + W22·dY[a][b]
    // (1 × 1: only the first; the other phases stay 0). The accumulators hold the phases of
    // the quad (`e` even columns, `o` odd, row 0 or 1), interleaved when stored. `a4` = dY,
    // p.ow wide (a widened copy: zero past its real width); `b4` = the weight packed
    // [C, OC, K, 4] with its taps reversed (pack_rows, flip): Wyx is lane 2 − x of vec4
    // 2 − y of its (c, oc). p.h × p.w is dX's size; CROP: some of the 8 columns a quad
    // covers lie past p.w (or p.w is not 2·p.ow), so stores are scalar and checked.
    let ow4 = p.ow / 4u; let ohw4 = p.oh * ow4; let nq = p.n * ohw4;
    let m0 = wid.y * ${TM}u;
    // Runs of TN quads along a dY row, as in the direct forward kernel (dead quads past
    // the row's end read 0 and store nothing).
    let rpr = (ow4 + ${TN - 1}u) / ${TN}u; let ru = (wid.x + wid.z * nwg.x) * WX + lid.x;
    let orow = min(ru / rpr, p.n * p.oh - 1u); let ox = (ru % rpr) * ${TN}u;
    let n = orow / p.oh; let ya = orow % p.oh; let live = ru < p.n * p.oh * rpr;
//# for j in 0..TN
    let lv${j} = live && ox + ${j}u < ow4;
//# end
//# if SG
//# for i in 0..TM / SG
    let r${i} = min(m0 + ${i}u * ${SG}u + sl, p.c - 1u) * p.kq;
//# end
//# else
//# for i in 0..TM
    let r${i} = min(m0 + ${i}u, p.c - 1u) * p.kq;
//# end
//# end
//# for i in 0..TM
//# for j in 0..TN
    var e0_${i}_${j} = vec4<f32>(0.0); var o0_${i}_${j} = vec4<f32>(0.0);
    var e1_${i}_${j} = vec4<f32>(0.0); var o1_${i}_${j} = vec4<f32>(0.0);
//# end
//# end
    // The row below (a + 1) and the quad right of the lane's last one, 0 outside dY.
    let bok = ya + 1u < p.oh; let rok = ox + ${TN}u < ow4;
    var d = n * p.oc * ohw4 + ya * ow4 + ox;
    let last = arrayLength(&a4) - 1u;
    for (var oc = 0u; oc < p.oc; oc++) {
//# for i in 0..ROW_LOADS
//# for kk in 0..K
        let w${i}_${kk} = b4[r${i} + oc * ${K}u + ${kk}u];
//# end
//# end
//# for j in 0..TN
        let dm${j} = select(vec4<f32>(0.0), a4[min(d + ${j}u, last)], lv${j});
//# end
//# if K > 1
//# if SG
        // The quad right of the lane's last one is the next lane's first, passed by a
        // shuffle (a load costs ~20 vec4 FMAs on llvmpipe); only the last lane loads it.
        var dmr = select(0.0, subgroupShuffle(dm0.x, (sl + 1u) % ${SG}u), rok);
        if (sl == ${SG - 1}u && rok) { dmr = a4[d + ${TN}u].x; }
//# else
        let dmr = select(0.0, a4[select(0u, d + ${TN}u, rok)].x, rok);
//# end
//# for j in 0..TN
        let dn${j} = select(vec4<f32>(0.0), a4[select(0u, d + ow4 + ${j}u, bok && lv${j})], bok && lv${j});
//# end
//# if SG
        var dnr = select(0.0, subgroupShuffle(dn0.x, (sl + 1u) % ${SG}u), bok && rok);
        if (sl == ${SG - 1}u && bok && rok) { dnr = a4[d + ow4 + ${TN}u].x; }
//# else
        let dnr = select(0.0, a4[select(0u, d + ow4 + ${TN}u, bok && rok)].x, bok && rok);
//# end
        // dY at columns b + 1 of rows a (`dms`) and a + 1 (`dns`).
//# for j in 0..TN
//# if j + 1 < TN
        let dms${j} = vec4<f32>(dm${j}.yzw, dm${j + 1}.x); let dns${j} = vec4<f32>(dn${j}.yzw, dn${j + 1}.x);
//# else
        let dms${j} = vec4<f32>(dm${j}.yzw, dmr); let dns${j} = vec4<f32>(dn${j}.yzw, dnr);
//# end
//# end
//# end
//# for i in 0..TM
//# for y in 0..K
//# for x in 0..K
//# if SG
        let wt${i}_${y}${x} = vec4<f32>(subgroupBroadcast(w${i / SG}_${K - 1 - y}.${K - 1 - x:xyzw}, ${i % SG}u));
//# else
        let wt${i}_${y}${x} = vec4<f32>(w${i}_${K - 1 - y}.${K - 1 - x:xyzw});
//# end
//# end
//# end
//# for j in 0..TN
//# if K == 1
        e0_${i}_${j} = fma(wt${i}_00, dm${j}, e0_${i}_${j});
//# else
        e0_${i}_${j} = fma(wt${i}_11, dm${j}, e0_${i}_${j});
        // Taps in ascending (y, x) order per oc, as the gather kernel sums them.
        o0_${i}_${j} = fma(wt${i}_12, dm${j}, fma(wt${i}_10, dms${j}, o0_${i}_${j}));
        e1_${i}_${j} = fma(wt${i}_21, dm${j}, fma(wt${i}_01, dn${j}, e1_${i}_${j}));
        o1_${i}_${j} = fma(wt${i}_22, dm${j}, fma(wt${i}_20, dms${j}, fma(wt${i}_02, dn${j}, fma(wt${i}_00, dns${j}, o1_${i}_${j}))));
//# end
//# end
//# end
        d += ohw4;
    }
    let y0 = 2u * ya; let row1 = y0 + 1u < p.h;
//# for i in 0..TM
    if (live && m0 + ${i}u < p.c) {
        let base${i} = ((n * p.c + m0 + ${i}u) * p.h + y0) * p.w;
//# for j in 0..TN
      if (lv${j}) {
        let lo_${i}_${j} = vec4<f32>(e0_${i}_${j}.x, o0_${i}_${j}.x, e0_${i}_${j}.y, o0_${i}_${j}.y);
        let hi_${i}_${j} = vec4<f32>(e0_${i}_${j}.z, o0_${i}_${j}.z, e0_${i}_${j}.w, o0_${i}_${j}.w);
        let lo1_${i}_${j} = vec4<f32>(e1_${i}_${j}.x, o1_${i}_${j}.x, e1_${i}_${j}.y, o1_${i}_${j}.y);
        let hi1_${i}_${j} = vec4<f32>(e1_${i}_${j}.z, o1_${i}_${j}.z, e1_${i}_${j}.w, o1_${i}_${j}.w);
        let x${i}_${j} = 8u * (ox + ${j}u);
//# if CROP
//# for t in 0..8
        if (x${i}_${j} + ${t}u < p.w) {
            out[base${i} + x${i}_${j} + ${t}u] = ${t / 4:lh}${t / 4:oi}_${i}_${j}.${t % 4:xyzw};
            if (row1) { out[base${i} + p.w + x${i}_${j} + ${t}u] = ${t / 4:lh}${t / 4:oi}1_${i}_${j}.${t % 4:xyzw}; }
        }
//# end
//# else
        out4[(base${i} + x${i}_${j}) / 4u] = lo_${i}_${j};
        out4[(base${i} + x${i}_${j}) / 4u + 1u] = hi_${i}_${j};
        if (row1) {
            out4[(base${i} + p.w + x${i}_${j}) / 4u] = lo1_${i}_${j};
            out4[(base${i} + p.w + x${i}_${j}) / 4u + 1u] = hi1_${i}_${j};
        }
//# end
      }
//# end
    }
//# end
//# end
//# if KIND > 0 && !TILED
}
//# end

// ---- The workgroup-tiled variants for real GPUs (TILED = 1): each kernel is an implicit
// GEMM C[M, N] = Σ_k A[m, k] · B[k, n] whose operands are gathered from the tensors. A
// 16 × 16 workgroup computes a block of BM = 16·TM rows × BN = 16·TN columns; per slice of
// 16 k it stages A [16][BM] and B [16][BN] in workgroup memory (the packed weight with vec4
// loads), then each invocation accumulates rows ly + 16·i, columns lx + 16·j (so loads
// from workgroup memory and stores to `out` are contiguous across lanes). Summation order
// is fixed: no atomics.
//   forward (KIND 1):         M = OC, N = N·OH·OW, k = (c, kh, kw);  A = weight packed
//                             [OC, 4·kq], B = x at the tap (im2col, gathered).
//   backward data (KIND 2):   M = C, N = N·H·W, k = (oc, tap); A = weight packed
//                             transposed with taps reversed [C, 4·kq] (pack_rows, flip),
//                             B = dY at the output position the tap reaches, 0 where it
//                             falls between strides or outside.
//   backward weight (KIND 3): M = OC, N = C·KH·KW, k = output positions (n, oh, ow) of
//                             split workgroup_id.z (rows of `chunk` (n, oh) each);
//                             A = dY, B = x at the tap; out = [splits, OC, C·KH·KW].
//# if KIND > 0 && TILED
var<workgroup> a_tile: array<f32, ${16 * 16 * TM}>;  // [k · BM + row]
var<workgroup> b_tile: array<f32, ${16 * 16 * TN}>;  // [k · BN + column]

//# if KIND != 2
// x at tap k = (c, kh, kw) of output position q = (n, oh, ow); 0 outside the image.
fn im2col(k: u32, q: u32) -> f32 {
    let khw = p.kh * p.kw;
    let c = k / khw;
    let t = k % khw;
    let ohw = p.oh * p.ow;
    let n = q / ohw;
    let o = q % ohw;
    let ih = i32((o / p.ow) * p.stride + t / p.kw) - i32(p.pad);
    let iw = i32((o % p.ow) * p.stride + t % p.kw) - i32(p.pad);
    let ok = c < p.c && n < p.n && u32(ih) < p.h && u32(iw) < p.w;
    let i = ((n * p.c + c) * p.h + u32(ih)) * p.w + u32(iw);
    return select(0.0, a_in(select(0u, i, ok)), ok);
}

//# end

// x is binding 1 (`a`) for the forward kernel, binding 2 (`b`) for backward weight.
//# if KIND == 1
fn a_in(i: u32) -> f32 { return a[i]; }
//# end
//# if KIND == 3
fn a_in(i: u32) -> f32 { return b[i]; }
//# end

@compute @workgroup_size(16, 16)
fn ${ENTRY}(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
    let m0 = wid.y * ${16 * TM}u;
//# if KIND == 3
    let n0 = wid.x * ${16 * TN}u;
    let big_m = p.oc;
    let big_n = p.c * p.kh * p.kw;
    let q_end = min((wid.z + 1u) * p.chunk, p.n * p.oh) * p.ow;
    let k_begin = wid.z * p.chunk * p.ow;
//# else
    let n0 = (wid.x + wid.z * nwg.x) * ${16 * TN}u;
//# end
//# if KIND == 1
    let big_m = p.oc;
    let big_n = p.n * p.oh * p.ow;
//# end
//# if KIND == 2
    let big_m = p.c;
    let hw = p.h * p.w;
    let big_n = p.n * hw;
    let khw = p.kh * p.kw;
//# end
//# for i in 0..TM
//# for j in 0..TN
    var acc${i}_${j} = 0.0;
//# end
//# end
//# if KIND == 3
    for (var k0 = k_begin; k0 < q_end; k0 += 16u) {
        // A: dY rows m0.., output positions k0..k0+15 (consecutive lanes: consecutive
        // positions of one row).
        for (var l = li; l < ${16 * 16 * TM}u; l += 256u) {
            let r = l / 16u;
            let kk = l % 16u;
            let q = k0 + kk;
            let ohw = p.oh * p.ow;
            let ok = m0 + r < big_m && q < q_end;
            let i = ((q / ohw) * p.oc + m0 + r) * ohw + q % ohw;
            a_tile[kk * ${16 * TM}u + r] = select(0.0, a[select(0u, i, ok)], ok);
        }
        // B: x at taps n0.. of those positions.
        for (var l = li; l < ${16 * 16 * TN}u; l += 256u) {
            let kk = l / ${16 * TN}u;
            let col = l % ${16 * TN}u;
            let q = k0 + kk;
            b_tile[l] = select(0.0, im2col(n0 + col, q), q < q_end && n0 + col < big_n);
        }
//# else
    for (var kq0 = 0u; kq0 < p.kq; kq0 += 4u) {
        // A: packed weight rows m0.., k-quads kq0..kq0+3, one vec4 per load.
        for (var l = li; l < ${4 * 16 * TM}u; l += 256u) {
            let r = l / 4u;
            let kq = l % 4u;
            var v = vec4<f32>(0.0);
            if (m0 + r < big_m && kq0 + kq < p.kq) { v = b4[(m0 + r) * p.kq + kq0 + kq]; }
            let o = kq * ${4 * 16 * TM}u + r;
            a_tile[o] = v.x;
            a_tile[o + ${16 * TM}u] = v.y;
            a_tile[o + ${2 * 16 * TM}u] = v.z;
            a_tile[o + ${3 * 16 * TM}u] = v.w;
        }
        // B: the gathered operand at k = 4·kq0.., columns n0...
        for (var l = li; l < ${16 * 16 * TN}u; l += 256u) {
            let k = kq0 * 4u + l / ${16 * TN}u;
            let col = n0 + l % ${16 * TN}u;
//# if KIND == 1
            b_tile[l] = select(0.0, im2col(k, col), col < big_n);
//# end
//# if KIND == 2
            // Tap t of the packed (reversed) row is kernel tap KH·KW − 1 − t.
            let oc = k / khw;
            let t = khw - 1u - k % khw;
            let n = col / hw;
            let pos = col % hw;
            let y = i32(pos / p.w + p.pad) - i32(t / p.kw);
            let xx = i32(pos % p.w + p.pad) - i32(t % p.kw);
            let s = i32(p.stride);
            let oy = u32(y / s);
            let ox = u32(xx / s);
            let ok = col < big_n && oc < p.oc && y >= 0 && xx >= 0 && y % s == 0 && xx % s == 0
                && oy < p.oh && ox < p.ow;
            let i = ((n * p.oc + oc) * p.oh + oy) * p.ow + ox;
            b_tile[l] = select(0.0, a[select(0u, i, ok)], ok);
//# end
        }
//# end
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
//# for j in 0..TN
            let bv${j} = b_tile[kk * ${16 * TN}u + lid.x + ${16 * j}u];
//# end
//# for i in 0..TM
            let av${i} = a_tile[kk * ${16 * TM}u + lid.y + ${16 * i}u];
//# for j in 0..TN
            acc${i}_${j} = fma(av${i}, bv${j}, acc${i}_${j});
//# end
//# end
        }
        workgroupBarrier();
    }
//# for i in 0..TM
//# for j in 0..TN
    {
        let m = m0 + lid.y + ${16 * i}u;
        let col = n0 + lid.x + ${16 * j}u;
        if (m < big_m && col < big_n) {
//# if KIND == 1
            let ohw = p.oh * p.ow;
            out[((col / ohw) * p.oc + m) * ohw + col % ohw] = acc${i}_${j};
//# end
//# if KIND == 2
            out[((col / hw) * p.c + m) * hw + col % hw] = acc${i}_${j};
//# end
//# if KIND == 3
            out[(wid.z * big_m + m) * big_n + col] = acc${i}_${j};
//# end
        }
    }
//# end
//# end
}
//# end
