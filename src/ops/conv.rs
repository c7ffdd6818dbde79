//! 2-D convolution (NCHW) as implicit GEMMs: forward, backward data and backward weight,
//! each register-tiled without workgroup memory (see `shaders/conv2d.wgsl`).

use super::Tuning;
use super::codegen;
use super::template::{Val, expand};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, KernelSpec, kernel_params, u};
use crate::tensor::Tensor;
use std::sync::{Arc, Mutex, PoisonError};

const TEMPLATE: &str = include_str!("../../shaders/conv2d.wgsl");

/// The three conv kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Forward,
    BackwardData,
    BackwardWeight,
    /// Backward weight reading dY as vec4s (OW a multiple of 4).
    BackwardWeightVec4,
    /// The direct forward kernel for `k` × `k` convolutions with padding `pad` = (k − 1) / 2
    /// at stride 1 or 2 (see `Direct`).
    /// `crop`: the output is narrower than the kernel's running width (x was widened);
    /// `affine`: x is read through relu(batch norm).
    Direct {
        k: u32,
        pad: u32,
        stride: u32,
        crop: bool,
        affine: bool,
    },
    /// The direct backward-weight kernel for the same shapes.
    DirectWeight {
        k: u32,
        pad: u32,
        stride: u32,
        affine: bool,
    },
    /// The direct backward-data kernel for the stride-2 shapes (stride 1 runs the forward
    /// kernel on the flipped weight); `crop`: dX is narrower than twice dY's running width.
    DirectData {
        k: u32,
        crop: bool,
    },
}

