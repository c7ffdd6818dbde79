// C[M, N] = op(A) · op(B), op = identity or transpose.
//
// Both operands are first packed into panels so that the main kernel streams contiguous
// memory and never bounds-checks a load (panels are zero-padded):
//   A: blocks of RB rows; block b holds, for each k-quad kq, RB vec4s (rows b·RB..+RB,
//      columns 4kq..4kq+3): a4[(b · tiles + kq) · RB + r].
//   B: panels of PW vec4 columns; panel p holds, for each k, its PW vec4s:
//      b4[(p · 4·tiles + k) · PW + q].
// The main kernels (generated in src/ops/matmul.rs, register tile unrolled into scalars)
// give each invocation TM rows × TN vec4 columns of C: rows are uniform over a workgroup,
// columns are spread over lanes. No workgroup memory and no barriers, which are very slow
// on llvmpipe; there every storage load is a loop over the SIMD lanes, so the tile is
// chosen to maximise FMAs per load. The subgroup variant lets each lane load a different
// row of A and shares it with subgroupBroadcast: one load instead of one per lane.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    tiles: u32,    // ceil(k / 4): k-quads
    trans_a: u32,
    trans_b: u32,
    nq: u32,       // ceil(n / 4): vec4 columns of C
    blocks: u32,   // pack kernels: A row blocks or B column panels
};

override WX: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

// ---- pack_a / pack_b: one output vec4 per invocation; x runs within a row block (A) or
// column panel (B), y + 65535·z picks the block, so only constant divisors remain. ----
@group(0) @binding(1) var<storage, read> pk_src: array<f32>;
@group(0) @binding(2) var<storage, read_write> pk_out: array<vec4<f32>>;

override RB: u32 = 8u;   // rows per A block
override PW: u32 = 8u;   // vec4 columns per B panel

fn op_a(m: u32, k: u32) -> f32 {
    if (m >= p.m || k >= p.k) { return 0.0; }
    if (p.trans_a == 1u) { return pk_src[k * p.m + m]; }
    return pk_src[m * p.k + k];
}

fn op_b(k: u32, n: u32) -> f32 {
    if (k >= p.k || n >= p.n) { return 0.0; }
    if (p.trans_b == 1u) { return pk_src[n * p.k + k]; }
    return pk_src[k * p.n + n];
}

// Aligned sources (no transpose, the row length a multiple of 4) are read as vec4s: on
// llvmpipe one vec4 load costs far less than four scalar ones.
@group(0) @binding(1) var<storage, read> pk_src4: array<vec4<f32>>;

@compute @workgroup_size(64)
fn pack_a_vec4(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= RB * p.tiles) { return; }
    let block = gid.y + gid.z * 65535u;
    if (block >= p.blocks) { return; }
    let m = block * RB + gid.x % RB;
    let v = pk_src4[min(m, p.m - 1u) * p.tiles + gid.x / RB];
    pk_out[block * RB * p.tiles + gid.x] = select(vec4<f32>(0.0), v, m < p.m);
}

@compute @workgroup_size(64)
fn pack_b_vec4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let kp = p.tiles * 4u;
    if (gid.x >= PW * kp) { return; }
    let panel = gid.y + gid.z * 65535u;
    if (panel >= p.blocks) { return; }
    let q = panel * PW + gid.x % PW;
    let k = gid.x / PW;
    let v = pk_src4[min(k, p.k - 1u) * p.nq + min(q, p.nq - 1u)];
    pk_out[panel * PW * kp + gid.x] = select(vec4<f32>(0.0), v, k < p.k && q < p.nq);
}

@compute @workgroup_size(64)
fn pack_a(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= RB * p.tiles) { return; }
    let block = gid.y + gid.z * 65535u;
    if (block >= p.blocks) { return; }
    let m = block * RB + gid.x % RB;
    let k = (gid.x / RB) * 4u;
    pk_out[block * RB * p.tiles + gid.x] =
        vec4<f32>(op_a(m, k), op_a(m, k + 1u), op_a(m, k + 2u), op_a(m, k + 3u));
}

@compute @workgroup_size(64)
fn pack_b(@builtin(global_invocation_id) gid: vec3<u32>) {
    let kp = p.tiles * 4u;
    if (gid.x >= PW * kp) { return; }
    let panel = gid.y + gid.z * 65535u;
    if (panel >= p.blocks) { return; }
    let n = (panel * PW + gid.x % PW) * 4u;
    let k = gid.x / PW;
    pk_out[panel * PW * kp + gid.x] =
        vec4<f32>(op_b(k, n), op_b(k, n + 1u), op_b(k, n + 2u), op_b(k, n + 3u));
}

// ---- matmul: the main kernel, one template expanded per register tile ----
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

// Columns 4q..4q+3 of row m, clipped at n.
fn store4(m: u32, q: u32, v: vec4<f32>) {
    if (m >= p.m || q >= p.nq) { return; }
    let n = q * 4u;
    let o = m * p.n + n;
    c[o] = v.x;
    if (n + 1u < p.n) { c[o + 1u] = v.y; }
    if (n + 2u < p.n) { c[o + 2u] = v.z; }
    if (n + 3u < p.n) { c[o + 3u] = v.w; }
}

