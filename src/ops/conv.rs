//! 2-D convolution (NCHW) as implicit GEMMs: forward, backward data and backward weight,
//! each register-tiled without workgroup memory (see `shaders/conv2d.wgsl`).

use super::codegen::{each, leak};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, KernelSpec, ParamBuilder};
use crate::tensor::Tensor;
use std::cell::RefCell;
use std::collections::HashMap;

const COMMON: &str = include_str!("../../shaders/conv2d.wgsl");
const PACK_ROWS: KernelSpec = super::kernel!("conv2d", "pack_rows", 1, 1);

/// The three conv kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Forward,
    BackwardData,
    BackwardWeight,
    /// Backward weight reading dY as vec4s (OW a multiple of 4).
    BackwardWeightVec4,
}

/// The register tile of one conv kernel: `rows` × `cols` accumulators per invocation
/// (rows are channels, uniform over a workgroup; cols are spread over lanes, `workgroup`
/// apart). Forward rows are output channels and cols output positions; backward data rows
/// are input channels and cols input positions; backward weight rows are output channels
/// and cols weight entries `(c, kh, kw)`.
///
/// A subgroup tile ([`Tile::subgroup`]) runs one subgroup per workgroup and shares the row
/// operand across lanes with `subgroupBroadcast`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tile {
    /// Accumulator rows per invocation (channels).
    pub rows: u32,
    /// Accumulator columns per invocation (positions or weight entries).
    pub cols: u32,
    /// Lanes per workgroup (for a subgroup tile, the subgroup size once resolved).
    pub workgroup: u32,
    /// A subgroup tile ([`Tile::subgroup`]).
    pub subgroup: bool,
}

impl Tile {
    /// A plain tile (runs everywhere): `rows` × `cols` accumulators per invocation,
    /// `workgroup` lanes per workgroup; the sizes are checked when a kernel uses it.
    pub const fn new(rows: u32, cols: u32, workgroup: u32) -> Tile {
        Tile {
            rows,
            cols,
            workgroup,
            subgroup: false,
        }
    }

    /// A subgroup tile: `rows` a multiple of the subgroup size, up to 64; `cols` up to 8.
    pub const fn subgroup(rows: u32, cols: u32) -> Tile {
        Tile {
            rows,
            cols,
            workgroup: 0,
            subgroup: true,
        }
    }

    /// The tile as it runs on `gpu` (a subgroup tile gets the subgroup size), checked.
    fn resolve(self, gpu: &Gpu) -> Result<Tile> {
        if !self.subgroup {
            self.check()?;
            return Ok(self);
        }
        let bad = |why: &str| Err(Error::Config(format!("conv2d: tile {self:?}: {why}")));
        let Some(sg) = gpu.subgroup_size() else {
            return bad("this device has no fixed-size subgroups");
        };
        if self.rows == 0
            || !self.rows.is_multiple_of(sg)
            || self.rows > 64
            || !(1..=8).contains(&self.cols)
        {
            return bad("rows must be a multiple of the subgroup size up to 64, cols 1..=8");
        }
        Ok(Tile {
            workgroup: sg,
            ..self
        })
    }

    /// A resolved subgroup tile with no more rows than whole subgroups covering `rows`
    /// (rows past the channel count would be wasted work).
    fn fit_rows(self, rows: usize) -> Tile {
        if !self.subgroup {
            return self;
        }
        let cover = (rows as u32).next_multiple_of(self.workgroup);
        Tile {
            rows: self.rows.min(cover),
            ..self
        }
    }

    fn check(&self) -> Result<()> {
        if !(1..=16).contains(&self.rows)
            || !(1..=16).contains(&self.cols)
            || !(1..=256).contains(&self.workgroup)
        {
            return Err(Error::Config(format!(
                "conv2d: unsupported tile {self:?} (rows and cols 1..=16, workgroup 1..=256)"
            )));
        }
        Ok(())
    }

    /// Columns covered by one workgroup.
    fn span(&self) -> usize {
        (self.cols * self.workgroup) as usize
    }
}

/// Tile shapes for the three conv kernels, chosen per adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvConfig {
    /// The forward kernel, also used for backward data at stride 1 (a forward convolution
    /// with the flipped, transposed weight).
    pub forward: Tile,
    /// The backward-data kernel for strided convolutions.
    pub backward_data: Tile,
    /// The backward-weight kernel (the gradient of the weight).
    pub backward_weight: Tile,
    /// Target number of invocations for backward weight: the position sum is split into
    /// partial sums (added in a fixed order afterwards) until about this many run.
    /// 0 means never split (CPU adapters have few cores and want long loops).
    pub weight_parallelism: usize,
}