/// The register tile of one conv kernel: `rows` × `cols` accumulators per invocation
/// (rows are channels, uniform over a workgroup; cols are spread over lanes, `workgroup`
/// apart). Forward rows are output channels and cols output positions; backward data rows
/// are input channels and cols input positions; backward weight rows are output channels
/// and cols weight entries `(c, kh, kw)`.
///
/// A subgroup tile ([`Tile::subgroup`]) runs one subgroup per workgroup and shares the row
/// operand across lanes with `subgroupBroadcast`. A workgroup-tiled tile ([`Tile::tiled`],
/// for real GPUs) stages both operands in workgroup memory.
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
    /// Workgroup-tiled ([`Tile::tiled`]).
    pub tiled: bool,
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
            tiled: false,
        }
    }

    /// A subgroup tile: `rows` a multiple of the subgroup size, up to 64; `cols` up to 8.
    pub const fn subgroup(rows: u32, cols: u32) -> Tile {
        Tile {
            rows,
            cols,
            workgroup: 0,
            subgroup: true,
            tiled: false,
        }
    }

    /// A workgroup-tiled tile for real GPUs: 16 × 16 invocations compute a block of
    /// `16·rows` rows × `16·cols` columns, staging 16-deep slices of both operands in
    /// workgroup memory (the packed weight with vec4 loads); `rows`, `cols` in 1..=4. Runs
    /// everywhere (slowly on llvmpipe, where barriers are expensive).
    pub const fn tiled(rows: u32, cols: u32) -> Tile {
        Tile {
            rows,
            cols,
            workgroup: 256,
            subgroup: false,
            tiled: true,
        }
    }

    /// The tile as it runs on `gpu` (a subgroup tile gets the subgroup size), checked.
    fn resolve(self, gpu: &Gpu) -> Result<Tile> {
        self.resolve_with(gpu.subgroup_size())
    }

    /// [`Tile::resolve`] on a device with subgroups of `subgroup` lanes (or none).
    pub(crate) fn resolve_with(self, subgroup: Option<u32>) -> Result<Tile> {
        if !self.subgroup {
            self.check()?;
            return Ok(self);
        }
        let bad = |why: &str| Err(Error::Config(format!("conv2d: tile {self:?}: {why}")));
        let Some(sg) = subgroup else {
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

    /// A resolved subgroup tile cut to whole subgroups so that `rows` rows split evenly
    /// over the fewest workgroups (48 rows with a 32-row tile: two 24-row workgroups, not
    /// 32 + 16 rows computed as 32 + 32).
    pub(crate) fn fit_rows(self, rows: usize) -> Tile {
        if !self.subgroup {
            return self;
        }
        let groups = (rows as u32).div_ceil(self.rows).max(1);
        let even = (rows as u32)
            .div_ceil(groups)
            .next_multiple_of(self.workgroup);
        Tile {
            rows: self.rows.min(even),
            ..self
        }
    }

    fn check(&self) -> Result<()> {
        if self.tiled {
            if !(1..=4).contains(&self.rows)
                || !(1..=4).contains(&self.cols)
                || self.workgroup != 256
            {
                return Err(Error::Config(format!(
                    "conv2d: unsupported tile {self:?} (tiled: rows and cols 1..=4, workgroup 256)"
                )));
            }
            return Ok(());
        }
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
        if self.tiled {
            return (16 * self.cols) as usize;
        }
        (self.cols * self.workgroup) as usize
    }

    /// Rows covered by one workgroup.
    fn height(&self) -> usize {
        if self.tiled {
            return (16 * self.rows) as usize;
        }
        self.rows as usize
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
    /// The direct kernels, for stride-1 3 × 3 (padding 1) and 1 × 1 convolutions;
    /// `None`: always the gather kernels.
    pub direct: Option<DirectTiles>,
}

/// Tiles of the direct conv kernels, which read and write positions as vec4 quads (4
/// inputs per load instead of 1). They run stride-1 3 × 3 convolutions with padding 1 and
/// 1 × 1 ones (the pointwise tiles: 9 times fewer FMAs per input loaded, so they want
/// taller tiles); a width that does not split into quads runs on a zero-padded copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectTiles {
    /// Forward and stride-1 backward data, 3 × 3: `cols` counts quads of positions.
    pub forward: Tile,
    /// Forward and backward data, 1 × 1.
    pub pointwise: Tile,
    /// Backward weight, 3 × 3: rows are output channels, `cols` input channels.
    pub weight: Tile,
    /// Backward weight, 1 × 1.
    pub pointwise_weight: Tile,
    /// Backward data at stride 2 (3 × 3 and 1 × 1): rows are input channels, `cols` quads
    /// of dY, each with 4 accumulators (the 4 phases of its dX positions).
    pub strided_data: Tile,
}

impl DirectTiles {
    /// Every tile the same (for tests).
    pub const fn all(t: Tile) -> DirectTiles {
        DirectTiles {
            forward: t,
            pointwise: t,
            weight: t,
            pointwise_weight: t,
            strided_data: t,
        }
    }
}

impl ConvConfig {
    /// Measured fastest on lavapipe/llvmpipe (`examples/conv_speed.rs`).
    pub const CPU: ConvConfig = ConvConfig {
        forward: Tile::new(8, 8, 16),
        backward_data: Tile::new(8, 8, 16),
        backward_weight: Tile::new(8, 8, 16),
        weight_parallelism: 0,
        direct: Some(DirectTiles {
            forward: Tile::new(16, 2, 8),
            pointwise: Tile::new(16, 1, 8),
            weight: Tile::new(8, 1, 8),
            pointwise_weight: Tile::new(16, 2, 8),
            strided_data: Tile::new(8, 1, 8),
        }),
    };
    /// For real GPUs: the workgroup-tiled kernels, 64 × 64 blocks per 256-invocation
    /// workgroup (not tuned: no GPU on the development machine).
    pub const GPU: ConvConfig = ConvConfig {
        forward: Tile::tiled(4, 4),
        backward_data: Tile::tiled(4, 4),
        backward_weight: Tile::tiled(4, 4),
        weight_parallelism: 65536,
        direct: None,
    };

    /// The subgroup kernels, for llvmpipe with subgroups (lavapipe): each lane loads a
    /// different channel's weights (or dY) and `subgroupBroadcast` shares them.
    pub const CPU_SUBGROUP: ConvConfig = ConvConfig {
        forward: Tile::subgroup(32, 4),
        backward_data: Tile::subgroup(32, 4),
        backward_weight: Tile::subgroup(32, 4),
        weight_parallelism: 0,
        direct: Some(DirectTiles {
            forward: Tile::subgroup(32, 2),
            pointwise: Tile::subgroup(64, 1),
            weight: Tile::subgroup(32, 2),
            pointwise_weight: Tile::subgroup(32, 4),
            strided_data: Tile::subgroup(16, 1),
        }),
    };

    /// Every configuration [`ConvConfig::for_gpu`] can pick, with the tuning that picks it.
    pub const PRESETS: [(Tuning, ConvConfig); 3] = [
        (Tuning::CpuSubgroup, Self::CPU_SUBGROUP),
        (Tuning::Cpu, Self::CPU),
        (Tuning::Gpu, Self::GPU),
    ];

    /// The default for `gpu`'s adapter (its [`Tuning`](super::tuning)).
    pub fn for_gpu(gpu: &Gpu) -> ConvConfig {
        let t = super::tuning(gpu);
        Self::PRESETS
            .iter()
            .find(|p| p.0 == t)
            .map_or(Self::GPU, |p| p.1)
    }
}

/// Template variables of the generated entry `kind` with tile `t`, named `entry`.
fn vars<'a>(kind: Kind, t: Tile, entry: &'a str) -> [(&'static str, Val<'a>); 15] {
    let sg = if t.subgroup { t.workgroup } else { 0 };
    let (kind_code, k, pad, stride) = match kind {
        Kind::Forward => (1u32, 0, 0, 0),
        Kind::BackwardData => (2, 0, 0, 0),
        Kind::BackwardWeight | Kind::BackwardWeightVec4 => (3, 0, 0, 0),
        Kind::Direct { k, pad, stride, .. } => (4, k, pad, stride),
        Kind::DirectWeight { k, pad, stride, .. } => (5, k, pad, stride),
        Kind::DirectData { k, .. } => (6, k, k / 2, 2),
    };
    let affine = kind.affine();
    [
        ("ENTRY", entry.into()),
        ("KIND", kind_code.into()),
        ("TM", t.rows.into()),
        ("TN", t.cols.into()),
        ("SG", sg.into()),
        (
            "ROW_LOADS",
            (if t.subgroup { t.rows / sg } else { t.rows }).into(),
        ),
        ("VEC4", (kind == Kind::BackwardWeightVec4).into()),
        ("TILED", t.tiled.into()),
        ("K", k.into()),
        ("PAD", pad.into()),
        ("S", stride.into()),
        (
            "CROP",
            matches!(
                kind,
                Kind::Direct { crop: true, .. } | Kind::DirectData { crop: true, .. }
            )
            .into(),
        ),
        ("AFFINE", affine.into()),
        ("ACT", (if affine { "bn_relu4" } else { "keep4" }).into()),
        ("OUT", (if affine { "dst" } else { "out" }).into()),
    ]
}

