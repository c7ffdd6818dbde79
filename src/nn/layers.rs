//! Layers with parameters: convolution, batch norm, linear.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::ops::batchnorm::BatchNormStats;
use crate::tensor::Tensor;

/// Whether a tensor is trained (parameter) or only carried along (running statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Trained by the optimizer (weights, biases, prototypes).
    Param,
    /// State that is not trained (batch-norm running statistics).
    Buffer,
}

/// Something that owns named tensors: layers, blocks, models.
pub trait Module {
    /// Call `f` with every tensor's dotted name, the tensor and its role, in a fixed order.
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor, Role));
}

pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn param(t: Tensor) -> Tensor {
    t.set_requires_grad(true);
    t
}

/// 2-D convolution, He-normal (fan-out) initialised as in the paper.
pub(crate) struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub stride: usize,
    pub padding: usize,
}

impl Conv2d {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &Gpu,
        in_c: usize,
        out_c: usize,
        k: usize,
        stride: usize,
        padding: usize,
        bias: bool,
        seed: u64,
    ) -> Result<Conv2d> {
        let weight = param(Tensor::he_normal(
            gpu,
            &[out_c, in_c, k, k],
            out_c * k * k,
            seed,
        )?);
        let bias = if bias {
            Some(param(Tensor::zeros(gpu, &[out_c])?))
        } else {
            None
        };
        Ok(Conv2d {
            weight,
            bias,
            stride,
            padding,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.conv2d(&self.weight, self.bias.as_ref(), self.stride, self.padding)
    }
}

impl Module for Conv2d {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor, Role)) {
        f(join(prefix, "weight"), &self.weight, Role::Param);
        if let Some(b) = &self.bias {
            f(join(prefix, "bias"), b, Role::Param);
        }
    }
}

/// Batch norm 2d with PyTorch's defaults (momentum 0.1, eps 1e-5); weight 1, bias 0.
pub(crate) struct BatchNorm2d {
    pub gamma: Tensor,
    pub beta: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
}

impl BatchNorm2d {
    pub fn new(gpu: &Gpu, c: usize) -> Result<BatchNorm2d> {
        Ok(BatchNorm2d {
            gamma: param(Tensor::ones(gpu, &[c])?),
            beta: param(Tensor::zeros(gpu, &[c])?),
            running_mean: Tensor::zeros(gpu, &[c])?,
            running_var: Tensor::ones(gpu, &[c])?,
        })
    }

    /// The running statistics and PyTorch's momentum and eps.
    pub fn stats(&self) -> BatchNormStats<'_> {
        BatchNormStats {
            running_mean: &self.running_mean,
            running_var: &self.running_var,
            momentum: 0.1,
            eps: 1e-5,
        }
    }

    pub fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        x.batch_norm(&self.gamma, &self.beta, &self.stats(), training)
    }
}

impl Module for BatchNorm2d {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor, Role)) {
        f(join(prefix, "weight"), &self.gamma, Role::Param);
        f(join(prefix, "bias"), &self.beta, Role::Param);
        f(
            join(prefix, "running_mean"),
            &self.running_mean,
            Role::Buffer,
        );
        f(join(prefix, "running_var"), &self.running_var, Role::Buffer);
    }
}

/// Fully connected layer with PyTorch's default init (uniform ±1/√in).
pub(crate) struct Linear {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl Linear {
    pub fn new(gpu: &Gpu, input: usize, output: usize, seed: u64) -> Result<Linear> {
        let bound = 1.0 / (input as f32).sqrt();
        Ok(Linear {
            weight: param(Tensor::uniform(gpu, &[output, input], -bound, bound, seed)?),
            bias: param(Tensor::uniform(
                gpu,
                &[output],
                -bound,
                bound,
                seed ^ 0x9e37_79b9,
            )?),
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.linear(&self.weight, Some(&self.bias))
    }
}

impl Module for Linear {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor, Role)) {
        f(join(prefix, "weight"), &self.weight, Role::Param);
        f(join(prefix, "bias"), &self.bias, Role::Param);
    }
}

/// The SplitMix64 finalizer: a bijection on u64 whose outputs for structured inputs (0, 1,
/// 2, …) look independent.
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The generator seed of the `index`-th tensor (in construction order) of a model built with
/// `seed`: splitmix64(splitmix64(seed) + splitmix64(index ⊕ K)), K a fixed odd constant that
/// breaks the symmetry between (a, b) and (b, a). Both halves go through the mix,
/// so nearby seeds and nearby indices land far apart, and (seed, index) ≠ (seed', index')
/// gives an unrelated stream (a collision needs two 64-bit hashes to coincide). The seed
/// initialises a ChaCha generator (`StdRng::seed_from_u64`).
pub fn tensor_seed(seed: u64, index: u64) -> u64 {
    splitmix64(splitmix64(seed).wrapping_add(splitmix64(index ^ 0x6a09_e667_f3bc_c909)))
}

/// A per-model seed sequence: the `k`-th call of [`Seeds::next_seed`] returns
/// [`tensor_seed`]`(seed, k)`, so every parameter tensor gets its own stream and two model
/// seeds share no draws.
pub struct Seeds {
    seed: u64,
    index: u64,
}

impl Seeds {
    /// The sequence of model seed `seed`, before its first draw.
    pub fn new(seed: u64) -> Seeds {
        Seeds { seed, index: 0 }
    }

    /// The seed for the next parameter tensor: [`tensor_seed`]`(seed, k)` on the `k`-th call
    /// (`k` from 1).
    pub fn next_seed(&mut self) -> u64 {
        self.index += 1;
        tensor_seed(self.seed, self.index)
    }
}