impl ConvConfig {
    /// Measured fastest on lavapipe/llvmpipe (`examples/conv_speed.rs`).
    pub const CPU: ConvConfig = ConvConfig {
        forward: Tile::new(8, 8, 16),
        backward_data: Tile::new(8, 8, 16),
        backward_weight: Tile::new(8, 8, 16),
        weight_parallelism: 0,
    };
    /// A starting point for real GPUs (not tuned: no GPU on the development machine).
    pub const GPU: ConvConfig = ConvConfig {
        forward: Tile::new(4, 4, 64),
        backward_data: Tile::new(4, 4, 64),
        backward_weight: Tile::new(4, 4, 64),
        weight_parallelism: 65536,
    };

    /// The subgroup kernels, for llvmpipe with subgroups (lavapipe): each lane loads a
    /// different channel's weights (or dY) and `subgroupBroadcast` shares them.
    pub const CPU_SUBGROUP: ConvConfig = ConvConfig {
        forward: Tile::subgroup(32, 4),
        backward_data: Tile::subgroup(32, 4),
        backward_weight: Tile::subgroup(32, 4),
        weight_parallelism: 0,
    };

    /// The default for `gpu`'s adapter.
    pub fn for_gpu(gpu: &Gpu) -> ConvConfig {
        match super::tuning(gpu) {
            super::Tuning::CpuSubgroup => Self::CPU_SUBGROUP,
            super::Tuning::Cpu => Self::CPU,
            super::Tuning::Gpu => Self::GPU,
        }
    }
}

/// The generated entry point for `kind` with tile `rows × cols`, kept for the life of the
/// process (the pipeline cache keys on the entry name, which encodes the tile).
fn spec(kind: Kind, t: Tile) -> KernelSpec {
    type Sources = HashMap<(Kind, Tile), (&'static str, &'static str)>;
    thread_local! {
        static SOURCES: RefCell<Sources> = RefCell::default();
    }
    let (source, entry) = SOURCES.with(|s| {
        *s.borrow_mut().entry((kind, t)).or_insert_with(|| {
            let sg = t.subgroup.then_some(t.workgroup);
            let (name, body) = match kind {
                Kind::Forward => ("forward", gen_forward(t.rows, t.cols, sg)),
                Kind::BackwardData => ("backward_data", gen_backward_data(t.rows, t.cols, sg)),
                Kind::BackwardWeight => ("backward_weight", gen_backward_weight(t.rows, t.cols, false, sg)),
                Kind::BackwardWeightVec4 => ("backward_weight_v4", gen_backward_weight(t.rows, t.cols, true, sg)),
            };
            let (entry, lane) = match sg {
                None => (format!("{name}_{}x{}", t.rows, t.cols), ""),
                Some(sg) => (
                    format!("{name}_sg{sg}_{}x{}", t.rows, t.cols),
                    "    @builtin(subgroup_invocation_id) sl: u32,\n",
                ),
            };
            let source = format!("{COMMON}\n@compute @workgroup_size(WX)\nfn {entry}(\n    @builtin(workgroup_id) wid: vec3<u32>,\n    @builtin(local_invocation_id) lid: vec3<u32>,\n    @builtin(num_workgroups) nwg: vec3<u32>,\n{lane}) {{\n{body}}}\n");
            (leak(source), leak(entry))
        })
    });
    KernelSpec {
        family: "conv2d",
        source,
        entry,
        reads: 2,
        writes: 1,
    }
}

/// The FMAs of every accumulator row with the column values `x{j}_{t}` of each step `t`:
/// row `i`'s operand is `{src}{i}{step}`, or with `sg` lane `i % sg` of `{src}{i / sg}{step}`
/// broadcast over the subgroup. Row by row, so one row's accumulators stay in registers.
fn row_fmas(w: &mut String, tm: u32, tn: u32, sg: Option<u32>, src: &str, steps: &[&str]) {
    for i in 0..tm {
        for (t, e) in steps.iter().enumerate() {
            let v = match sg {
                None => format!("{src}{i}{e}"),
                Some(sg) => format!("subgroupBroadcast({src}{}{e}, {}u)", i / sg, i % sg),
            };
            each(w, 1, 0, &format!("let {src}v{i}_{t} = {v};"));
            each(
                w,
                1,
                tn,
                &format!("acc{i}_{{j}} = fma({src}v{i}_{t}, x{{j}}_{t}, acc{i}_{{j}});"),
            );
        }
    }
}