impl Kind {
    /// Reads x through relu(batch norm) (3 more inputs: the statistics, γ and β).
    fn affine(self) -> bool {
        matches!(
            self,
            Kind::Direct { affine: true, .. } | Kind::DirectWeight { affine: true, .. }
        )
    }
}

/// The entry point name of `kind` with tile `t`: `forward_8x8`, `backward_weight_v4_sg8_32x4`.
fn entry_name(kind: Kind, t: Tile) -> String {
    let name = match kind {
        Kind::Forward => "forward",
        Kind::BackwardData => "backward_data",
        Kind::BackwardWeight => "backward_weight",
        Kind::BackwardWeightVec4 => "backward_weight_v4",
        Kind::Direct {
            k,
            pad,
            stride,
            crop,
            affine,
        } => &format!(
            "forward_direct{k}p{pad}s{stride}{}{}",
            if affine { "_bn" } else { "" },
            if crop { "_crop" } else { "" }
        ),
        Kind::DirectWeight {
            k,
            pad,
            stride,
            affine,
        } => &format!(
            "backward_weight_direct{k}p{pad}s{stride}{}",
            if affine { "_bn" } else { "" }
        ),
        Kind::DirectData { k, crop } => &format!(
            "backward_data_direct{k}s2{}",
            if crop { "_crop" } else { "" }
        ),
    };
    match (t.subgroup, t.tiled) {
        (true, _) => format!("{name}_sg{}_{}x{}", t.workgroup, t.rows, t.cols),
        (false, true) => format!("{name}_tiled_{}x{}", t.rows, t.cols),
        (false, false) => format!("{name}_{}x{}", t.rows, t.cols),
    }
}

/// `shaders/conv2d.wgsl` expanded for `kind` with tile `t` (a resolved tile: a subgroup
/// tile's `workgroup` is the subgroup width), and the entry point's name.
pub(crate) fn variant_source(kind: Kind, t: Tile) -> Result<(String, String)> {
    let entry = entry_name(kind, t);
    let source = expand("conv2d", TEMPLATE, &vars(kind, t, &entry)).map_err(Error::Config)?;
    Ok((source, entry))
}

/// The generated entry point for `kind` with tile `t`, kept for the life of the process.
fn spec(kind: Kind, t: Tile) -> Result<KernelSpec> {
    let (source, entry) =
        codegen::cached(format!("conv2d {kind:?} {t:?}"), || variant_source(kind, t))?;
    Ok(KernelSpec {
        family: "conv2d",
        source,
        entry,
        reads: if kind.affine() { 5 } else { 2 },
        writes: 1,
    })
}

/// The module of the fixed entry point `pack_rows`: the template with no generated one.
pub(crate) fn base_source() -> Result<String> {
    expand(
        "conv2d",
        TEMPLATE,
        &[("KIND", Val::Int(0)), ("TILED", Val::Int(0))],
    )
    .map_err(Error::Config)
}

fn pack_rows_spec() -> Result<KernelSpec> {
    let (source, entry) = codegen::cached("conv2d base".into(), || {
        Ok((base_source()?, "pack_rows".into()))
    })?;
    Ok(KernelSpec {
        family: "conv2d",
        source,
        entry,
        reads: 1,
        writes: 1,
    })
}

kernel_params! {
    /// `Params` of `shaders/conv2d.wgsl`: the convolution's sizes, then one field per
    /// kernel.
    struct ConvParams => "Params" {
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
        kq: u32,
        c_tiles: u32,
        chunk: u32,
        xc: u32,
    }
}

