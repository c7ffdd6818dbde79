//! SGD with momentum, Nesterov and weight decay (the paper's optimizer), and the multi-step
//! learning-rate schedule. Parameters, gradients and velocities never leave the GPU.

use crate::autograd::Gradients;
use crate::error::{Error, Result};
use crate::gpu::{KernelSpec, kernel_params, u};
use crate::ops::{groups_1d, kernel};
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};

const SGD_STEP: KernelSpec = kernel!("sgd", "sgd_step", 2, 4);

kernel_params! {
    /// `Params` of `shaders/sgd.wgsl`.
    struct SgdParams => "Params" {
        n: u32,
        lr: f32,
        momentum: f32,
        weight_decay: f32,
        nesterov: u32,
        n1: u32,
    }
}

/// Optimizer settings. The paper: lr 0.1, momentum 0.9, Nesterov, weight decay 1e-4.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SgdConfig {
    /// Initial learning rate.
    pub lr: f32,
    /// Momentum μ in `v = μ·v + g`.
    pub momentum: f32,
    /// Step by `g + μ·v` (Nesterov, PyTorch's form) instead of `v`.
    pub nesterov: bool,
    /// L2 penalty added to each gradient as `weight_decay * w`.
    pub weight_decay: f32,
    /// Epochs at which the learning rate is multiplied by `gamma`.
    pub milestones: Vec<usize>,
    /// Learning-rate factor applied at each milestone.
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
    /// The paper's schedule scaled to a run of `epochs` epochs: drops at ⌊epochs/2⌋,
    /// ⌊2·epochs/3⌋ and ⌊5·epochs/6⌋ (150/200/250 of 300), keeping only the distinct ones
    /// inside (0, epochs). A milestone `m` cuts the rate from epoch `m` (0-based) on, so none
    /// is 0 (the first epoch always trains at the given rate) and a 1-epoch run has none.
    ///
    /// ```
    /// use isomax::optim::SgdConfig;
    /// assert_eq!(SgdConfig::paper_milestones(300), vec![150, 200, 250]);
    /// assert_eq!(SgdConfig::paper_milestones(3), vec![1, 2]);
    /// assert!(SgdConfig::paper_milestones(1).is_empty());
    /// ```
    pub fn paper_milestones(epochs: usize) -> Vec<usize> {
        let mut m: Vec<usize> = [epochs / 2, epochs * 2 / 3, epochs * 5 / 6]
            .into_iter()
            .filter(|&m| m > 0 && m < epochs)
            .collect();
        m.dedup();
        m
    }

    /// Check user-given milestones against a run of `epochs` epochs: each inside
    /// (0, epochs) and strictly increasing.
    pub fn check_milestones(milestones: &[usize], epochs: usize) -> Result<()> {
        for (i, &m) in milestones.iter().enumerate() {
            if m == 0 || m >= epochs {
                return Err(Error::Config(format!(
                    "milestone {m} is outside (0, {epochs}): a drop at 0 would cut the learning \
                     rate before training ran, one at or after {epochs} never happens"
                )));
            }
            if i > 0 && milestones[i - 1] >= m {
                return Err(Error::Config(format!(
                    "milestones {milestones:?} must be strictly increasing"
                )));
            }
        }
        Ok(())
    }

    /// Learning rate in effect during `epoch` (0-based).
    pub fn lr_at(&self, epoch: usize) -> f32 {
        let drops = self.milestones.iter().filter(|m| epoch >= **m).count();
        self.lr * self.gamma.powi(drops as i32)
    }
}

/// SGD over a fixed list of parameters; one velocity buffer per parameter.
pub struct Sgd {
    /// The settings it steps with.
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

    /// One update at learning rate `lr` from the gradients of a backward pass. Parameters
    /// without a gradient (unused in this step) are left alone. Records only; no submit.
    pub fn step(&mut self, grads: &Gradients, lr: f32) -> Result<()> {
        let c = &self.config;
        let mut updates = Vec::with_capacity(self.params.len());
        for (p, v) in self.params.iter().zip(&self.velocity) {
            let Some(g) = grads.get(p) else { continue };
            if g.shape() != p.shape() {
                return Err(Error::mismatch(
                    "sgd gradient",
                    format!("{:?} (the parameter's shape)", p.shape()),
                    format!("{:?}", g.shape()),
                ));
            }
            updates.push((g, p, v));
        }
        // Two parameters per dispatch; an odd last one goes with an empty second (its
        // writable bindings still need buffers of their own).
        let mut unused = Vec::new();
        for pair in updates.chunks(2) {
            let (g0, p0, v0) = pair[0];
            if pair.len() == 1 {
                unused = vec![
                    Tensor::empty(p0.gpu(), &[1])?,
                    Tensor::empty(p0.gpu(), &[1])?,
                ];
            }
            let (g1, p1, v1, n1) = match pair.get(1) {
                Some(&(g, p, v)) => (g, p, v, p.numel()),
                None => (g0, &unused[0], &unused[1], 0),
            };
            let n = p0.numel();
            p0.gpu().dispatch(
                &SGD_STEP,
                &[],
                &SgdParams {
                    n: u(n),
                    lr,
                    momentum: c.momentum,
                    weight_decay: c.weight_decay,
                    nesterov: c.nesterov.into(),
                    n1: u(n1),
                },
                &[
                    g0.binding(),
                    g1.binding(),
                    p0.binding(),
                    v0.binding(),
                    p1.binding(),
                    v1.binding(),
                ],
                groups_1d(n + n1, 256),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::SgdConfig;

    #[test]
    fn default_milestones_are_distinct_inside_the_run_and_never_cut_before_training() {
        assert_eq!(SgdConfig::paper_milestones(300), vec![150, 200, 250]);
        for epochs in 1..=12 {
            let m = SgdConfig::paper_milestones(epochs);
            SgdConfig::check_milestones(&m, epochs).unwrap();
            assert!(m.windows(2).all(|w| w[0] < w[1]), "{epochs}: {m:?}");
            assert!(m.iter().all(|&x| x > 0 && x < epochs), "{epochs}: {m:?}");
            let cfg = SgdConfig {
                lr: 0.1,
                milestones: m.clone(),
                ..SgdConfig::default()
            };
            // The first epoch trains at the given rate; every drop is one factor of gamma.
            assert_eq!(cfg.lr_at(0), 0.1, "{epochs}: {m:?}");
            for e in 1..epochs {
                let ratio = cfg.lr_at(e - 1) / cfg.lr_at(e);
                assert!(
                    (ratio - 1.0).abs() < 1e-6 || (ratio - 10.0).abs() < 1e-4,
                    "{epochs}: {m:?} epoch {e} ratio {ratio}"
                );
            }
            if epochs >= 2 {
                assert!(!m.is_empty(), "{epochs}: a run of 2+ epochs has a drop");
            }
        }
        assert!(SgdConfig::paper_milestones(1).is_empty());
        assert_eq!(SgdConfig::paper_milestones(2), vec![1]);
        assert_eq!(SgdConfig::paper_milestones(3), vec![1, 2]);
        assert_eq!(SgdConfig::paper_milestones(12), vec![6, 8, 10]);
    }

    #[test]
    fn bad_user_milestones_are_rejected() {
        assert!(SgdConfig::check_milestones(&[0], 5).is_err());
        assert!(SgdConfig::check_milestones(&[5], 5).is_err());
        assert!(SgdConfig::check_milestones(&[3, 2], 5).is_err());
        assert!(SgdConfig::check_milestones(&[2, 2], 5).is_err());
        assert!(SgdConfig::check_milestones(&[2, 4], 5).is_ok());
    }
}