/// Forward: rows = output channels, cols = output positions `(n, oh, ow)` flattened;
/// `a` = x, `b` = weight as `[OC, K]`. With `sg` (the subgroup variant) lane `l` loads
/// weight row `g·sg + l` and `subgroupBroadcast` shares it, instead of every lane loading
/// every row.
fn gen_forward(tm: u32, tn: u32, sg: Option<u32>) -> String {
    let mut s = String::new();
    let w = &mut s;
    each(
        w,
        1,
        0,
        "let ohw = p.oh * p.ow; let npos = p.n * ohw; let hw = p.h * p.w;",
    );
    each(
        w,
        1,
        0,
        "let kk = p.c * p.kh * p.kw; let s = i32(p.stride); let pad = i32(p.pad);",
    );
    each(w, 1, 0, &format!("let m0 = wid.y * {tm}u;"));
    each(
        w,
        1,
        0,
        &format!("let qb = (wid.x + wid.z * nwg.x) * WX * {tn}u + lid.x;"),
    );
    match sg {
        None => each(w, tm, 0, "let r{i} = min(m0 + {i}u, p.oc - 1u) * p.tiles;"),
        Some(sg) => each(
            w,
            tm / sg,
            0,
            &format!("let r{{i}} = min(m0 + {{i}}u * {sg}u + sl, p.oc - 1u) * p.tiles;"),
        ),
    }
    each(
        w,
        tn,
        0,
        "let q{i} = min(qb + {i}u * WX, npos - 1u); let n{i} = q{i} / ohw; let o{i} = q{i} % ohw;",
    );
    each(
        w,
        tn,
        0,
        "let ih{i} = i32(o{i} / p.ow) * s - pad; let iw{i} = i32(o{i} % p.ow) * s - pad;",
    );
    each(w, tn, 0, "let xb{i} = i32(n{i} * p.c * hw);");
    each(w, tm, tn, "var acc{i}_{j} = 0.0;");
    // k = (c, kh, kw) advances one step per k, branch-free (the wrap is a select).
    each(w, 1, 0, "var kh = 0u; var kw = 0u; var xc = 0;");
    each(w, 1, 0, "for (var kv = 0u; kv < p.tiles; kv++) {");
    match sg {
        None => each(w, tm, 0, "let w{i} = b4[r{i} + kv];"),
        Some(sg) => each(w, tm / sg, 0, "let w{i} = b4[r{i} + kv];"),
    }
    // The inputs of all four k-steps first, then the FMAs row by row.
    for t in 0..4 {
        each(
            w,
            tn,
            0,
            &format!("let y{{i}}_{t} = ih{{i}} + i32(kh); let xw{{i}}_{t} = iw{{i}} + i32(kw);"),
        );
        each(
            w,
            tn,
            0,
            &format!(
                "let ok{{i}}_{t} = u32(y{{i}}_{t}) < p.h && u32(xw{{i}}_{t}) < p.w && xc < i32(p.c * hw);"
            ),
        );
        each(
            w,
            tn,
            0,
            &format!(
                "let x{{i}}_{t} = select(0.0, a[select(0u, u32(xb{{i}} + xc + y{{i}}_{t} * i32(p.w) + xw{{i}}_{t}), ok{{i}}_{t})], ok{{i}}_{t});"
            ),
        );
        each(
            w,
            1,
            0,
            &format!(
                "kw += 1u; let wrap_w{t} = kw == p.kw; kw = select(kw, 0u, wrap_w{t}); kh += u32(wrap_w{t});"
            ),
        );
        each(
            w,
            1,
            0,
            &format!(
                "let wrap_h{t} = kh == p.kh; kh = select(kh, 0u, wrap_h{t}); xc += select(0, i32(hw), wrap_h{t});"
            ),
        );
    }
    row_fmas(w, tm, tn, sg, "w", &[".x", ".y", ".z", ".w"]);
    each(w, 1, 0, "}");
    each(
        w,
        tm,
        tn,
        "if (m0 + {i}u < p.oc && qb + {j}u * WX < npos) { out[(n{j} * p.oc + m0 + {i}u) * ohw + o{j}] = acc{i}_{j}; }",
    );
    s
}