kernel_params! {
    /// `PackParams` of `shaders/conv2d.wgsl` (`pack_rows`).
    struct PackParams => "PackParams" {
        rows: u32,
        k: u32,
        kp: u32,
        flip: u32,
        taps: u32,
        group: u32,
    }
}

kernel_params! {
    /// `WidenParams` of `shaders/conv2d.wgsl` (`widen_rows`).
    struct WidenParams => "WidenParams" {
        rows: u32,
        w_in: u32,
        w_out: u32,
    }
}

/// `t` `[N, C, H, W]` with its rows padded with zero columns to `width` (a multiple of 4).
fn widen(gpu: &Gpu, t: &Tensor, width: usize) -> Result<Tensor> {
    let s = t.shape();
    let rows = s[0] * s[1] * s[2];
    let out = Tensor::empty(gpu, &[s[0], s[1], s[2], width])?;
    // Whole vec4s, one row per invocation, when the source splits into them.
    let (entry, groups) = if s.iter().product::<usize>().is_multiple_of(4) {
        ("widen_rows4", super::groups_1d(rows, 64))
    } else {
        ("widen_rows", super::groups_1d(rows * width / 4, 256))
    };
    let (source, entry) = codegen::cached(format!("conv2d {entry}"), || {
        Ok((base_source()?, entry.into()))
    })?;
    let spec = KernelSpec {
        family: "conv2d",
        source,
        entry,
        reads: 1,
        writes: 1,
    };
    gpu.dispatch(
        &spec,
        &[],
        &WidenParams {
            rows: u(rows),
            w_in: u(s[3]),
            w_out: u(width),
        },
        &[t.binding(), out.binding()],
        groups,
    )?;
    Ok(out)
}

/// Zero-widened copies (see [`widen`]) made for one convolution and shared by its forward
/// and backward kernels, so that its x and dY are each widened once.
#[derive(Clone, Default)]
struct Widened(Arc<Mutex<Vec<(u64, usize, Tensor)>>>);

