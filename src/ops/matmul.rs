//! Matrix products (with optional transposes) and the linear layer's forward.

use super::Tuning;
use super::codegen;
use super::template::{Val, expand};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, KernelSpec, kernel_params, u};
use crate::tensor::Tensor;

const TEMPLATE: &str = include_str!("../../shaders/matmul.wgsl");

/// How the matmul kernel is tiled. [`MatmulConfig::for_gpu`] picks one per adapter; the
/// others exist for tuning (`examples/kernel_speed.rs`) and for the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatmulConfig {
    /// Each invocation computes `rows` rows × `cols` vec4 columns of C, `workgroup` lanes
    /// per workgroup. Runs everywhere.
    Plain {
        /// Rows of C per invocation.
        rows: u32,
        /// vec4 columns of C per invocation.
        cols: u32,
        /// Invocations per workgroup.
        workgroup: u32,
    },
    /// Like `Plain` with one subgroup per workgroup, but each lane loads a different row
    /// of A and `subgroupBroadcast` shares it, so A costs one load per subgroup instead of
    /// one per lane. `rows` must be a multiple of the subgroup size. Needs subgroups
    /// ([`Gpu::subgroup_size`]).
    Subgroup {
        /// Rows of C per invocation, a multiple of the subgroup size.
        rows: u32,
        /// vec4 columns of C per invocation.
        cols: u32,
    },
    /// Workgroup-tiled, for real GPUs: a 16 × 16 workgroup computes `16·rows` rows ×
    /// `16·cols` vec4 columns of C, staging 16-deep slices of both operands in workgroup
    /// memory with vec4 loads; each invocation keeps `rows` × `cols` vec4 accumulators.
    /// Runs everywhere (slowly on llvmpipe, where barriers are expensive).
    Tiled {
        /// Rows of C per invocation (1..=8).
        rows: u32,
        /// vec4 columns of C per invocation (1..=2).
        cols: u32,
    },
}

impl MatmulConfig {
    /// Measured fastest on lavapipe (`examples/kernel_speed.rs`): 32 rows shared by
    /// subgroup broadcasts, one vec4 column per lane.
    pub const CPU_SUBGROUP: MatmulConfig = MatmulConfig::Subgroup { rows: 32, cols: 1 };
    /// Fastest portable tile on llvmpipe (GL, or Vulkan without subgroups).
    pub const CPU: MatmulConfig = MatmulConfig::Plain {
        rows: 8,
        cols: 4,
        workgroup: 8,
    };
    /// For real GPUs: 64 × 64 blocks of C per 256-invocation workgroup, 4 × 4 per
    /// invocation (not tuned: no GPU on the development machine).
    pub const GPU: MatmulConfig = MatmulConfig::Tiled { rows: 4, cols: 1 };

    /// Every configuration [`MatmulConfig::for_gpu`] can pick, with the tuning that picks it.
    pub const PRESETS: [(Tuning, MatmulConfig); 3] = [
        (Tuning::CpuSubgroup, Self::CPU_SUBGROUP),
        (Tuning::Cpu, Self::CPU),
        (Tuning::Gpu, Self::GPU),
    ];

    /// The default for `gpu`'s adapter (its [`Tuning`](super::tuning)).
    pub fn for_gpu(gpu: &Gpu) -> MatmulConfig {
        let t = super::tuning(gpu);
        Self::PRESETS
            .iter()
            .find(|p| p.0 == t)
            .map_or(Self::GPU, |p| p.1)
    }

    /// Check the tile against the device; returns (rows per invocation, vec4 columns per
    /// invocation, lanes per workgroup).
    fn shape(&self, gpu: &Gpu) -> Result<(u32, u32, u32)> {
        self.shape_with(gpu.subgroup_size())
    }

    /// [`MatmulConfig::shape`] on a device with subgroups of `subgroup` lanes (or none).
    pub(crate) fn shape_with(&self, subgroup: Option<u32>) -> Result<(u32, u32, u32)> {
        let bad = |why: String| Err(Error::Config(format!("matmul: {self:?}: {why}")));
        match *self {
            MatmulConfig::Plain {
                rows,
                cols,
                workgroup,
            } => {
                if !(1..=16).contains(&rows)
                    || !(1..=16).contains(&cols)
                    || !(1..=256).contains(&workgroup)
                {
                    return bad("rows and cols must be 1..=16, workgroup 1..=256".into());
                }
                Ok((rows, cols, workgroup))
            }
            MatmulConfig::Tiled { rows, cols } => {
                // Workgroup memory: 16·16·rows floats + 16·16·cols vec4s ≤ 16 KiB.
                if !(1..=8).contains(&rows) || !(1..=2).contains(&cols) || rows + 4 * cols > 16 {
                    return bad("rows 1..=8, cols 1..=2, rows + 4·cols ≤ 16".into());
                }
                Ok((rows, cols, 256))
            }
            MatmulConfig::Subgroup { rows, cols } => {
                let Some(sg) = subgroup else {
                    return bad("this device has no fixed-size subgroups".into());
                };
                if rows == 0 || !rows.is_multiple_of(sg) || rows > 64 || !(1..=8).contains(&cols) {
                    return bad(format!(
                        "rows must be a multiple of the subgroup size {sg} up to 64, cols 1..=8"
                    ));
                }
                Ok((rows, cols, sg))
            }
        }
    }
}

