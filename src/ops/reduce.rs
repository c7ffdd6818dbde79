//! Sums and means over axes, and their gradients (broadcasts back).

use super::{groups_1d, kernel};
use crate::error::{Error, Result};
use crate::gpu::{KernelSpec, kernel_params, u};
use crate::tensor::Tensor;

const SUM_MID: KernelSpec = kernel!("reduce", "sum_mid", 1, 1);
const SUM_KEEP_MID: KernelSpec = kernel!("reduce", "sum_keep_mid", 1, 1);
const EXPAND_MID: KernelSpec = kernel!("reduce", "expand_mid", 1, 1);
const EXPAND_KEEP_MID: KernelSpec = kernel!("reduce", "expand_keep_mid", 1, 1);

kernel_params! {
    /// `Params` of `shaders/reduce.wgsl`.
    struct ReduceParams => "Params" {
        outer: u32,
        r: u32,
        inner: u32,
        alpha: f32,
    }
}

fn params(outer: usize, r: usize, inner: usize, alpha: f32) -> ReduceParams {
    ReduceParams {
        outer: u(outer),
        r: u(r),
        inner: u(inner),
        alpha,
    }
}

/// `(outer, r, inner)` for reducing the contiguous axes `axes` of `shape`.
fn split(
    shape: &[usize],
    axes: std::ops::Range<usize>,
    op: &'static str,
) -> Result<(usize, usize, usize)> {
    if axes.start >= axes.end || axes.end > shape.len() {
        return Err(Error::shape(
            op,
            format!("axes {axes:?} out of range for shape {shape:?}"),
        ));
    }
    Ok((
        shape[..axes.start].iter().product(),
        shape[axes.clone()].iter().product(),
        shape[axes.end..].iter().product(),
    ))
}

impl Tensor {
    fn reduce_mid(
        &self,
        outer: usize,
        r: usize,
        inner: usize,
        alpha: f32,
        out_shape: &[usize],
    ) -> Result<Tensor> {
        let out = Tensor::empty(self.gpu(), out_shape)?;
        self.gpu().dispatch(
            &SUM_MID,
            &[],
            &params(outer, r, inner, alpha),
            &[self.binding(), out.binding()],
            groups_1d(outer * inner, 256),
        )?;
        let gpu = self.gpu().clone();
        let in_shape = self.shape().to_vec();
        self.gpu().record(&out, &[self], move |g| {
            let dx = Tensor::empty(&gpu, &in_shape)?;
            gpu.dispatch(
                &EXPAND_MID,
                &[],
                &params(outer, r, inner, alpha),
                &[g.binding(), dx.binding()],
                groups_1d(outer * r * inner, 256),
            )?;
            Ok(vec![Some(dx)])
        });
        Ok(out)
    }

    /// Sum over the contiguous axes `axes` (they are removed from the shape).
    pub fn sum_axes(&self, axes: std::ops::Range<usize>) -> Result<Tensor> {
        let (outer, r, inner) = split(self.shape(), axes.clone(), "sum_axes")?;
        let shape: Vec<usize> = self.shape()[..axes.start]
            .iter()
            .chain(&self.shape()[axes.end..])
            .copied()
            .collect();
        self.reduce_mid(outer, r, inner, 1.0, &shape)
    }

    /// Mean over the contiguous axes `axes`.
    pub fn mean_axes(&self, axes: std::ops::Range<usize>) -> Result<Tensor> {
        let (outer, r, inner) = split(self.shape(), axes.clone(), "mean_axes")?;
        let shape: Vec<usize> = self.shape()[..axes.start]
            .iter()
            .chain(&self.shape()[axes.end..])
            .copied()
            .collect();
        self.reduce_mid(outer, r, inner, 1.0 / r as f32, &shape)
    }

    /// Repeat along a new axis of size `n` inserted before axis `axis` (`axis` may equal the
    /// rank): `[B, D].expand(1, C)` is `[B, C, D]`. Backward sums over the new axis.
    pub fn expand(&self, axis: usize, n: usize) -> Result<Tensor> {
        let shape = self.shape();
        if axis > shape.len() {
            return Err(Error::shape(
                "expand",
                format!("axis {axis} out of range for shape {shape:?}"),
            ));
        }
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis..].iter().product();
        let mut out_shape = shape.to_vec();
        out_shape.insert(axis, n);
        let out = Tensor::empty(self.gpu(), &out_shape)?;
        self.gpu().dispatch(
            &EXPAND_MID,
            &[],
            &params(outer, n, inner, 1.0),
            &[self.binding(), out.binding()],
            groups_1d(outer * n * inner, 256),
        )?;
        self.gpu().record(&out, &[self], move |g| {
            Ok(vec![Some(g.sum_axes(axis..axis + 1)?)])
        });
        Ok(out)
    }

    /// Sum of all elements, shape `[1]`.
    pub fn sum(&self) -> Result<Tensor> {
        self.reduce_mid(1, self.numel(), 1, 1.0, &[1])
    }

    /// Mean of all elements, shape `[1]`.
    pub fn mean(&self) -> Result<Tensor> {
        self.reduce_mid(1, self.numel(), 1, 1.0 / self.numel() as f32, &[1])
    }

    /// Viewing `self` as `[outer, c, inner]`, the per-`c` sums, shape `[c]` (bias gradients).
    pub fn sum_to_axis(&self, outer: usize, c: usize, inner: usize) -> Result<Tensor> {
        if outer * c * inner != self.numel() {
            return Err(Error::shape(
                "sum_to_axis",
                format!("[{outer}, {c}, {inner}] does not cover {:?}", self.shape()),
            ));
        }
        let out = Tensor::empty(self.gpu(), &[c])?;
        self.gpu().dispatch(
            &SUM_KEEP_MID,
            &[],
            &params(outer, c, inner, 1.0),
            &[self.binding(), out.binding()],
            [c as u32, 1, 1],
        )?;
        let gpu = self.gpu().clone();
        let in_shape = self.shape().to_vec();
        self.gpu().record(&out, &[self], move |g| {
            let dx = Tensor::empty(&gpu, &in_shape)?;
            gpu.dispatch(
                &EXPAND_KEEP_MID,
                &[],
                &params(outer, c, inner, 1.0),
                &[g.binding(), dx.binding()],
                groups_1d(outer * c * inner, 256),
            )?;
            Ok(vec![Some(dx)])
        });
        Ok(out)
    }
}

/// Plain-Rust references for the tests.
#[cfg(any(test, feature = "oracles"))]
pub mod cpu {
    /// Sum of `[outer, r, inner]` over `r`.
    pub fn sum_mid(x: &[f32], outer: usize, r: usize, inner: usize) -> Vec<f32> {
        let mut out = vec![0.0; outer * inner];
        for o in 0..outer {
            for j in 0..r {
                for i in 0..inner {
                    out[o * inner + i] += x[(o * r + j) * inner + i];
                }
            }
        }
        out
    }
    /// Sum of `[outer, c, inner]` over `outer` and `inner`.
    pub fn sum_keep_mid(x: &[f32], outer: usize, c: usize, inner: usize) -> Vec<f32> {
        let mut out = vec![0.0; c];
        for o in 0..outer {
            for (k, acc) in out.iter_mut().enumerate() {
                for i in 0..inner {
                    *acc += x[(o * c + k) * inner + i];
                }
            }
        }
        out
    }
}
