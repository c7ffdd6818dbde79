//! Max pooling (with argmax), average pooling and global average pooling, with gradients.

use super::{groups_1d, kernel};
use crate::error::{Error, Result};
use crate::gpu::{KernelSpec, kernel_params, u};
use crate::tensor::Tensor;

const MAX_FORWARD: KernelSpec = kernel!("pool", "max_forward", 1, 2);
const MAX_BACKWARD: KernelSpec = kernel!("pool", "max_backward", 2, 1);
const AVG_FORWARD: KernelSpec = kernel!("pool", "avg_forward", 1, 1);
const AVG_BACKWARD: KernelSpec = kernel!("pool", "avg_backward", 1, 1);
const AVG_FORWARD_TILED: KernelSpec = kernel!("pool", "avg_forward_tiled", 1, 1);
const AVG_BACKWARD_TILED: KernelSpec = kernel!("pool", "avg_backward_tiled", 1, 1);

kernel_params! {
    /// `Params` of `shaders/pool.wgsl`.
    struct PoolParams => "Params" {
        planes: u32,
        h: u32,
        w: u32,
        oh: u32,
        ow: u32,
        k: u32,
        stride: u32,
        pad: u32,
        scale: f32,
    }
}

/// Sizes of one pooling.
#[derive(Debug, Clone, Copy)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl Geom {
    fn new(op: &'static str, x: &[usize], k: usize, stride: usize, pad: usize) -> Result<Geom> {
        let what = || format!("input {x:?}, kernel {k}, stride {stride}, padding {pad}");
        if x.len() != 4 {
            return Err(Error::shape(
                op,
                format!("need a 4-D [N, C, H, W] input: {}", what()),
            ));
        }
        if k == 0 || stride == 0 {
            return Err(Error::shape(
                op,
                format!("kernel and stride must be at least 1: {}", what()),
            ));
        }
        if 2 * pad > k {
            return Err(Error::shape(
                op,
                format!("padding may be at most half the kernel: {}", what()),
            ));
        }
        if k > x[2] + 2 * pad || k > x[3] + 2 * pad {
            return Err(Error::shape(
                op,
                format!("kernel larger than the padded input: {}", what()),
            ));
        }
        Ok(Geom {
            n: x[0],
            c: x[1],
            h: x[2],
            w: x[3],
            oh: (x[2] + 2 * pad - k) / stride + 1,
            ow: (x[3] + 2 * pad - k) / stride + 1,
            k,
            stride,
            pad,
        })
    }

    fn params(&self) -> PoolParams {
        PoolParams {
            planes: u(self.n * self.c),
            h: u(self.h),
            w: u(self.w),
            oh: u(self.oh),
            ow: u(self.ow),
            k: u(self.k),
            stride: u(self.stride),
            pad: u(self.pad),
            scale: 1.0 / (self.k * self.k) as f32,
        }
    }

    /// The grid of the `*_tiled` average-pooling kernels (one invocation per output element,
    /// planes along y) when the windows tile the input exactly; `None` otherwise.
    fn tiled_grid(&self) -> Option<[u32; 3]> {
        let exact = self.stride == self.k
            && self.pad == 0
            && self.h == self.oh * self.k
            && self.w == self.ow * self.k;
        let groups = (self.oh * self.ow).div_ceil(64);
        let planes = self.n * self.c;
        (exact && groups <= 65535 && planes <= 65535).then_some([groups as u32, planes as u32, 1])
    }

    fn out_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.oh, self.ow]
    }

    fn in_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.h, self.w]
    }
}

impl Tensor {
    /// Max pooling of `[N, C, H, W]` with a `kernel × kernel` window; padding (at most
    /// half the kernel) never wins. The gradient goes to each window's first maximum.
    pub fn max_pool2d(&self, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
        let g = Geom::new("max_pool2d", self.shape(), kernel, stride, padding)?;
        let gpu = self.gpu().clone();
        let out = Tensor::empty(&gpu, &g.out_shape())?;
        // Argmax per output, as u32 bits in an f32 tensor used as raw storage.
        let arg = Tensor::empty(&gpu, &g.out_shape())?;
        gpu.dispatch(
            &MAX_FORWARD,
            &[],
            &g.params(),
            &[self.binding(), out.binding(), arg.binding()],
            groups_1d(out.numel(), 256),
        )?;
        self.gpu().record(&out, &[self], move |dy| {
            let dx = Tensor::empty(&gpu, &g.in_shape())?;
            gpu.dispatch(
                &MAX_BACKWARD,
                &[],
                &g.params(),
                &[dy.binding(), arg.binding(), dx.binding()],
                groups_1d(dx.numel(), 256),
            )?;
            Ok(vec![Some(dx)])
        });
        Ok(out)
    }

