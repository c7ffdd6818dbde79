//! Batch norm 2d: batch statistics and running averages in training, running statistics in
//! eval, with gradients for the input, the scale (gamma) and the shift (beta).

use super::{groups_1d, kernel};
use crate::error::{Error, Result};
use crate::gpu::{KernelSpec, ParamBuilder};
use crate::tensor::Tensor;

const STATS: KernelSpec = kernel!("batchnorm", "bn_stats", 1, 4);
const APPLY: KernelSpec = kernel!("batchnorm", "bn_apply", 5, 1);
const BACKWARD_REDUCE: KernelSpec = kernel!("batchnorm", "bn_backward_reduce", 4, 2);
const BACKWARD_APPLY: KernelSpec = kernel!("batchnorm", "bn_backward_apply", 7, 1);

/// Batch-norm state that lives outside the autodiff graph.
pub struct BatchNormStats<'a> {
    /// Running mean `[C]`, updated in place in training.
    pub running_mean: &'a Tensor,
    /// Running (unbiased) variance `[C]`, updated in place in training.
    pub running_var: &'a Tensor,
    /// Weight of the new batch in the running averages (PyTorch's 0.1).
    pub momentum: f32,
    /// Added to the variance (PyTorch's 1e-5).
    pub eps: f32,
}

impl Tensor {
    /// Batch norm of `[N, C, H, W]` (or `[N, C]`) with scale `gamma [C]` and shift `beta [C]`.
    /// `training`: normalise with batch statistics and update the running ones; else use
    /// the running statistics.
    pub fn batch_norm(&self, gamma: &Tensor, beta: &Tensor, stats: &BatchNormStats, training: bool) -> Result<Tensor> {
        let s = self.shape();
        if s.len() < 2 {
            return Err(Error::shape("batch_norm", format!("input {s:?} needs at least [N, C]")));
        }
        let (n, c) = (s[0], s[1]);
        let hw: usize = s[2..].iter().product();
        for (name, t) in [("gamma", gamma), ("beta", beta), ("running_mean", stats.running_mean), ("running_var", stats.running_var)] {
            if t.shape() != [c] {
                return Err(Error::shape("batch_norm", format!("{name} {:?} vs input {s:?} with {c} channels", t.shape())));
            }
        }
        if training && n * hw < 2 {
            return Err(Error::shape("batch_norm", format!("training needs more than one value per channel, input {s:?}")));
        }
        let gpu = self.gpu().clone();
        let params = |flag: u32| ParamBuilder::new().u(n).u(c).u(hw).f(stats.eps).f(stats.momentum).u(flag as usize);
        let (mean, invstd, flag) = if training {
            let mean = Tensor::empty(&gpu, &[c])?;
            let invstd = Tensor::empty(&gpu, &[c])?;
            gpu.dispatch(
                &STATS,
                &[],
                params(0),
                &[self.binding(), mean.binding(), invstd.binding(), stats.running_mean.binding(), stats.running_var.binding()],
                [c as u32, 1, 1],
            )?;
            (mean, invstd, 0)
        } else {
            // Eval: the running statistics are constants of this op (shared storage).
            (stats.running_mean.detach(), stats.running_var.detach(), 1)
        };
        let y = Tensor::empty(&gpu, s)?;
        gpu.dispatch(
            &APPLY,
            &[],
            params(flag),
            &[self.binding(), mean.binding(), invstd.binding(), gamma.binding(), beta.binding(), y.binding()],
            groups_1d(self.numel(), 256),
        )?;
        let (x, g_) = (self.clone(), gamma.detach());
        let (eps, momentum) = (stats.eps, stats.momentum);
        gpu.clone().record(&y, &[self, gamma, beta], move |dy| {
            let p = ParamBuilder::new().u(n).u(c).u(hw).f(eps).f(momentum).u(flag as usize);
            let dgamma = Tensor::empty(&gpu, &[c])?;
            let dbeta = Tensor::empty(&gpu, &[c])?;
            gpu.dispatch(
                &BACKWARD_REDUCE,
                &[],
                p,
                &[x.binding(), dy.binding(), mean.binding(), invstd.binding(), dgamma.binding(), dbeta.binding()],
                [c as u32, 1, 1],
            )?;
            let dx = Tensor::empty(&gpu, x.shape())?;
            let p = ParamBuilder::new().u(n).u(c).u(hw).f(eps).f(momentum).u(flag as usize);
            gpu.dispatch(
                &BACKWARD_APPLY,
                &[],
                p,
                &[
                    x.binding(),
                    dy.binding(),
                    mean.binding(),
                    invstd.binding(),
                    g_.binding(),
                    dgamma.binding(),
                    dbeta.binding(),
                    dx.binding(),
                ],
                groups_1d(x.numel(), 256),
            )?;
            Ok(vec![Some(dx), Some(dgamma), Some(dbeta)])
        });
        Ok(y)
    }
}

/// Plain-Rust reference for the tests.
pub mod cpu {
    /// Training-mode batch norm of `[n, c, hw]`: `(y, batch mean, biased batch variance)`.
    pub fn batch_norm(x: &[f32], gamma: &[f32], beta: &[f32], n: usize, c: usize, hw: usize, eps: f32) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let m = (n * hw) as f64;
        let mut y = vec![0.0; x.len()];
        let (mut means, mut vars) = (vec![0.0; c], vec![0.0; c]);
        for ch in 0..c {
            let idx = |j: usize| ((j / hw) * c + ch) * hw + j % hw;
            let mean = (0..n * hw).map(|j| x[idx(j)] as f64).sum::<f64>() / m;
            let var = (0..n * hw).map(|j| (x[idx(j)] as f64 - mean).powi(2)).sum::<f64>() / m;
            let inv = 1.0 / (var + eps as f64).sqrt();
            for j in 0..n * hw {
                y[idx(j)] = ((x[idx(j)] as f64 - mean) * inv * gamma[ch] as f64 + beta[ch] as f64) as f32;
            }
            means[ch] = mean as f32;
            vars[ch] = var as f32;
        }
        (y, means, vars)
    }
}
