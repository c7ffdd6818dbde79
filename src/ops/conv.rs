//! 2-D convolution (NCHW) as implicit GEMMs: forward, backward data and backward weight,
//! each register-tiled without workgroup memory (see `shaders/conv2d.wgsl`).

use super::kernel;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, KernelSpec, ParamBuilder};
use crate::tensor::Tensor;

const FORWARD: KernelSpec = kernel!("conv2d", "forward", 2, 1);
const BACKWARD_DATA: KernelSpec = kernel!("conv2d", "backward_data", 2, 1);
const BACKWARD_WEIGHT: KernelSpec = kernel!("conv2d", "backward_weight", 2, 1);

/// The register tile of one conv kernel: `rows` channels × `cols` columns per invocation,
/// `workgroup` invocations per workgroup. Rows are 1..=8; cols are 4 or 8 (vec4 groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub rows: u32,
    pub cols: u32,
    pub workgroup: u32,
}

impl Tile {
    pub const fn new(rows: u32, cols: u32, workgroup: u32) -> Tile {
        Tile {
            rows,
            cols,
            workgroup,
        }
    }

    fn check(&self) -> Result<()> {
        if !(1..=8).contains(&self.rows)
            || !(self.cols == 4 || self.cols == 8)
            || !(1..=256).contains(&self.workgroup)
        {
            return Err(Error::Config(format!(
                "conv2d: unsupported tile {self:?} (rows 1..=8, cols 4 or 8, workgroup 1..=256)"
            )));
        }
        Ok(())
    }

    fn constants(&self) -> [(&'static str, f64); 3] {
        [
            ("TM", self.rows as f64),
            ("TNV", (self.cols / 4) as f64),
            ("WG", self.workgroup as f64),
        ]
    }
}

/// Tile shapes for the three conv kernels. The defaults depend on the adapter: software
/// adapters want small tiles and no splitting; real GPUs want many invocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvConfig {
    pub forward: Tile,
    pub backward_data: Tile,
    pub backward_weight: Tile,
    /// Target number of invocations for backward weight: the position sum is split into
    /// partial sums (added in a fixed order afterwards) until about this many run.
    /// 0 means never split.
    pub weight_parallelism: usize,
}

impl ConvConfig {
    /// Measured fastest on lavapipe/llvmpipe (`examples/conv_speed.rs`).
    pub const CPU: ConvConfig = ConvConfig {
        forward: Tile::new(4, 4, 64),
        backward_data: Tile::new(4, 4, 64),
        backward_weight: Tile::new(4, 4, 64),
        weight_parallelism: 0,
    };
    /// A starting point for real GPUs (not tuned here: no GPU on the CI machine).
    pub const GPU: ConvConfig = ConvConfig {
        forward: Tile::new(4, 4, 64),
        backward_data: Tile::new(4, 4, 64),
        backward_weight: Tile::new(4, 4, 64),
        weight_parallelism: 32768,
    };

    /// The default for `gpu`'s adapter.
    pub fn for_gpu(gpu: &Gpu) -> ConvConfig {
        if gpu.is_cpu() { Self::CPU } else { Self::GPU }
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

/// Workgroups for `invocations` along x (spilling into z past 65535), `row_groups` along y.
fn groups_xz(invocations: usize, wg: u32, row_groups: usize) -> [u32; 3] {
    let g = super::groups_1d(invocations, wg);
    [g[0], row_groups as u32, g[1]]
}

fn forward(gpu: &Gpu, x: &Tensor, w: &Tensor, g: Geom, t: Tile) -> Result<Tensor> {
    t.check()?;
    let out = Tensor::empty(gpu, &[g.n, g.oc, g.oh, g.ow])?;
    let tiles = g.ow.div_ceil(t.cols as usize);
    gpu.dispatch(
        &FORWARD,
        &t.constants(),
        g.params(tiles, 0),
        &[x.binding(), w.binding(), out.binding()],
        groups_xz(
            g.n * g.oh * tiles,
            t.workgroup,
            g.oc.div_ceil(t.rows as usize),
        ),
    )?;
    Ok(out)
}

fn backward_data(gpu: &Gpu, dy: &Tensor, w: &Tensor, g: Geom, t: Tile) -> Result<Tensor> {
    t.check()?;
    let dx = Tensor::empty(gpu, &[g.n, g.c, g.h, g.w])?;
    let tiles = g.w.div_ceil(g.stride).div_ceil(t.cols as usize);
    gpu.dispatch(
        &BACKWARD_DATA,
        &t.constants(),
        g.params(tiles, 0),
        &[dy.binding(), w.binding(), dx.binding()],
        groups_xz(
            g.n * g.h * g.stride * tiles,
            t.workgroup,
            g.c.div_ceil(t.rows as usize),
        ),
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
    t.check()?;
    let k_tiles = g.k().div_ceil(t.cols as usize);
    let row_groups = g.oc.div_ceil(t.rows as usize);
    let rows = g.n * g.oh;
    let invocations = k_tiles * row_groups;
    let splits = if parallelism == 0 {
        1
    } else {
        parallelism
            .div_ceil(invocations)
            .clamp(1, rows.clamp(1, 256))
    };
    let chunk = rows.div_ceil(splits);
    let splits = rows.div_ceil(chunk).max(1);
    let x_groups = k_tiles.div_ceil(t.workgroup as usize);
    if x_groups > 65535 {
        return Err(Error::Limit {
            op: "conv2d backward weight",
            detail: format!("{} weight columns need more than 65535 workgroups", g.k()),
        });
    }
    let shape = [splits, g.oc, g.c, g.kh, g.kw];
    let out = Tensor::empty(gpu, &shape)?;
    gpu.dispatch(
        &BACKWARD_WEIGHT,
        &t.constants(),
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
        if let Some(b) = bias {
            if b.shape() != [g.oc] {
                return Err(Error::shape(
                    "conv2d",
                    format!(
                        "bias {:?} does not match weight {:?}",
                        b.shape(),
                        weight.shape()
                    ),
                ));
            }
        }
        let gpu = self.gpu().clone();
        let out = forward(&gpu, self, weight, g, cfg.forward)?;
        let (x, w) = (self.detach(), weight.detach());
        let (need_dx, need_dw) = (self.requires_grad(), weight.requires_grad());
        self.gpu().record(&out, &[self, weight], move |dy| {
            let dx = if need_dx {
                Some(backward_data(&gpu, dy, &w, g, cfg.backward_data)?)
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
        backward_data(self.gpu(), self, weight, g, cfg.backward_data)
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