    /// Average pooling of `[N, C, H, W]` over `kernel × kernel` windows, no padding.
    pub fn avg_pool2d(&self, kernel: usize, stride: usize) -> Result<Tensor> {
        let g = Geom::new("avg_pool2d", self.shape(), kernel, stride, 0)?;
        let gpu = self.gpu().clone();
        let out = Tensor::empty(&gpu, &g.out_shape())?;
        let tiled = g.tiled_grid();
        let (spec, grid) = match tiled {
            Some(grid) => (&AVG_FORWARD_TILED, grid),
            None => (&AVG_FORWARD, groups_1d(out.numel(), 256)),
        };
        gpu.dispatch(
            spec,
            &[],
            &g.params(),
            &[self.binding(), out.binding()],
            grid,
        )?;
        self.gpu().record(&out, &[self], move |dy| {
            let dx = Tensor::empty(&gpu, &g.in_shape())?;
            let (spec, grid) = match tiled {
                Some(grid) => (&AVG_BACKWARD_TILED, grid),
                None => (&AVG_BACKWARD, groups_1d(dx.numel(), 256)),
            };
            gpu.dispatch(spec, &[], &g.params(), &[dy.binding(), dx.binding()], grid)?;
            Ok(vec![Some(dx)])
        });
        Ok(out)
    }

    /// Mean over H and W of `[N, C, H, W]`, giving `[N, C]` (the reduce kernels' fixed-order
    /// mean, whose gradient spreads dY / (H·W) back).
    pub fn global_avg_pool(&self) -> Result<Tensor> {
        if self.shape().len() != 4 {
            return Err(Error::shape(
                "global_avg_pool",
                format!("need a 4-D [N, C, H, W] input, got {:?}", self.shape()),
            ));
        }
        self.mean_axes(2..4)
    }
}

/// Plain-Rust references for the tests.
#[cfg(any(test, feature = "oracles"))]
pub mod cpu {
    /// Max pooling: the output and each window's argmax (index in its plane; first max).
    pub fn max_pool2d(
        x: &[f32],
        s: [usize; 4],
        k: usize,
        st: usize,
        pad: usize,
    ) -> (Vec<f32>, Vec<usize>) {
        let [n, c, h, w] = s;
        let (oh, ow) = ((h + 2 * pad - k) / st + 1, (w + 2 * pad - k) / st + 1);
        let mut out = Vec::with_capacity(n * c * oh * ow);
        let mut arg = Vec::with_capacity(n * c * oh * ow);
        for plane in 0..n * c {
            for y in 0..oh {
                for xx in 0..ow {
                    let mut best = (f32::NEG_INFINITY, usize::MAX);
                    for i in 0..k {
                        for j in 0..k {
                            let (iy, ix) = (
                                (y * st + i) as isize - pad as isize,
                                (xx * st + j) as isize - pad as isize,
                            );
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let idx = iy as usize * w + ix as usize;
                            let v = x[plane * h * w + idx];
                            if best.1 == usize::MAX || v > best.0 {
                                best = (v, idx);
                            }
                        }
                    }
                    out.push(best.0);
                    arg.push(best.1);
                }
            }
        }
        (out, arg)
    }

    /// Gradient of max pooling from the argmax.
    pub fn max_pool2d_backward(dy: &[f32], arg: &[usize], s: [usize; 4], ohw: usize) -> Vec<f32> {
        let hw = s[2] * s[3];
        let mut dx = vec![0.0; s.iter().product()];
        for (o, (&g, &a)) in dy.iter().zip(arg).enumerate() {
            dx[(o / ohw) * hw + a] += g;
        }
        dx
    }

    /// Average pooling without padding.
    pub fn avg_pool2d(x: &[f32], s: [usize; 4], k: usize, st: usize) -> Vec<f32> {
        let [n, c, h, w] = s;
        let (oh, ow) = ((h - k) / st + 1, (w - k) / st + 1);
        let mut out = Vec::with_capacity(n * c * oh * ow);
        for plane in 0..n * c {
            for y in 0..oh {
                for xx in 0..ow {
                    let mut acc = 0.0;
                    for i in 0..k {
                        for j in 0..k {
                            acc += x[plane * h * w + (y * st + i) * w + xx * st + j];
                        }
                    }
                    out.push(acc / (k * k) as f32);
                }
            }
        }
        out
    }

    /// Gradient of average pooling.
    pub fn avg_pool2d_backward(dy: &[f32], s: [usize; 4], k: usize, st: usize) -> Vec<f32> {
        let [n, c, h, w] = s;
        let (oh, ow) = ((h - k) / st + 1, (w - k) / st + 1);
        let mut dx = vec![0.0; n * c * h * w];
        for plane in 0..n * c {
            for y in 0..oh {
                for xx in 0..ow {
                    let g = dy[(plane * oh + y) * ow + xx] / (k * k) as f32;
                    for i in 0..k {
                        for j in 0..k {
                            dx[plane * h * w + (y * st + i) * w + xx * st + j] += g;
                        }
                    }
                }
            }
        }
        dx
    }
}