impl Widened {
    /// `t` with `width` columns: `t` itself when it has them, else the copy made before,
    /// else a new one.
    fn get(&self, gpu: &Gpu, t: &Tensor, width: usize) -> Result<Tensor> {
        if t.shape()[3] == width {
            return Ok(t.clone());
        }
        let mut copies = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((.., c)) = copies.iter().find(|c| c.0 == t.id() && c.1 == width) {
            return Ok(c.clone());
        }
        let c = widen(gpu, t, width)?;
        copies.push((t.id(), width, c.clone()));
        Ok(c)
    }
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
    /// Channels per image of x's buffer (the direct kernels read a prefix of `xc`).
    xc: usize,
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
            xc: x[1],
        })
    }

    /// The kernels' parameters; `kq`, `c_tiles` and `chunk` are set per kernel.
    fn params(&self) -> ConvParams {
        ConvParams {
            n: u(self.n),
            c: u(self.c),
            h: u(self.h),
            w: u(self.w),
            oc: u(self.oc),
            oh: u(self.oh),
            ow: u(self.ow),
            kh: u(self.kh),
            kw: u(self.kw),
            stride: u(self.stride),
            pad: u(self.pad),
            xc: u(self.xc),
            ..Default::default()
        }
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
/// reversed; `group` > 0: every `group` entries padded to 4; see `pack_rows` in the shader).
fn pack(
    gpu: &Gpu,
    w: &Tensor,
    rows: usize,
    k: usize,
    taps: usize,
    flip: bool,
    group: usize,
) -> Result<Tensor> {
    let kp = k
        .checked_div(group)
        .map_or(k.next_multiple_of(4), |groups| groups * 4);
    let wp = Tensor::empty(gpu, &[rows, kp])?;
    gpu.dispatch(
        &pack_rows_spec()?,
        &[],
        &PackParams {
            rows: u(rows),
            k: u(k),
            kp: u(kp),
            flip: flip.into(),
            taps: u(taps),
            group: u(group),
        },
        &[w.binding(), wp.binding()],
        super::groups_1d(rows * kp / 4, 256),
    )?;
    Ok(wp)
}

/// How the direct kernels run `g`, if they can: a square 1 × 1 (padding 0) or 3 × 3
/// (padding 1) kernel at stride 1 or 2. Their quads of 4 positions must line up with x's
/// rows (1 × 1 at stride 1: with the flattened plane), so a width that does not split into
/// them runs on a copy padded with zero columns to a multiple of 4 (at stride 2: to twice
/// dY's padded width); dY is read 4·⌈OW / 4⌉ wide. A lane's run of neighbouring quads need
/// not divide a row: the kernels skip the extra.
#[derive(Debug, Clone, Copy)]
struct Direct {
    k: u32,
    pad: u32,
    stride: u32,
    /// The width x runs at: W, or W padded.
    width: usize,
    /// The width dY is read at.
    dy_width: usize,
    /// Neighbouring quads per lane along a row (the tile's columns).
    run: usize,
}

impl Direct {
    /// The plan for `g` with runs of `run` quads per lane (the kernels' tile columns).
    fn plan(g: &Geom, run: usize) -> Option<Direct> {
        if g.stride > 2 || g.kh != g.kw || g.pad * 2 + 1 != g.kh || g.kh > 3 {
            return None;
        }
        let plane = g.stride == 1 && g.kh == 1 && (g.h * g.w).is_multiple_of(4);
        let width = match g.stride {
            _ if plane || g.w.is_multiple_of(4) => g.w,
            1 => g.w.next_multiple_of(4),
            _ => 2 * g.ow.next_multiple_of(4),
        };
        Some(Direct {
            k: g.kh as u32,
            pad: g.pad as u32,
            stride: g.stride as u32,
            width,
            dy_width: if plane { g.w } else { g.ow.next_multiple_of(4) },
            run: run.max(1),
        })
    }

    /// The kernels' columns over dY: its quads, rows of them rounded up to whole runs
    /// where quads run along rows.
    fn quads(self, g: &Geom) -> usize {
        if self.k == 1 && self.stride == 1 {
            // Quads of the flattened plane (H·W % 4 == 0; a row need not hold whole quads).
            g.n * g.oh * self.dy_width / 4
        } else {
            g.n * g.oh * (self.dy_width / 4).next_multiple_of(self.run)
        }
    }

    /// `g` at the width the kernel runs at (the output keeps its width: the kernel drops
    /// the columns past it).
    fn geom(self, g: &Geom) -> Geom {
        Geom {
            w: self.width,
            ..*g
        }
    }

    /// `t` (x, or dY when `dy`) padded to the kernel's width (as is when it has it).
    fn widen(self, gpu: &Gpu, wide: &Widened, t: &Tensor, dy: bool) -> Result<Tensor> {
        let width = if dy { self.dy_width } else { self.width };
        wide.get(gpu, t, width)
    }

    /// Whether the direct forward and weight kernels should run `g` (`bn`: with batch norm
    /// inside the loads, only at stride 1). At stride 2 only when x needs no widening: on
    /// lavapipe a widened x costs as much as they save over the gather kernels (resnet-tiny
    /// 28 → 14: par), while on aligned rows they are 1.5–1.8× faster (ResNet-34 32 → 16).
    fn worth_it(self, g: &Geom, bn: bool) -> bool {
        self.stride == 1 || (!bn && self.width == g.w)
    }
}

/// The direct forward kernel for `g` as `plan` runs it (x already widened) with the
/// weight `w` read as `g.oc` rows of `g.k()` entries (`flip`: transposed with taps
/// reversed, for backward data).
#[allow(clippy::too_many_arguments)]
fn forward_direct_kernel(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    g: &Geom,
    plan: Direct,
    flip: bool,
    t: Tile,
    bn: Option<BnInput>,
) -> Result<Tensor> {
    let g = plan.geom(g);
    let t = t.resolve(gpu)?.fit_rows(g.oc);
    let taps = g.kh * g.kw;
    // 1 × 1 at stride 1 reads 4 channels per vec4; otherwise a vec4 is a kernel row.
    let group = if g.kh == 1 && g.stride == 1 { 0 } else { g.kw };
    let wp = pack(gpu, w, g.oc, g.k(), taps, flip, group)?;
    let out = Tensor::empty(gpu, &[g.n, g.oc, g.oh, g.ow])?;
    let [gx, gz] = col_groups(plan.quads(&g), t);
    gpu.dispatch(
        &spec(
            Kind::Direct {
                k: plan.k,
                pad: plan.pad,
                stride: plan.stride,
                crop: g.ow != plan.dy_width,
                affine: bn.is_some(),
            },
            t,
        )?,
        &wx(t),
        &ConvParams {
            kq: u(wp.shape()[1] / 4),
            ..g.params()
        },
        &bindings(x, &wp, bn, &out),
        [gx, g.oc.div_ceil(t.height()) as u32, gz],
    )?;
    Ok(out)
}

/// The batch norm a direct kernel applies (then ReLU) to x as it reads it:
/// `stats` = [mean; 1/σ] of x's first C channels, γ and β.
#[derive(Clone, Copy)]
struct BnInput<'a> {
    stats: &'a Tensor,
    gamma: &'a Tensor,
    beta: &'a Tensor,
}