kernel_params! {
    /// `Params` of `shaders/matmul.wgsl`.
    struct MatmulParams => "Params" {
        m: u32,
        n: u32,
        k: u32,
        tiles: u32,
        trans_a: u32,
        trans_b: u32,
        nq: u32,
        blocks: u32,
    }
}

/// The entry point name of a tile: `matmul_8x4`, `matmul_sg8_32x1`.
fn entry_name(cfg: MatmulConfig, tm: u32, tn: u32, sg: u32) -> String {
    match cfg {
        MatmulConfig::Plain { .. } => format!("matmul_{tm}x{tn}"),
        MatmulConfig::Tiled { .. } => format!("matmul_tiled_{tm}x{tn}"),
        MatmulConfig::Subgroup { .. } => format!("matmul_sg{sg}_{tm}x{tn}"),
    }
}

/// `shaders/matmul.wgsl` expanded for `cfg` with tile `tm × tn` (subgroup width `sg`), and
/// the entry point's name.
pub(crate) fn variant_source(
    cfg: MatmulConfig,
    tm: u32,
    tn: u32,
    sg: u32,
) -> Result<(String, String)> {
    let entry = entry_name(cfg, tm, tn, sg);
    let sg = match cfg {
        MatmulConfig::Plain { .. } | MatmulConfig::Tiled { .. } => 0,
        MatmulConfig::Subgroup { .. } => sg,
    };
    let vars = [
        ("ENTRY", Val::Text(&entry)),
        ("TM", tm.into()),
        ("TN", tn.into()),
        ("SG", sg.into()),
        ("TILED", matches!(cfg, MatmulConfig::Tiled { .. }).into()),
    ];
    let source = expand("matmul", TEMPLATE, &vars).map_err(Error::Config)?;
    Ok((source, entry))
}

/// The module of the pack kernels: the template with no main kernel (TM = 0).
pub(crate) fn base_source() -> Result<String> {
    expand(
        "matmul",
        TEMPLATE,
        &[("TM", Val::Int(0)), ("TILED", Val::Int(0))],
    )
    .map_err(Error::Config)
}

/// One of the pack kernels.
fn pack_spec(entry: &'static str) -> Result<KernelSpec> {
    let (source, _) =
        codegen::cached("matmul base".into(), || Ok((base_source()?, String::new())))?;
    Ok(KernelSpec {
        family: "matmul",
        source,
        entry,
        reads: 1,
        writes: 1,
    })
}

/// The generated entry point for `cfg` (subgroup width `sg`), kept for the life of the
/// process.
fn matmul_spec(cfg: MatmulConfig, tm: u32, tn: u32, sg: u32) -> Result<KernelSpec> {
    let (source, entry) = codegen::cached(format!("matmul {cfg:?} {tm}x{tn} sg{sg}"), || {
        variant_source(cfg, tm, tn, sg)
    })?;
    Ok(KernelSpec {
        family: "matmul",
        source,
        entry,
        reads: 2,
        writes: 1,
    })
}

/// Workgroups of 64 for the pack kernels: `x` invocations within a block, `blocks` blocks
/// over y (and z past 65535).
fn groups_2d(x: usize, blocks: usize) -> [u32; 3] {
    let (y, z) = if blocks <= 65535 {
        (blocks, 1)
    } else {
        (65535, blocks.div_ceil(65535))
    };
    [x.div_ceil(64) as u32, y as u32, z as u32]
}