/// Backward data: rows = input channels, cols = input positions of one residue class
/// `(ih mod s, iw mod s)` (workgroup_id.y / tiles), so every tap loop is uniform and only
/// visits the taps `kh ≡ ih + pad (mod s)` that reach the position; `a` = dY,
/// `b` = weight `[OC, C, KH, KW]`.
fn gen_backward_data(tm: u32, tn: u32, sg: Option<u32>) -> String {
    let mut s = String::new();
    let w = &mut s;
    each(
        w,
        1,
        0,
        "let st = p.stride; let khw = p.kh * p.kw; let ohw = p.oh * p.ow;",
    );
    each(
        w,
        1,
        0,
        "let cls = wid.y / p.tiles; let rh = cls / st; let rw = cls % st;",
    );
    each(
        w,
        1,
        0,
        "let hm = (p.h + st - 1u) / st; let wm = (p.w + st - 1u) / st; let npos = p.n * hm * wm;",
    );
    each(w, 1, 0, &format!("let m0 = (wid.y % p.tiles) * {tm}u;"));
    each(
        w,
        1,
        0,
        &format!("let qb = (wid.x + wid.z * nwg.x) * WX * {tn}u + lid.x;"),
    );
    each(
        w,
        1,
        0,
        "let kh0 = (rh + p.pad) % st; let kw0 = (rw + p.pad) % st;",
    );
    // Weight rows: one per accumulator row, or (subgroup variant) one per lane and group.
    match sg {
        None => each(w, tm, 0, "let r{i} = min(m0 + {i}u, p.c - 1u) * khw;"),
        Some(sg) => each(
            w,
            tm / sg,
            0,
            &format!("let r{{i}} = min(m0 + {{i}}u * {sg}u + sl, p.c - 1u) * khw;"),
        ),
    }
    each(
        w,
        tn,
        0,
        "let q{i} = min(qb + {i}u * WX, npos - 1u); let n{i} = q{i} / (hm * wm);",
    );
    each(
        w,
        tn,
        0,
        "let ih{i} = rh + st * ((q{i} / wm) % hm); let iw{i} = rw + st * (q{i} % wm);",
    );
    each(
        w,
        tn,
        0,
        "let live{i} = qb + {i}u * WX < npos && ih{i} < p.h && iw{i} < p.w;",
    );
    // Output row / column reached by the first tap of the class; later taps step back by 1.
    each(
        w,
        tn,
        0,
        "let oy{i} = i32((ih{i} + p.pad - kh0) / st); let ox{i} = i32((iw{i} + p.pad - kw0) / st);",
    );
    each(w, tn, 0, "var db{i} = i32(n{i} * p.oc * ohw);");
    each(w, tm, tn, "var acc{i}_{j} = 0.0;");
    each(w, 1, 0, "var wb = 0u;");
    each(w, 1, 0, "for (var oc = 0u; oc < p.oc; oc++) {");
    each(w, 1, 0, "var dh = 0;");
    each(w, 1, 0, "for (var kh = kh0; kh < p.kh; kh += st) {");
    each(
        w,
        tn,
        0,
        "let y{i} = oy{i} - dh; let hok{i} = u32(y{i}) < p.oh; let rb{i} = db{i} + y{i} * i32(p.ow);",
    );
    each(w, 1, 0, "var dw = 0;");
    each(w, 1, 0, "for (var kw = kw0; kw < p.kw; kw += st) {");
    each(
        w,
        tn,
        0,
        "let xw{i} = ox{i} - dw; let ok{i} = hok{i} && u32(xw{i}) < p.ow;",
    );
    each(
        w,
        tn,
        0,
        "let d{i} = select(0.0, a[select(0u, u32(rb{i} + xw{i}), ok{i})], ok{i});",
    );
    each(w, 1, 0, "let ko = wb + kh * p.kw + kw;");
    match sg {
        None => {
            each(w, tm, 0, "let w{i} = b[r{i} + ko];");
            each(w, tm, tn, "acc{i}_{j} = fma(w{i}, d{j}, acc{i}_{j});");
        }
        Some(sg) => {
            each(w, tm / sg, 0, "let wl{i} = b[r{i} + ko];");
            for i in 0..tm {
                each(
                    w,
                    1,
                    0,
                    &format!("let w{i} = subgroupBroadcast(wl{}, {}u);", i / sg, i % sg),
                );
                each(
                    w,
                    1,
                    tn,
                    &format!("acc{i}_{{j}} = fma(w{i}, d{{j}}, acc{i}_{{j}});"),
                );
            }
        }
    }
    each(w, 1, 0, "dw += 1;");
    each(w, 1, 0, "}");
    each(w, 1, 0, "dh += 1;");
    each(w, 1, 0, "}");
    each(w, tn, 0, "db{i} += i32(ohw);");
    each(w, 1, 0, "wb += p.c * khw;");
    each(w, 1, 0, "}");
    each(
        w,
        tm,
        tn,
        "if (m0 + {i}u < p.c && live{j}) { out[((n{j} * p.c + m0 + {i}u) * p.h + ih{j}) * p.w + iw{j}] = acc{i}_{j}; }",
    );
    s
}

