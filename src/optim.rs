//! SGD with momentum, Nesterov and weight decay (the paper's optimizer), and the multi-step
//! learning-rate schedule. Parameters, gradients and velocities never leave the GPU.

use crate::error::{Error, Result};
use crate::gpu::{KernelSpec, kernel_params, u};
use crate::ops::{groups_1d, kernel};
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};

const SGD_STEP: KernelSpec = kernel!("sgd", "sgd_step", 1, 2);

kernel_params! {
    /// `Params` of `shaders/sgd.wgsl`.
    struct SgdParams => "Params" {
        n: u32,
        lr: f32,
        momentum: f32,
        weight_decay: f32,
        nesterov: u32,
    }
}

/// Optimizer settings. The paper: lr 0.1, momentum 0.9, Nesterov, weight decay 1e-4.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SgdConfig {
    pub lr: f32,
    pub momentum: f32,
    pub nesterov: bool,
    pub weight_decay: f32,
    /// Epochs at which the learning rate is multiplied by `gamma`.
    pub milestones: Vec<usize>,
    pub gamma: f32,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 1e-4,
            milestones: vec![150, 200, 250],
            gamma: 0.1,
        }
    }
}

impl SgdConfig {
    /// Learning rate in effect during `epoch` (0-based).
    pub fn lr_at(&self, epoch: usize) -> f32 {
        let drops = self.milestones.iter().filter(|m| epoch >= **m).count();
        self.lr * self.gamma.powi(drops as i32)
    }
}

/// SGD over a fixed list of parameters; one velocity buffer per parameter.
pub struct Sgd {
    pub config: SgdConfig,
    params: Vec<Tensor>,
    velocity: Vec<Tensor>,
}

impl Sgd {
    /// An optimizer for `params` (leaves that require gradients).
    pub fn new(params: Vec<Tensor>, config: SgdConfig) -> Result<Sgd> {
        let velocity = params
            .iter()
            .map(|p| Tensor::zeros(p.gpu(), p.shape()))
            .collect::<Result<_>>()?;
        Ok(Sgd {
            config,
            params,
            velocity,
        })
    }

    /// The velocity buffers (saved in checkpoints so that a resumed run continues exactly).
    pub fn velocity(&self) -> &[Tensor] {
        &self.velocity
    }

    /// One update at learning rate `lr`, then clear the gradients. Parameters without a
    /// gradient (unused in this step) are left alone. Records only; no submit.
    pub fn step(&mut self, lr: f32) -> Result<()> {
        let c = &self.config;
        for (p, v) in self.params.iter().zip(&self.velocity) {
            let Some(g) = p.grad() else { continue };
            if g.shape() != p.shape() {
                return Err(Error::shape(
                    "sgd",
                    format!("gradient {:?} vs parameter {:?}", g.shape(), p.shape()),
                ));
            }
            let n = p.numel();
            p.gpu().dispatch(
                &SGD_STEP,
                &[],
                &SgdParams {
                    n: u(n),
                    lr,
                    momentum: c.momentum,
                    weight_decay: c.weight_decay,
                    nesterov: c.nesterov.into(),
                },
                &[g.binding(), p.binding(), v.binding()],
                groups_1d(n, 256),
            )?;
            p.zero_grad();
        }
        Ok(())
    }
}