/// Record `c = op(a) · op(b)` where `a` is `[m, k]` (or `[k, m]` when `trans_a`) and `b` is
/// `[k, n]` (or `[n, k]`). `c` must be `[m, n]`.
pub(crate) fn matmul_into(
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    trans_a: bool,
    trans_b: bool,
    cfg: MatmulConfig,
) -> Result<()> {
    let gpu = a.gpu();
    let (tm, tn, wx) = cfg.shape(gpu)?;
    let (m, k) = if trans_a {
        (a.shape()[1], a.shape()[0])
    } else {
        (a.shape()[0], a.shape()[1])
    };
    let n = c.shape()[1];
    let (tiles, nq) = (k.div_ceil(4), n.div_ceil(4));
    // Rows of C per workgroup; rows per packed A block, vec4 columns per packed B panel.
    let (rows, rb, pw) = match cfg {
        MatmulConfig::Plain { .. } => (tm, tm, wx * tn),
        MatmulConfig::Subgroup { .. } => (tm, wx, wx * tn),
        MatmulConfig::Tiled { .. } => (16 * tm, 16 * tm, 16 * tn),
    };
    let (row_blocks, panels) = (m.div_ceil(rows as usize), nq.div_ceil(pw as usize));
    let params = |blocks: usize| MatmulParams {
        m: u(m),
        n: u(n),
        k: u(k),
        tiles: u(tiles),
        trans_a: trans_a.into(),
        trans_b: trans_b.into(),
        nq: u(nq),
        blocks: u(blocks),
    };
    let layout = [("RB", rb as f64), ("PW", pw as f64)];
    // Zero-padded to whole row blocks and panels, so the main kernel never clips a load.
    let blocks = row_blocks * (rows / rb) as usize;
    let pa = Tensor::empty(gpu, &[blocks * rb as usize * tiles * 4])?;
    let aligned = |trans: bool, row: usize| !trans && row.is_multiple_of(4);
    gpu.dispatch(
        &pack_spec(if aligned(trans_a, k) {
            "pack_a_vec4"
        } else {
            "pack_a"
        })?,
        &layout,
        &params(blocks),
        &[a.binding(), pa.binding()],
        groups_2d(rb as usize * tiles, blocks),
    )?;
    let pb = Tensor::empty(gpu, &[panels * pw as usize * tiles * 16])?;
    gpu.dispatch(
        &pack_spec(if aligned(trans_b, n) {
            "pack_b_vec4"
        } else {
            "pack_b"
        })?,
        &layout,
        &params(panels),
        &[b.binding(), pb.binding()],
        groups_2d(pw as usize * tiles * 4, panels),
    )?;
    // Panels beyond 65535 spill into z (the kernel folds it back into x).
    let (gx, gz) = if panels <= 65535 {
        (panels, 1)
    } else {
        (65535, panels.div_ceil(65535))
    };
    gpu.dispatch(
        &matmul_spec(cfg, tm, tn, wx)?,
        &[("WX", wx as f64)],
        &params(0),
        &[pa.binding(), pb.binding(), c.binding()],
        [gx as u32, row_blocks as u32, gz as u32],
    )
}

fn dims2(t: &Tensor, op: &'static str) -> Result<(usize, usize)> {
    match t.shape() {
        [r, c] => Ok((*r, *c)),
        s => Err(Error::shape(op, format!("expected a matrix, got {s:?}"))),
    }
}

impl Tensor {
    /// Matrix product `self [m, k] · other [k, n]`.
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        self.matmul_t(other, false, false)
    }

    /// Matrix product with optional transposes of either side.
    pub fn matmul_t(&self, other: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
        self.matmul_with(other, trans_a, trans_b, MatmulConfig::for_gpu(self.gpu()))
    }

    /// [`Tensor::matmul_t`] with an explicit kernel tiling (forward and backward).
    pub fn matmul_with(
        &self,
        other: &Tensor,
        trans_a: bool,
        trans_b: bool,
        cfg: MatmulConfig,
    ) -> Result<Tensor> {
        let (ar, ac) = dims2(self, "matmul")?;
        let (br, bc) = dims2(other, "matmul")?;
        let (m, k) = if trans_a { (ac, ar) } else { (ar, ac) };
        let (k2, n) = if trans_b { (bc, br) } else { (br, bc) };
        if k != k2 {
            return Err(Error::shape(
                "matmul",
                format!(
                    "{:?}{} · {:?}{}: inner dimensions {k} and {k2} differ",
                    self.shape(),
                    if trans_a { "ᵀ" } else { "" },
                    other.shape(),
                    if trans_b { "ᵀ" } else { "" }
                ),
            ));
        }
        let out = Tensor::empty(self.gpu(), &[m, n])?;
        matmul_into(self, other, &out, trans_a, trans_b, cfg)?;
        let (a, b) = (self.clone(), other.clone());
        self.gpu().record(&out, &[self, other], move |g| {
            // C = op(A)·op(B): dA = g·op(B)ᵀ (transposed back if A was), dB likewise.
            let da = if trans_a {
                b.matmul_with(g, trans_b, true, cfg)?
            } else {
                g.matmul_with(&b, false, !trans_b, cfg)?
            };
            let db = if trans_b {
                g.matmul_with(&a, true, trans_a, cfg)?
            } else {
                a.matmul_with(g, !trans_a, false, cfg)?
            };
            Ok(vec![Some(da), Some(db)])
        });
        Ok(out)
    }

    /// Linear layer: `self [B, in] · weightᵀ (+ bias)`, weight `[out, in]`, bias `[out]`.
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let y = self.matmul_t(weight, false, true)?;
        match bias {
            Some(b) => y.add_along(b, 1),
            None => Ok(y),
        }
    }
}

/// Plain-Rust references for the tests.
#[cfg(any(test, feature = "oracles"))]
pub mod cpu {
    /// `a [m, k] · b [k, n]` in f64 accumulation.
    pub fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|t| a[i * k + t] as f64 * b[t * n + j] as f64)
                    .sum::<f64>() as f32;
            }
        }
        c
    }
    /// Transpose of a `[r, c]` matrix.
    pub fn transpose(a: &[f32], r: usize, c: usize) -> Vec<f32> {
        let mut t = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                t[j * r + i] = a[i * c + j];
            }
        }
        t
    }
}
