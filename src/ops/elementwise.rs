//! Elementwise arithmetic, broadcasts over one axis (biases, per-channel scales) and ReLU.

use super::{groups_1d, kernel};
use crate::error::{Error, Result};
use crate::gpu::{KernelSpec, kernel_params, u};
use crate::tensor::Tensor;

const ADD_BROADCAST: KernelSpec = kernel!("elementwise", "add_broadcast", 2, 1);
const MUL_BROADCAST: KernelSpec = kernel!("elementwise", "mul_broadcast", 2, 1);

/// A flat op `out[i] = op(a[i], b[i])`: the shader's `NAME_op` function on vec4s, with a
/// scalar and a vec4 entry point.
#[derive(Clone, Copy)]
struct Flat {
    name: &'static str,
    vec4_name: &'static str,
    unary: bool,
}

const AXPBY: Flat = Flat::binary("axpby", "axpby_vec4");
const MUL: Flat = Flat::binary("mul", "mul_vec4");
const RELU: Flat = Flat::unary("relu", "relu_vec4");
const AFFINE: Flat = Flat::unary("affine", "affine_vec4");
const RELU_BACKWARD: Flat = Flat::binary("relu_backward", "relu_backward_vec4");
const SQRT: Flat = Flat::unary("sqrt_fwd", "sqrt_fwd_vec4");
const SQRT_BACKWARD: Flat = Flat::binary("sqrt_backward", "sqrt_backward_vec4");

impl Flat {
    const fn binary(name: &'static str, vec4_name: &'static str) -> Flat {
        Flat {
            name,
            vec4_name,
            unary: false,
        }
    }
    const fn unary(name: &'static str, vec4_name: &'static str) -> Flat {
        Flat {
            name,
            vec4_name,
            unary: true,
        }
    }

    /// The kernel for `n` elements: the vec4 one when `n` is a multiple of 4.
    fn spec(&self, n: usize) -> (KernelSpec, [u32; 3]) {
        let vec4 = n.is_multiple_of(4);
        let spec = KernelSpec {
            family: "elementwise",
            source: include_str!("../../shaders/elementwise.wgsl"),
            entry: if vec4 { self.vec4_name } else { self.name },
            reads: if self.unary { 1 } else { 2 },
            writes: 1,
        };
        (spec, groups_1d(if vec4 { n / 4 } else { n }, 256))
    }
}

kernel_params! {
    /// `Params` of `shaders/elementwise.wgsl`.
    struct ElementwiseParams => "Params" {
        n: u32,
        inner: u32,
        c: u32,
        alpha: f32,
        beta: f32,
    }
}

fn params(n: usize, inner: usize, c: usize, alpha: f32, beta: f32) -> ElementwiseParams {
    ElementwiseParams {
        n: u(n),
        inner: u(inner),
        c: u(c),
        alpha,
        beta,
    }
}

/// Where a per-axis vector broadcasts over a tensor: `index / inner % c`.
fn broadcast_axis(x: &Tensor, b: &Tensor, axis: usize, op: &'static str) -> Result<(usize, usize)> {
    if axis >= x.shape().len() || b.shape() != [x.shape()[axis]] {
        return Err(Error::shape(
            op,
            format!(
                "vector {:?} does not match axis {axis} of {:?}",
                b.shape(),
                x.shape()
            ),
        ));
    }
    let inner: usize = x.shape()[axis + 1..].iter().product();
    Ok((inner, x.shape()[axis]))
}

impl Tensor {
    fn binary(&self, other: &Tensor, op: Flat, alpha: f32, beta: f32) -> Result<Tensor> {
        let out = Tensor::empty(self.gpu(), self.shape())?;
        let n = self.numel();
        let (spec, groups) = op.spec(n);
        self.gpu().dispatch(
            &spec,
            &[],
            &params(n, 1, 1, alpha, beta),
            &[self.binding(), other.binding(), out.binding()],
            groups,
        )?;
        Ok(out)
    }

    fn unary(&self, op: Flat, alpha: f32, beta: f32) -> Result<Tensor> {
        let out = Tensor::empty(self.gpu(), self.shape())?;
        let n = self.numel();
        let (spec, groups) = op.spec(n);
        self.gpu().dispatch(
            &spec,
            &[],
            &params(n, 1, 1, alpha, beta),
            &[self.binding(), out.binding()],
            groups,
        )?;
        Ok(out)
    }

    /// `alpha * self + beta * other`, same shapes.
    pub fn axpby(&self, alpha: f32, other: &Tensor, beta: f32) -> Result<Tensor> {
        self.same_shape(other, "axpby")?;
        let out = self.binary(other, AXPBY, alpha, beta)?;
        self.gpu().record(&out, &[self, other], move |g| {
            // Gradients are never written in place, so a unit factor can share `g`.
            let scaled = |k: f32| if k == 1.0 { Ok(g.clone()) } else { g.scale(k) };
            Ok(vec![Some(scaled(alpha)?), Some(scaled(beta)?)])
        });
        Ok(out)
    }