// The template (src/ops/template.rs documents the substitution; the module of the pack
// kernels alone is the expansion with TM = 0). Variables: ENTRY (the entry point's name),
// TM × TN (rows × vec4 columns of C per invocation, accumulators `acc{row}_{col}`), SG
// (subgroup width of the subgroup variant, 0 for the plain one). Plain: every lane loads
// the TM A vec4s of its workgroup's row block. Subgroup (one subgroup per workgroup): lane
// `sl` loads row g·SG + sl of the block and subgroupBroadcast hands row i to every lane.
//# if TM > 0 && !TILED
@compute @workgroup_size(WX)
//# if SG
fn ${ENTRY}(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(subgroup_invocation_id) sl: u32) {
//# else
fn ${ENTRY}(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
//# end
    let panel = wid.x + wid.z * nwg.x;
    let bb = panel * p.tiles * 4u * (WX * ${TN}u) + lid.x;
//# for i in 0..TM
//# for j in 0..TN
    var acc${i}_${j} = vec4<f32>(0.0);
//# end
//# end
//# if SG
//# for g in 0..TM / SG
    let ab${g} = (wid.y * ${TM / SG}u + ${g}u) * p.tiles * ${SG}u + sl;
//# end
//# else
    let ab = wid.y * p.tiles * ${TM}u;
//# end
    for (var kv = 0u; kv < p.tiles; kv++) {
//# if SG
//# for g in 0..TM / SG
        let ag${g} = a4[ab${g} + kv * ${SG}u];
//# end
//# else
//# for i in 0..TM
        let av${i} = a4[ab + kv * ${TM}u + ${i}u];
//# end
//# end
        // One k-quad: the B vec4s of its four k-steps, then row by row (so one row's
        // accumulators stay in registers) the row's A value of each step and its FMAs.
//# for t in 0..4
//# for j in 0..TN
        let b${j}_${t} = b4[bb + (kv * 4u + ${t}u) * (WX * ${TN}u) + ${j}u * WX];
//# end
//# end
//# for i in 0..TM
//# for t in 0..4
//# if SG
        let a${i}_${t} = subgroupBroadcast(ag${i / SG}.${t:xyzw}, ${i % SG}u);
//# else
        let a${i}_${t} = av${i}.${t:xyzw};
//# end
//# for j in 0..TN
        acc${i}_${j} = fma(vec4<f32>(a${i}_${t}), b${j}_${t}, acc${i}_${j});
//# end
//# end
//# end
    }
//# for i in 0..TM
//# for j in 0..TN
    store4(wid.y * ${TM}u + ${i}u, panel * WX * ${TN}u + lid.x + ${j}u * WX, acc${i}_${j});
//# end
//# end
}
//# end

// The workgroup-tiled variant for real GPUs (TILED = 1): a 16 × 16 workgroup computes a
// block of BM = 16·TM rows × BNV = 16·TN vec4 columns of C. Per slice of 16 k it stages the
// block's A rows (from the packed A, RB = BM, transposed to [k][row]) and B columns (from
// the packed B, PW = BNV) in workgroup memory with vec4 loads, then every invocation runs
// its TM × TN vec4 accumulators over the slice from workgroup memory. Two barriers per
// slice: the standard design on discrete and integrated GPUs, slow on llvmpipe.
//# if TM > 0 && TILED
var<workgroup> a_tile: array<f32, ${16 * 16 * TM}>;        // [k · BM + row]
var<workgroup> b_tile: array<vec4<f32>, ${16 * 16 * TN}>;  // [k · BNV + column]

@compute @workgroup_size(16, 16)
fn ${ENTRY}(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
    let panel = wid.x + wid.z * nwg.x;
    // A block wid.y: the vec4 of k-quad kq, row r at a4[(wid.y · tiles + kq) · BM + r];
    // B panel: the vec4 of k, column q at b4[(panel · 4 · tiles + k) · BNV + q].
    let ab = wid.y * p.tiles * ${16 * TM}u;
    let bb = panel * p.tiles * ${4 * 16 * TN}u;
//# for i in 0..TM
//# for j in 0..TN
    var acc${i}_${j} = vec4<f32>(0.0);
//# end
//# end
    for (var kq0 = 0u; kq0 < p.tiles; kq0 += 4u) {
        for (var l = li; l < ${4 * 16 * TM}u; l += 256u) {
            let kq = l / ${16 * TM}u;
            let r = l % ${16 * TM}u;
            var v = vec4<f32>(0.0);
            if (kq0 + kq < p.tiles) { v = a4[ab + kq0 * ${16 * TM}u + l]; }
            let o = kq * ${4 * 16 * TM}u + r;
            a_tile[o] = v.x;
            a_tile[o + ${16 * TM}u] = v.y;
            a_tile[o + ${2 * 16 * TM}u] = v.z;
            a_tile[o + ${3 * 16 * TM}u] = v.w;
        }
        for (var l = li; l < ${16 * 16 * TN}u; l += 256u) {
            var v = vec4<f32>(0.0);
            if (kq0 * 4u + l / ${16 * TN}u < p.tiles * 4u) { v = b4[bb + kq0 * ${4 * 16 * TN}u + l]; }
            b_tile[l] = v;
        }
        workgroupBarrier();
        for (var k = 0u; k < 16u; k++) {
//# for j in 0..TN
            let b${j} = b_tile[k * ${16 * TN}u + lid.x + ${16 * j}u];
//# end
//# for i in 0..TM
            let a${i} = a_tile[k * ${16 * TM}u + lid.y * ${TM}u + ${i}u];
//# for j in 0..TN
            acc${i}_${j} = fma(vec4<f32>(a${i}), b${j}, acc${i}_${j});
//# end
//# end
        }
        workgroupBarrier();
    }
//# for i in 0..TM
//# for j in 0..TN
    store4(wid.y * ${16 * TM}u + lid.y * ${TM}u + ${i}u, panel * ${16 * TN}u + lid.x + ${16 * j}u, acc${i}_${j});
//# end
//# end
}
//# end
