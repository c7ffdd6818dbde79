//! Log-softmax and softmax cross-entropy (with an optional logit scale, IsoMax's entropic
//! scale), row-wise over `[B, C]`.

use super::{groups_1d, kernel};
use crate::error::{Error, Result};
use crate::gpu::{KernelSpec, kernel_params, u};
use crate::tensor::Tensor;

const LOG_SOFTMAX: KernelSpec = kernel!("loss", "log_softmax", 1, 1);
const LOG_SOFTMAX_BACKWARD: KernelSpec = kernel!("loss", "log_softmax_backward", 2, 1);
const CROSS_ENTROPY: KernelSpec = kernel!("loss", "cross_entropy", 2, 2);
const CROSS_ENTROPY_BACKWARD: KernelSpec = kernel!("loss", "cross_entropy_backward", 3, 1);

fn rows(t: &Tensor, op: &'static str) -> Result<(usize, usize)> {
    match t.shape() {
        [b, c] if *b > 0 && *c > 0 => Ok((*b, *c)),
        s => Err(Error::shape(
            op,
            format!("expected logits [B, C], got {s:?}"),
        )),
    }
}

kernel_params! {
    /// `Params` of `shaders/loss.wgsl`.
    struct LossParams => "Params" {
        b: u32,
        c: u32,
        scale: f32,
        inv_b: f32,
    }
}

fn params(b: usize, c: usize, scale: f32) -> LossParams {
    LossParams {
        b: u(b),
        c: u(c),
        scale,
        inv_b: 1.0 / b as f32,
    }
}

impl Tensor {
    /// Row-wise log-softmax of `[B, C]`.
    pub fn log_softmax(&self) -> Result<Tensor> {
        let (b, c) = rows(self, "log_softmax")?;
        let gpu = self.gpu().clone();
        let y = Tensor::empty(&gpu, &[b, c])?;
        gpu.dispatch(
            &LOG_SOFTMAX,
            &[],
            &params(b, c, 1.0),
            &[self.binding(), y.binding()],
            [b.div_ceil(64) as u32, 1, 1],
        )?;
        let yd = y.detach();
        gpu.clone().record(&y, &[self], move |dy| {
            let dz = Tensor::empty(&gpu, &[b, c])?;
            gpu.dispatch(
                &LOG_SOFTMAX_BACKWARD,
                &[],
                &params(b, c, 1.0),
                &[yd.binding(), dy.binding(), dz.binding()],
                [b.div_ceil(64) as u32, 1, 1],
            )?;
            Ok(vec![Some(dz)])
        });
        Ok(y)
    }

    /// Mean softmax cross-entropy of `scale · self` (`[B, C]` logits) against `labels`
    /// (`[B]`, class ids stored as f32; ids ≥ C are clamped to C − 1 by the kernel, so
    /// check them on the host). Returns the scalar loss `[1]`.
    pub fn cross_entropy(&self, labels: &Tensor, scale: f32) -> Result<Tensor> {
        let (b, c) = rows(self, "cross_entropy")?;
        if labels.shape() != [b] {
            return Err(Error::shape(
                "cross_entropy",
                format!("labels {:?} vs logits {:?}", labels.shape(), self.shape()),
            ));
        }
        let gpu = self.gpu().clone();
        let per_row = Tensor::empty(&gpu, &[b])?;
        let probs = Tensor::empty(&gpu, &[b, c])?;
        gpu.dispatch(
            &CROSS_ENTROPY,
            &[],
            &params(b, c, scale),
            &[
                self.binding(),
                labels.binding(),
                per_row.binding(),
                probs.binding(),
            ],
            [b.div_ceil(64) as u32, 1, 1],
        )?;
        let loss = gpu.no_grad(|| per_row.mean())?;
        let labels = labels.detach();
        gpu.clone().record(&loss, &[self], move |g| {
            let dz = Tensor::empty(&gpu, &[b, c])?;
            gpu.dispatch(
                &CROSS_ENTROPY_BACKWARD,
                &[],
                &params(b, c, scale),
                &[probs.binding(), labels.binding(), g.binding(), dz.binding()],
                groups_1d(b * c, 256),
            )?;
            Ok(vec![Some(dz)])
        });
        Ok(loss)
    }
}

/// Plain-Rust references for the tests.
#[cfg(any(test, feature = "oracles"))]
pub mod cpu {
    /// Row-wise log-softmax of `[b, c]`.
    pub fn log_softmax(z: &[f32], b: usize, c: usize) -> Vec<f32> {
        let mut out = vec![0.0; b * c];
        for r in 0..b {
            let row = &z[r * c..(r + 1) * c];
            let mx = row.iter().fold(f64::NEG_INFINITY, |m, v| m.max(*v as f64));
            let lse = mx + row.iter().map(|v| (*v as f64 - mx).exp()).sum::<f64>().ln();
            for j in 0..c {
                out[r * c + j] = (row[j] as f64 - lse) as f32;
            }
        }
        out
    }
    /// Mean cross-entropy of `softmax(scale · z)` against labels.
    pub fn cross_entropy(z: &[f32], labels: &[u32], b: usize, c: usize, scale: f32) -> f64 {
        let zs: Vec<f32> = z.iter().map(|v| v * scale).collect();
        let ls = log_softmax(&zs, b, c);
        -(0..b)
            .map(|r| ls[r * c + labels[r] as usize] as f64)
            .sum::<f64>()
            / b as f64
    }
}