/// Backward weight: rows = output channels, cols = weight entries `k = (c, kh, kw)`; the
/// invocation sums over the `(n, oh)` rows of its split (workgroup_id.z) and every `ow`;
/// `a` = dY, `b` = x, `out` = `[splits, OC, K]`.
fn gen_backward_weight(tm: u32, tn: u32, vec4: bool, sg: Option<u32>) -> String {
    let mut s = String::new();
    let w = &mut s;
    each(
        w,
        1,
        0,
        "let khw = p.kh * p.kw; let kk = p.c * khw; let hw = p.h * p.w; let ohw = p.oh * p.ow;",
    );
    each(w, 1, 0, "let s = i32(p.stride); let pad = i32(p.pad);");
    each(w, 1, 0, &format!("let m0 = wid.y * {tm}u;"));
    each(w, 1, 0, &format!("let kb = wid.x * WX * {tn}u + lid.x;"));
    // dY rows: one per accumulator row, or (subgroup variant) one per lane and group.
    let loads = match sg {
        None => {
            each(w, tm, 0, "let r{i} = min(m0 + {i}u, p.oc - 1u) * ohw;");
            tm
        }
        Some(sg) => {
            each(
                w,
                tm / sg,
                0,
                &format!("let r{{i}} = min(m0 + {{i}}u * {sg}u + sl, p.oc - 1u) * ohw;"),
            );
            tm / sg
        }
    };
    each(
        w,
        tn,
        0,
        "let kq{i} = min(kb + {i}u * WX, kk - 1u); let rem{i} = kq{i} % khw;",
    );
    each(
        w,
        tn,
        0,
        "let cx{i} = i32((kq{i} / khw) * hw); let kh{i} = i32(rem{i} / p.kw) - pad; let kw{i} = i32(rem{i} % p.kw) - pad;",
    );
    each(w, tm, tn, "var acc{i}_{j} = 0.0;");
    each(
        w,
        1,
        0,
        "let rbeg = wid.z * p.chunk; let rend = min(rbeg + p.chunk, p.n * p.oh);",
    );
    each(w, 1, 0, "var n = rbeg / p.oh; var oh = rbeg % p.oh;");
    each(w, 1, 0, "for (var row = rbeg; row < rend; row++) {");
    each(
        w,
        1,
        0,
        "let xn = i32(n * p.c * hw); let dyb = n * p.oc * ohw + oh * p.ow;",
    );
    each(
        w,
        tn,
        0,
        "let y{i} = i32(oh) * s + kh{i}; let hok{i} = u32(y{i}) < p.h; let rb{i} = xn + cx{i} + y{i} * i32(p.w);",
    );
    each(w, tn, 0, "var xw{i} = kw{i};");
    let steps: &[&str] = if vec4 {
        each(w, 1, 0, "for (var ow = 0u; ow < p.ow; ow += 4u) {");
        each(w, loads, 0, "let d{i} = a4[(dyb + r{i} + ow) / 4u];");
        &[".x", ".y", ".z", ".w"]
    } else {
        each(w, 1, 0, "for (var ow = 0u; ow < p.ow; ow++) {");
        each(w, loads, 0, "let d{i} = a[dyb + r{i} + ow];");
        &[""]
    };
    // The inputs of every step first, then the FMAs row by row.
    for t in 0..steps.len() {
        each(
            w,
            tn,
            0,
            &format!("let ok{{i}}_{t} = hok{{i}} && u32(xw{{i}}) < p.w;"),
        );
        each(
            w,
            tn,
            0,
            &format!(
                "let x{{i}}_{t} = select(0.0, b[select(0u, u32(rb{{i}} + xw{{i}}), ok{{i}}_{t})], ok{{i}}_{t});"
            ),
        );
        each(w, tn, 0, "xw{i} += s;");
    }
    row_fmas(w, tm, tn, sg, "d", steps);
    each(w, 1, 0, "}");
    each(w, 1, 0, "oh += 1u; if (oh == p.oh) { oh = 0u; n += 1u; }");
    each(w, 1, 0, "}");
    each(w, 1, 0, "let ob = wid.z * p.oc * kk;");
    each(
        w,
        tm,
        tn,
        "if (m0 + {i}u < p.oc && kb + {j}u * WX < kk) { out[ob + (m0 + {i}u) * kk + kb + {j}u * WX] = acc{i}_{j}; }",
    );
    s
}

/// Sizes of one convolution.
#[derive(Debug, Clone, Copy)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    oc: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    stride: usize,
    pad: usize,
}