    /// `self + other`.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        self.axpby(1.0, other, 1.0)
    }

    /// `self - other`.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        self.axpby(1.0, other, -1.0)
    }

    /// Elementwise product.
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        self.same_shape(other, "mul")?;
        let out = self.binary(other, MUL, 1.0, 0.0)?;
        let (a, b) = (self.clone(), other.clone());
        self.gpu().record(&out, &[self, other], move |g| {
            Ok(vec![Some(g.mul(&b)?), Some(g.mul(&a)?)])
        });
        Ok(out)
    }

    /// `alpha * self + beta`.
    pub fn affine(&self, alpha: f32, beta: f32) -> Result<Tensor> {
        let out = self.unary(AFFINE, alpha, beta)?;
        self.gpu()
            .record(&out, &[self], move |g| Ok(vec![Some(g.scale(alpha)?)]));
        Ok(out)
    }

    /// `alpha * self`.
    pub fn scale(&self, alpha: f32) -> Result<Tensor> {
        self.affine(alpha, 0.0)
    }

    /// `max(self, 0)`.
    pub fn relu(&self) -> Result<Tensor> {
        let out = self.unary(RELU, 1.0, 0.0)?;
        let y = out.detach();
        self.gpu().record(&out, &[self], move |g| {
            Ok(vec![Some(y.binary(g, RELU_BACKWARD, 1.0, 0.0)?)])
        });
        Ok(out)
    }

    /// `g · [self > 0]`: the gradient through a ReLU whose output is `self`.
    pub(crate) fn relu_backward(&self, g: &Tensor) -> Result<Tensor> {
        self.binary(g, RELU_BACKWARD, 1.0, 0.0)
    }

    /// Elementwise square root. Its gradient g/(2√x) is taken as 0 at x = 0 (the
    /// subgradient convention of the distance heads), so ‖f − p‖ at f = p gives 0, not NaN.
    pub fn sqrt(&self) -> Result<Tensor> {
        let out = self.unary(SQRT, 1.0, 0.0)?;
        let y = out.detach();
        self.gpu().record(&out, &[self], move |g| {
            Ok(vec![Some(y.binary(g, SQRT_BACKWARD, 1.0, 0.0)?)])
        });
        Ok(out)
    }

    /// Record `out[i] = self[i] ∘ v[(i / inner) % c]` for a vector `v` along `axis`.
    fn along(
        &self,
        v: &Tensor,
        axis: usize,
        spec: &KernelSpec,
        op: &'static str,
    ) -> Result<(Tensor, usize, usize)> {
        let (inner, c) = broadcast_axis(self, v, axis, op)?;
        let out = Tensor::empty(self.gpu(), self.shape())?;
        let n = self.numel();
        self.gpu().dispatch(
            spec,
            &[],
            &params(n, inner, c, 1.0, 0.0),
            &[self.binding(), v.binding(), out.binding()],
            groups_1d(n, 256),
        )?;
        Ok((out, inner, c))
    }

    /// Add vector `b` along `axis` (a bias: axis 1 of `[N, C, H, W]` or of `[B, D]`).
    pub fn add_along(&self, b: &Tensor, axis: usize) -> Result<Tensor> {
        let (out, inner, c) = self.along(b, axis, &ADD_BROADCAST, "add_along")?;
        let outer: usize = self.shape()[..axis].iter().product();
        self.gpu().record(&out, &[self, b], move |g| {
            Ok(vec![Some(g.clone()), Some(g.sum_to_axis(outer, c, inner)?)])
        });
        Ok(out)
    }

    /// Multiply by vector `s` along `axis` (per-channel scale). `s` gets no gradient.
    pub fn mul_along(&self, s: &Tensor, axis: usize) -> Result<Tensor> {
        let (out, _, _) = self.along(s, axis, &MUL_BROADCAST, "mul_along")?;
        let s = s.detach();
        self.gpu().record(&out, &[self], move |g| {
            Ok(vec![Some(g.mul_along(&s, axis)?)])
        });
        Ok(out)
    }
}

/// Plain-Rust references for the tests.
#[cfg(any(test, feature = "oracles"))]
pub mod cpu {
    /// `x + b` broadcast along `axis` with `inner` trailing elements and `c` entries.
    pub fn add_along(x: &[f32], b: &[f32], inner: usize, c: usize) -> Vec<f32> {
        x.iter()
            .enumerate()
            .map(|(i, v)| v + b[(i / inner) % c])
            .collect()
    }
    /// ReLU.
    pub fn relu(x: &[f32]) -> Vec<f32> {
        x.iter().map(|v| v.max(0.0)).collect()
    }
}