/// A direct kernel's bindings: its two inputs, the batch norm's three if any, the output.
fn bindings<'a>(
    a: &'a Tensor,
    b: &'a Tensor,
    bn: Option<BnInput<'a>>,
    out: &'a Tensor,
) -> Vec<crate::gpu::Binding<'a>> {
    let mut v = vec![a.binding(), b.binding()];
    if let Some(bn) = bn {
        v.extend([bn.stats.binding(), bn.gamma.binding(), bn.beta.binding()]);
    }
    v.push(out.binding());
    v
}

/// The direct forward kernel, if `cfg` has one for `g` (x read through relu(`bn`) if
/// given; `flip` as for [`forward_direct_kernel`]): x widened as the plan needs.
#[allow(clippy::too_many_arguments)]
fn forward_direct(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    g: &Geom,
    cfg: &ConvConfig,
    wide: &Widened,
    flip: bool,
    bn: Option<BnInput>,
) -> Result<Option<Tensor>> {
    let Some(d) = cfg.direct else {
        return Ok(None);
    };
    let t = if g.kh == 1 { d.pointwise } else { d.forward };
    let plan = Direct::plan(g, t.cols as usize).filter(|p| p.worth_it(g, bn.is_some()));
    let Some(plan) = plan else {
        return Ok(None);
    };
    let xw = plan.widen(gpu, wide, x, false)?;
    forward_direct_kernel(gpu, &xw, w, g, plan, flip, t, bn).map(Some)
}

fn forward(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    g: Geom,
    cfg: ConvConfig,
    wide: &Widened,
) -> Result<Tensor> {
    if let Some(y) = forward_direct(gpu, x, w, &g, &cfg, wide, false, None)? {
        return Ok(y);
    }
    let t = cfg.forward.resolve(gpu)?;
    let wp = pack(gpu, w, g.oc, g.k(), g.kh * g.kw, false, 0)?;
    forward_packed(gpu, x, &wp, g, t)
}

/// The forward kernel with a weight already packed by [`pack`].
fn forward_packed(gpu: &Gpu, x: &Tensor, wp: &Tensor, g: Geom, mut t: Tile) -> Result<Tensor> {
    t = t.fit_rows(g.oc);
    let out = Tensor::empty(gpu, &[g.n, g.oc, g.oh, g.ow])?;
    let [gx, gz] = col_groups(g.n * g.oh * g.ow, t);
    gpu.dispatch(
        &spec(Kind::Forward, t)?,
        &wx(t),
        &ConvParams {
            kq: u(wp.shape()[1] / 4),
            ..g.params()
        },
        &[x.binding(), wp.binding(), out.binding()],
        [gx, g.oc.div_ceil(t.height()) as u32, gz],
    )?;
    Ok(out)
}

/// Backward data of a stride-2 convolution with the direct kernel, if `cfg` has one for
/// `g`: dY widened as the plan needs, the weight packed transposed with taps reversed.
fn backward_data_direct(
    gpu: &Gpu,
    dy: &Tensor,
    w: &Tensor,
    g: &Geom,
    cfg: &ConvConfig,
    wide: &Widened,
) -> Result<Option<Tensor>> {
    let Some(t) = cfg.direct.map(|d| d.strided_data) else {
        return Ok(None);
    };
    let Some(plan) = Direct::plan(g, t.cols as usize).filter(|p| p.stride == 2) else {
        return Ok(None);
    };
    let t = t.resolve(gpu)?.fit_rows(g.c);
    let dyw = plan.widen(gpu, wide, dy, true)?;
    let wp = pack(gpu, w, g.c, g.oc * g.kh * g.kw, g.kh * g.kw, true, g.kw)?;
    let dx = Tensor::empty(gpu, &[g.n, g.c, g.h, g.w])?;
    let [gx, gz] = col_groups(plan.quads(g), t);
    gpu.dispatch(
        &spec(
            Kind::DirectData {
                k: plan.k,
                crop: g.w != 2 * plan.dy_width,
            },
            t,
        )?,
        &wx(t),
        &ConvParams {
            ow: u(plan.dy_width),
            kq: u(wp.shape()[1] / 4),
            ..g.params()
        },
        &[dyw.binding(), wp.binding(), dx.binding()],
        [gx, g.c.div_ceil(t.height()) as u32, gz],
    )?;
    Ok(Some(dx))
}