impl Geom {
    fn new(x: &[usize], wt: &[usize], stride: usize, pad: usize) -> Result<Geom> {
        let both = || format!("input {x:?}, weight {wt:?}, stride {stride}, padding {pad}");
        if x.len() != 4 || wt.len() != 4 {
            return Err(Error::shape(
                "conv2d",
                format!("need 4-D [N, C, H, W] and [OC, C, KH, KW]: {}", both()),
            ));
        }
        if x[1] != wt[1] {
            return Err(Error::shape(
                "conv2d",
                format!(
                    "input channels {} != weight channels {}: {}",
                    x[1],
                    wt[1],
                    both()
                ),
            ));
        }
        if stride == 0 {
            return Err(Error::shape(
                "conv2d",
                format!("stride must be at least 1: {}", both()),
            ));
        }
        if wt[2] > x[2] + 2 * pad || wt[3] > x[3] + 2 * pad || wt[2] == 0 || wt[3] == 0 {
            return Err(Error::shape(
                "conv2d",
                format!("kernel larger than the padded input: {}", both()),
            ));
        }
        Ok(Geom {
            n: x[0],
            c: x[1],
            h: x[2],
            w: x[3],
            oc: wt[0],
            kh: wt[2],
            kw: wt[3],
            oh: (x[2] + 2 * pad - wt[2]) / stride + 1,
            ow: (x[3] + 2 * pad - wt[3]) / stride + 1,
            stride,
            pad,
        })
    }

    fn params(&self, tiles: usize, chunk: usize) -> ParamBuilder {
        ParamBuilder::new()
            .u(self.n)
            .u(self.c)
            .u(self.h)
            .u(self.w)
            .u(self.oc)
            .u(self.oh)
            .u(self.ow)
            .u(self.kh)
            .u(self.kw)
            .u(self.stride)
            .u(self.pad)
            .u(tiles)
            .u(chunk)
    }

    fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }
}

/// Workgroups for `cols` columns of tile `t` along x (spilling into z past 65535).
fn col_groups(cols: usize, t: Tile) -> [u32; 2] {
    let g = super::groups_1d(cols, t.span() as u32);
    [g[0], g[1]]
}