fn backward_data(
    gpu: &Gpu,
    dy: &Tensor,
    w: &Tensor,
    g: Geom,
    cfg: ConvConfig,
    wide: &Widened,
) -> Result<Tensor> {
    if g.stride == 1 && g.kh == g.kw && g.pad < g.kh {
        // At stride 1, dX is the forward convolution of dY with the transposed, flipped
        // weight and padding K - 1 - p: reuse the (faster, vec4-weight) forward kernel.
        let gt = Geom::new(
            &[g.n, g.oc, g.oh, g.ow],
            &[g.c, g.oc, g.kh, g.kw],
            1,
            g.kh - 1 - g.pad,
        )?;
        if let Some(dx) = forward_direct(gpu, dy, w, &gt, &cfg, wide, true, None)? {
            return Ok(dx);
        }
        let t = cfg.forward.resolve(gpu)?;
        let wp = pack(gpu, w, g.c, g.oc * g.kh * g.kw, g.kh * g.kw, true, 0)?;
        return forward_packed(gpu, dy, &wp, gt, t);
    }
    if let Some(dx) = backward_data_direct(gpu, dy, w, &g, &cfg, wide)? {
        return Ok(dx);
    }
    let t = cfg.backward_data.resolve(gpu)?.fit_rows(g.c);
    let dx = Tensor::empty(gpu, &[g.n, g.c, g.h, g.w])?;
    if t.tiled {
        // An implicit GEMM over (oc, tap) with the weight packed transposed, taps reversed.
        let wp = pack(gpu, w, g.c, g.oc * g.kh * g.kw, g.kh * g.kw, true, 0)?;
        let [gx, gz] = col_groups(g.n * g.h * g.w, t);
        gpu.dispatch(
            &spec(Kind::BackwardData, t)?,
            &wx(t),
            &ConvParams {
                kq: u(wp.shape()[1] / 4),
                ..g.params()
            },
            &[dy.binding(), wp.binding(), dx.binding()],
            [gx, g.c.div_ceil(t.height()) as u32, gz],
        )?;
        return Ok(dx);
    }
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
        &spec(Kind::BackwardData, t)?,
        &wx(t),
        &ConvParams {
            c_tiles: u(tiles),
            ..g.params()
        },
        &[dy.binding(), w.binding(), dx.binding()],
        [gx, gy as u32, gz],
    )?;
    Ok(dx)
}

/// Backward weight with the direct kernel, if `cfg` has one for `g` (x read through
/// relu(`bn`) if given): dY and x widened as the plan needs.
fn backward_weight_direct(
    gpu: &Gpu,
    dy: &Tensor,
    x: &Tensor,
    g: &Geom,
    cfg: &ConvConfig,
    wide: &Widened,
    bn: Option<BnInput>,
) -> Result<Option<Tensor>> {
    let plan = Direct::plan(g, 1).filter(|p| p.worth_it(g, bn.is_some()));
    let (Some(d), Some(plan)) = (cfg.direct, plan) else {
        return Ok(None);
    };
    let t = if plan.k == 1 {
        d.pointwise_weight
    } else {
        d.weight
    };
    let dyw = plan.widen(gpu, wide, dy, true)?;
    let xw = plan.widen(gpu, wide, x, false)?;
    weight_direct_kernel(gpu, &dyw, &xw, g, plan, t, bn).map(Some)
}

/// The direct backward-weight kernel for `g` as `plan` runs it (dY and x widened):
/// workgroups over (input channels, output channels, splits of the positions).
fn weight_direct_kernel(
    gpu: &Gpu,
    dy: &Tensor,
    x: &Tensor,
    g: &Geom,
    plan: Direct,
    t: Tile,
    bn: Option<BnInput>,
) -> Result<Tensor> {
    let g = plan.geom(g);
    let t = t.resolve(gpu)?.fit_rows(g.oc);
    let quads = plan.quads(&g);
    let groups = g.c.div_ceil(t.span()) * g.oc.div_ceil(t.height());
    // Enough workgroups to keep a CPU's cores busy (partial sums added in a fixed order).
    let splits = DIRECT_WEIGHT_WORKGROUPS
        .div_ceil(groups)
        .clamp(1, quads.max(1));
    let chunk = quads.div_ceil(splits).max(1);
    let splits = quads.div_ceil(chunk).max(1);
    let shape = [splits, g.oc, g.c, g.kh, g.kw];
    let out = Tensor::empty(gpu, &shape)?;
    gpu.dispatch(
        &spec(
            Kind::DirectWeight {
                k: plan.k,
                pad: plan.pad,
                stride: plan.stride,
                affine: bn.is_some(),
            },
            t,
        )?,
        &wx(t),
        &ConvParams {
            chunk: u(chunk),
            ..g.params()
        },
        &bindings(dy, x, bn, &out),
        [
            g.c.div_ceil(t.span()) as u32,
            g.oc.div_ceil(t.height()) as u32,
            splits as u32,
        ],
    )?;
    if splits == 1 {
        out.reshape(&shape[1..])
    } else {
        out.sum_axes(0..1)
    }
}

/// Workgroups the direct backward-weight kernel aims for.
const DIRECT_WEIGHT_WORKGROUPS: usize = 16;