fn wx(t: Tile) -> [(&'static str, f64); 1] {
    [("WX", t.workgroup as f64)]
}

/// Pack `w` as `[rows, K]` rows padded to a multiple of 4 (`flip`: transposed with taps
/// reversed, see `pack_rows` in the shader).
fn pack(gpu: &Gpu, w: &Tensor, rows: usize, k: usize, taps: usize, flip: bool) -> Result<Tensor> {
    let kp = k.next_multiple_of(4);
    let wp = Tensor::empty(gpu, &[rows, kp])?;
    gpu.dispatch(
        &PACK_ROWS,
        &[],
        ParamBuilder::new()
            .u(rows)
            .u(k)
            .u(kp)
            .u(flip as usize)
            .u(0)
            .u(taps),
        &[w.binding(), wp.binding()],
        super::groups_1d(rows * kp, 256),
    )?;
    Ok(wp)
}

fn forward(gpu: &Gpu, x: &Tensor, w: &Tensor, g: Geom, t: Tile) -> Result<Tensor> {
    let t = t.resolve(gpu)?;
    let wp = pack(gpu, w, g.oc, g.k(), g.kh * g.kw, false)?;
    forward_packed(gpu, x, &wp, g, t)
}

/// The forward kernel with a weight already packed by [`pack`].
fn forward_packed(gpu: &Gpu, x: &Tensor, wp: &Tensor, g: Geom, mut t: Tile) -> Result<Tensor> {
    t = t.fit_rows(g.oc);
    let out = Tensor::empty(gpu, &[g.n, g.oc, g.oh, g.ow])?;
    let [gx, gz] = col_groups(g.n * g.oh * g.ow, t);
    gpu.dispatch(
        &spec(Kind::Forward, t),
        &wx(t),
        g.params(wp.shape()[1] / 4, 0),
        &[x.binding(), wp.binding(), out.binding()],
        [gx, g.oc.div_ceil(t.rows as usize) as u32, gz],
    )?;
    Ok(out)
}

fn backward_data(gpu: &Gpu, dy: &Tensor, w: &Tensor, g: Geom, cfg: ConvConfig) -> Result<Tensor> {
    if g.stride == 1 && g.kh == g.kw && g.pad < g.kh {
        // At stride 1, dX is the forward convolution of dY with the transposed, flipped
        // weight and padding K - 1 - p: reuse the (faster, vec4-weight) forward kernel.
        let t = cfg.forward.resolve(gpu)?;
        let wp = pack(gpu, w, g.c, g.oc * g.kh * g.kw, g.kh * g.kw, true)?;
        let gt = Geom::new(
            &[g.n, g.oc, g.oh, g.ow],
            &[g.c, g.oc, g.kh, g.kw],
            1,
            g.kh - 1 - g.pad,
        )?;
        return forward_packed(gpu, dy, &wp, gt, t);
    }
    let t = cfg.backward_data.resolve(gpu)?.fit_rows(g.c);
    let dx = Tensor::empty(gpu, &[g.n, g.c, g.h, g.w])?;
    let s = g.stride;
    let tiles = g.c.div_ceil(t.rows as usize);
    let [gx, gz] = col_groups(g.n * g.h.div_ceil(s) * g.w.div_ceil(s), t);
    let gy = s * s * tiles;
    if gy > 65535 {
        return Err(Error::Limit {
            op: "conv2d backward data",
            detail: format!(
                "stride {s} with {} channels needs more than 65535 workgroups",
                g.c
            ),
        });
    }
    gpu.dispatch(
        &spec(Kind::BackwardData, t),
        &wx(t),
        g.params(tiles, 0),
        &[dy.binding(), w.binding(), dx.binding()],
        [gx, gy as u32, gz],
    )?;
    Ok(dx)
}

fn backward_weight(
    gpu: &Gpu,
    dy: &Tensor,
    x: &Tensor,
    g: Geom,
    t: Tile,
    parallelism: usize,
) -> Result<Tensor> {
    let t = t.resolve(gpu)?.fit_rows(g.oc);
    let x_groups = g.k().div_ceil(t.span());
    let row_groups = g.oc.div_ceil(t.rows as usize);
    let rows = g.n * g.oh;
    let invocations = x_groups * t.workgroup as usize * row_groups;
    let splits = if parallelism == 0 {
        1
    } else {
        parallelism
            .div_ceil(invocations)
            .clamp(1, rows.clamp(1, 1024))
    };
    let chunk = rows.div_ceil(splits).max(1);
    let splits = rows.div_ceil(chunk).max(1);
    if x_groups > 65535 {
        return Err(Error::Limit {
            op: "conv2d backward weight",
            detail: format!("{} weight columns need more than 65535 workgroups", g.k()),
        });
    }
    let shape = [splits, g.oc, g.c, g.kh, g.kw];
    let out = Tensor::empty(gpu, &shape)?;
    gpu.dispatch(
        &spec(
            if g.ow.is_multiple_of(4) {
                Kind::BackwardWeightVec4
            } else {
                Kind::BackwardWeight
            },
            t,
        ),
        &wx(t),
        g.params(0, chunk),
        &[dy.binding(), x.binding(), out.binding()],
        [x_groups as u32, row_groups as u32, splits as u32],
    )?;
    if splits == 1 {
        out.reshape(&shape[1..])
    } else {
        out.sum_axes(0..1)
    }
}

impl Tensor {
    /// 2-D convolution of `self` `[N, C, H, W]` with `weight` `[OC, C, KH, KW]`, zero
    /// padding `padding` on every side, plus an optional `bias` `[OC]`.
    /// Output `[N, OC, (H + 2p - KH) / s + 1, (W + 2p - KW) / s + 1]`.
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
        padding: usize,
    ) -> Result<Tensor> {
        self.conv2d_with(
            weight,
            bias,
            stride,
            padding,
            ConvConfig::for_gpu(self.gpu()),
        )
    }

    /// [`Tensor::conv2d`] with explicit tile shapes (for tuning on a new adapter).
    pub fn conv2d_with(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
        padding: usize,
        cfg: ConvConfig,
    ) -> Result<Tensor> {
        let g = Geom::new(self.shape(), weight.shape(), stride, padding)?;
        if let Some(b) = bias
            && b.shape() != [g.oc]
        {
            return Err(Error::shape(
                "conv2d",
                format!(
                    "bias {:?} does not match weight {:?}",
                    b.shape(),
                    weight.shape()
                ),
            ));
        }
        let gpu = self.gpu().clone();
        let out = forward(&gpu, self, weight, g, cfg.forward)?;
        let (x, w) = (self.detach(), weight.detach());
        let (need_dx, need_dw) = (self.requires_grad(), weight.requires_grad());
        self.gpu().record(&out, &[self, weight], move |dy| {
            let dx = if need_dx {
                Some(backward_data(&gpu, dy, &w, g, cfg)?)
            } else {
                None
            };
            let dw = if need_dw {
                Some(backward_weight(
                    &gpu,
                    dy,
                    &x,
                    g,
                    cfg.backward_weight,
                    cfg.weight_parallelism,
                )?)
            } else {
                None
            };
            Ok(vec![dx, dw])
        });
        match bias {
            Some(b) => out.add_along(b, 1),
            None => Ok(out),
        }
    }

    /// Gradient of [`Tensor::conv2d`] wrt its input, from `self` = dY (no tape).
    /// Exposed for benchmarks and tests.
    pub fn conv2d_backward_data(
        &self,
        weight: &Tensor,
        input_shape: &[usize],
        stride: usize,
        padding: usize,
        cfg: ConvConfig,
    ) -> Result<Tensor> {
        let g = Geom::new(input_shape, weight.shape(), stride, padding)?;
        check_dy(self, &g)?;
        backward_data(self.gpu(), self, weight, g, cfg)
    }

    /// Gradient of [`Tensor::conv2d`] wrt its weight, from `self` = dY (no tape).
    /// Exposed for benchmarks and tests.
    pub fn conv2d_backward_weight(
        &self,
        input: &Tensor,
        weight_shape: &[usize],
        stride: usize,
        padding: usize,
        cfg: ConvConfig,
    ) -> Result<Tensor> {
        let g = Geom::new(input.shape(), weight_shape, stride, padding)?;
        check_dy(self, &g)?;
        backward_weight(
            self.gpu(),
            self,
            input,
            g,
            cfg.backward_weight,
            cfg.weight_parallelism,
        )
    }
}