fn backward_weight(
    gpu: &Gpu,
    dy: &Tensor,
    x: &Tensor,
    g: Geom,
    cfg: ConvConfig,
    wide: &Widened,
) -> Result<Tensor> {
    if let Some(dw) = backward_weight_direct(gpu, dy, x, &g, &cfg, wide, None)? {
        return Ok(dw);
    }
    let (t, parallelism) = (cfg.backward_weight, cfg.weight_parallelism);
    let t = t.resolve(gpu)?.fit_rows(g.oc);
    let x_groups = g.k().div_ceil(t.span());
    let row_groups = g.oc.div_ceil(t.height());
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
            if g.ow.is_multiple_of(4) && !t.tiled {
                Kind::BackwardWeightVec4
            } else {
                Kind::BackwardWeight
            },
            t,
        )?,
        &wx(t),
        &ConvParams {
            chunk: u(chunk),
            ..g.params()
        },
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
        // x widened for the forward kernel is kept for the weight gradient's.
        let wide = Widened::default();
        let out = forward(&gpu, self, weight, g, cfg, &wide)?;
        let (x, w) = (self.detach(), weight.detach());
        let (need_dx, need_dw) = (self.requires_grad(), weight.requires_grad());
        self.gpu().record(&out, &[self, weight], move |dy| {
            let dx = if need_dx {
                Some(backward_data(&gpu, dy, &w, g, cfg, &wide)?)
            } else {
                None
            };
            let dw = if need_dw {
                Some(backward_weight(&gpu, dy, &x, g, cfg, &wide)?)
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
        backward_data(self.gpu(), self, weight, g, cfg, &Widened::default())
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
        backward_weight(self.gpu(), self, input, g, cfg, &Widened::default())
    }
}

/// The batch norm the fused kernels read x through, checked against the conv's `c`.
fn bn_input<'a>(
    c: usize,
    stats: &'a Tensor,
    gamma: &'a Tensor,
    beta: &'a Tensor,
) -> Result<BnInput<'a>> {
    if stats.shape() != [2 * c] || gamma.shape() != [c] || beta.shape() != [c] {
        return Err(Error::shape(
            "conv2d_bn_relu",
            format!(
                "{c} channels need stats [{}], gamma and beta [{c}]; got {:?}, {:?}, {:?}",
                2 * c,
                stats.shape(),
                gamma.shape(),
                beta.shape()
            ),
        ));
    }
    Ok(BnInput { stats, gamma, beta })
}

/// The geometry of a conv over the first `c` channels of `x` (`[N, XC, H, W]`, XC ≥ c).
fn prefix_geom(x: &Tensor, c: usize, w: &[usize], stride: usize, pad: usize) -> Result<Geom> {
    let s = x.shape();
    if s.len() != 4 || c == 0 || c > s[1] {
        return Err(Error::shape(
            "conv2d_bn_relu",
            format!("{c} channels of input {s:?}"),
        ));
    }
    let mut g = Geom::new(&[s[0], c, s[2], s[3]], w, stride, pad)?;
    g.xc = s[1];
    Ok(g)
}

impl Tensor {
    /// `conv2d(relu(y), weight)` with `y` the batch norm of the first `channels` channels of
    /// `self` (`[N, C ≥ channels, H, W]`): `y = (x − mean)·(γ/σ) + β`, `stats` = `[mean;
    /// 1/σ]` (`[2·channels]`). The normalisation runs inside the direct conv kernels'
    /// loads, so `relu(y)` is never stored (pre-activation networks: DenseNet). Not taped.
    /// `None` when the adapter's [`ConvConfig`] has no direct kernel for this convolution
    /// (stride 1, 3 × 3 with padding 1 or 1 × 1): normalise explicitly then.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_bn_relu(
        &self,
        channels: usize,
        stats: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        weight: &Tensor,
        stride: usize,
        padding: usize,
    ) -> Result<Option<Tensor>> {
        let g = prefix_geom(self, channels, weight.shape(), stride, padding)?;
        let bn = bn_input(channels, stats, gamma, beta)?;
        let gpu = self.gpu();
        forward_direct(
            gpu,
            self,
            weight,
            &g,
            &ConvConfig::for_gpu(gpu),
            &Widened::default(),
            false,
            Some(bn),
        )
    }

    /// The weight gradient of [`Tensor::conv2d_bn_relu`] from `self` = dY, recomputing
    /// relu(bn(x)) as it reads `input`. Not taped; `None` where that has no direct kernel.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_bn_relu_backward_weight(
        &self,
        input: &Tensor,
        channels: usize,
        stats: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        weight_shape: &[usize],
        stride: usize,
        padding: usize,
    ) -> Result<Option<Tensor>> {
        let g = prefix_geom(input, channels, weight_shape, stride, padding)?;
        check_dy(self, &g)?;
        let bn = bn_input(channels, stats, gamma, beta)?;
        let gpu = self.gpu();
        let cfg = ConvConfig::for_gpu(gpu);
        backward_weight_direct(gpu, self, input, &g, &cfg, &Widened::default(), Some(bn))
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