fn check_dy(dy: &Tensor, g: &Geom) -> Result<()> {
    let want = [g.n, g.oc, g.oh, g.ow];
    if dy.shape() != want {
        return Err(Error::shape(
            "conv2d backward",
            format!("dY {:?} vs output {want:?}", dy.shape()),
        ));
    }
    Ok(())
}

/// Plain-Rust references for the tests (direct loops, f64 accumulation).
#[cfg(any(test, feature = "oracles"))]
pub mod cpu {
    /// Output size along one axis.
    pub fn out_size(i: usize, k: usize, s: usize, p: usize) -> usize {
        (i + 2 * p - k) / s + 1
    }

    /// Calls `f(y_index, x_index, w_index)` for every in-bounds tap.
    fn taps(
        x: [usize; 4],
        w: [usize; 4],
        s: usize,
        p: usize,
        mut f: impl FnMut(usize, usize, usize),
    ) {
        let [n, c, h, wd] = x;
        let [oc, _, kh, kw] = w;
        let (oh, ow) = (out_size(h, kh, s, p), out_size(wd, kw, s, p));
        for b in 0..n {
            for o in 0..oc {
                for y in 0..oh {
                    for xx in 0..ow {
                        let yi = ((b * oc + o) * oh + y) * ow + xx;
                        for ci in 0..c {
                            for i in 0..kh {
                                for j in 0..kw {
                                    let ih = (y * s + i) as isize - p as isize;
                                    let iw = (xx * s + j) as isize - p as isize;
                                    if ih < 0 || iw < 0 || ih >= h as isize || iw >= wd as isize {
                                        continue;
                                    }
                                    let xi = ((b * c + ci) * h + ih as usize) * wd + iw as usize;
                                    let wi = ((o * c + ci) * kh + i) * kw + j;
                                    f(yi, xi, wi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Forward convolution (no bias).
    pub fn conv2d(
        x: &[f32],
        xs: [usize; 4],
        w: &[f32],
        ws: [usize; 4],
        s: usize,
        p: usize,
    ) -> Vec<f32> {
        let (oh, ow) = (out_size(xs[2], ws[2], s, p), out_size(xs[3], ws[3], s, p));
        let mut y = vec![0f64; xs[0] * ws[0] * oh * ow];
        taps(xs, ws, s, p, |yi, xi, wi| {
            y[yi] += x[xi] as f64 * w[wi] as f64
        });
        y.into_iter().map(|v| v as f32).collect()
    }

    /// Gradient wrt the input.
    pub fn backward_data(
        dy: &[f32],
        w: &[f32],
        xs: [usize; 4],
        ws: [usize; 4],
        s: usize,
        p: usize,
    ) -> Vec<f32> {
        let mut dx = vec![0f64; xs.iter().product()];
        taps(xs, ws, s, p, |yi, xi, wi| {
            dx[xi] += dy[yi] as f64 * w[wi] as f64
        });
        dx.into_iter().map(|v| v as f32).collect()
    }

    /// Gradient wrt the weight.
    pub fn backward_weight(
        dy: &[f32],
        x: &[f32],
        xs: [usize; 4],
        ws: [usize; 4],
        s: usize,
        p: usize,
    ) -> Vec<f32> {
        let mut dw = vec![0f64; ws.iter().product()];
        taps(xs, ws, s, p, |yi, xi, wi| {
            dw[wi] += dy[yi] as f64 * x[xi] as f64
        });
        dw.into_iter().map(|v| v as f32).collect()
    }
}
