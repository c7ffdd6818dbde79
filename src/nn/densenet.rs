//! DenseNet-BC (bottleneck + compression), as in docs/method.md §3: DenseNet-BC-100 has growth 12,
//! three dense blocks of 16 bottleneck layers and transitions that halve the channels.
//!
//! Memory: each block is one preallocated buffer; every layer writes its new channels into
//! its slot and the next layer normalises the channel prefix in place (no concatenation
//! copies). BN-ReLU-conv runs as one taped op that keeps only the batch statistics and
//! recomputes relu(bn(x)) in backward, so a layer stores O(growth) channels, not O(depth).

use super::layers::{BatchNorm2d, Conv2d, Module, Role, Seeds, join};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::ops::batchnorm::{bn_apply, bn_backward, bn_forward};
use crate::ops::conv::ConvConfig;
use crate::tensor::Tensor;

/// `conv(relu(bn(x[:, ..channels])))`, taped as one op that recomputes relu(bn(x)) in
/// backward instead of keeping it.
fn bn_relu_conv(
    x: &Tensor,
    channels: usize,
    bn: &BatchNorm2d,
    conv: &Conv2d,
    training: bool,
) -> Result<Tensor> {
    let gpu = x.gpu().clone();
    let (t, stats, g) = bn_forward(
        x,
        channels,
        true,
        &bn.gamma,
        &bn.beta,
        &bn.stats(),
        training,
    )?;
    let y = gpu.no_grad(|| t.conv2d(&conv.weight, None, conv.stride, conv.padding))?;
    let t_shape = t.shape().to_vec();
    drop(t);
    let (xd, gamma, beta, w) = (
        x.detach(),
        bn.gamma.detach(),
        bn.beta.detach(),
        conv.weight.detach(),
    );
    let (stride, pad) = (conv.stride, conv.padding);
    gpu.clone()
        .record(&y, &[x, &bn.gamma, &bn.beta, &conv.weight], move |dy| {
            let t = bn_apply(&xd, &stats, &gamma, &beta, g, &t_shape)?;
            let cfg = ConvConfig::for_gpu(&gpu);
            let dw = dy.conv2d_backward_weight(&t, w.shape(), stride, pad, cfg)?;
            drop(t);
            let dt = dy.conv2d_backward_data(&w, &t_shape, stride, pad, cfg)?;
            let (dx, dgamma, dbeta) = bn_backward(&xd, &dt, &stats, &gamma, &beta, g)?;
            Ok(vec![Some(dx), Some(dgamma), Some(dbeta), Some(dw)])
        });
    Ok(y)
}

struct Bottleneck {
    bn1: BatchNorm2d,
    conv1: Conv2d,
    bn2: BatchNorm2d,
    conv2: Conv2d,
}

impl Bottleneck {
    /// The new `growth` channels computed from the first `channels` channels of `block`.
    fn forward(&self, block: &Tensor, channels: usize, training: bool) -> Result<Tensor> {
        let h = bn_relu_conv(block, channels, &self.bn1, &self.conv1, training)?;
        let c = h.shape()[1];
        bn_relu_conv(&h, c, &self.bn2, &self.conv2, training)
    }
}

struct Transition {
    bn: BatchNorm2d,
    conv: Conv2d,
}

/// DenseNet-BC backbone.
pub struct DenseNet {
    conv1: Conv2d,
    blocks: Vec<Vec<Bottleneck>>,
    transitions: Vec<Transition>,
    bn: BatchNorm2d,
    /// Feature size (channels after the last block).
    pub features: usize,
}

impl DenseNet {
    /// `layers` bottleneck layers per block, three blocks, compression 0.5.
    pub fn new(
        gpu: &Gpu,
        in_channels: usize,
        growth: usize,
        layers: usize,
        seeds: &mut Seeds,
    ) -> Result<DenseNet> {
        let mut c = 2 * growth;
        let conv1 = Conv2d::new(gpu, in_channels, c, 3, 1, 1, false, seeds.next_seed())?;
        let mut blocks = Vec::new();
        let mut transitions = Vec::new();
        for b in 0..3 {
            let mut block = Vec::new();
            for _ in 0..layers {
                block.push(Bottleneck {
                    bn1: BatchNorm2d::new(gpu, c)?,
                    conv1: Conv2d::new(gpu, c, 4 * growth, 1, 1, 0, false, seeds.next_seed())?,
                    bn2: BatchNorm2d::new(gpu, 4 * growth)?,
                    conv2: Conv2d::new(gpu, 4 * growth, growth, 3, 1, 1, false, seeds.next_seed())?,
                });
                c += growth;
            }
            blocks.push(block);
            if b < 2 {
                let out = c / 2;
                transitions.push(Transition {
                    bn: BatchNorm2d::new(gpu, c)?,
                    conv: Conv2d::new(gpu, c, out, 1, 1, 0, false, seeds.next_seed())?,
                });
                c = out;
            }
        }
        Ok(DenseNet {
            conv1,
            blocks,
            transitions,
            bn: BatchNorm2d::new(gpu, c)?,
            features: c,
        })
    }

    /// DenseNet-BC-100, growth 12: 24→216→108→300→150→342 channels.
    pub fn densenet100(gpu: &Gpu, in_channels: usize, seeds: &mut Seeds) -> Result<DenseNet> {
        Self::new(gpu, in_channels, 12, 16, seeds)
    }

    /// A small variant for CPU adapters: growth 8, 2 layers per block.
    pub fn tiny(gpu: &Gpu, in_channels: usize, seeds: &mut Seeds) -> Result<DenseNet> {
        Self::new(gpu, in_channels, 8, 2, seeds)
    }

    /// Features `[B, D]`.
    pub fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let mut h = self.conv1.forward(x)?;
        let mut c = h.shape()[1];
        let mut block = h.clone();
        for (b, layers) in self.blocks.iter().enumerate() {
            let growth: usize = layers.iter().map(|l| l.conv2.weight.shape()[0]).sum();
            let mut shape = h.shape().to_vec();
            shape[1] = c + growth;
            block = Tensor::zeros(x.gpu(), &shape)?.write_channels(&h, 0)?;
            for layer in layers {
                let new = layer.forward(&block, c, training)?;
                block = block.write_channels(&new, c)?;
                c += new.shape()[1];
            }
            if let Some(t) = self.transitions.get(b) {
                h = bn_relu_conv(&block, c, &t.bn, &t.conv, training)?.avg_pool2d(2, 2)?;
                c = h.shape()[1];
            }
        }
        block
            .batch_norm_relu(c, &self.bn.gamma, &self.bn.beta, &self.bn.stats(), training)?
            .global_avg_pool()
    }
}

impl DenseNet {
    /// The same function built from plain ops (concatenation, batch norm, ReLU, conv):
    /// quadratic memory, kept as the reference the tests compare the block-buffer path with.
    #[doc(hidden)]
    pub fn forward_reference(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let mut h = self.conv1.forward(x)?;
        for (b, layers) in self.blocks.iter().enumerate() {
            for l in layers {
                let t = l.conv1.forward(&l.bn1.forward(&h, training)?.relu()?)?;
                let new = l.conv2.forward(&l.bn2.forward(&t, training)?.relu()?)?;
                h = Tensor::concat_channels(&[&h, &new])?;
            }
            if let Some(t) = self.transitions.get(b) {
                h = t
                    .conv
                    .forward(&t.bn.forward(&h, training)?.relu()?)?
                    .avg_pool2d(2, 2)?;
            }
        }
        self.bn.forward(&h, training)?.relu()?.global_avg_pool()
    }
}

impl Module for DenseNet {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor, Role)) {
        self.conv1.visit(&join(prefix, "conv1"), f);
        for (b, block) in self.blocks.iter().enumerate() {
            for (i, l) in block.iter().enumerate() {
                let p = join(prefix, &format!("block{b}.layer{i}"));
                l.bn1.visit(&join(&p, "bn1"), f);
                l.conv1.visit(&join(&p, "conv1"), f);
                l.bn2.visit(&join(&p, "bn2"), f);
                l.conv2.visit(&join(&p, "conv2"), f);
            }
            if let Some(t) = self.transitions.get(b) {
                let p = join(prefix, &format!("transition{b}"));
                t.bn.visit(&join(&p, "bn"), f);
                t.conv.visit(&join(&p, "conv"), f);
            }
        }
        self.bn.visit(&join(prefix, "bn"), f);
    }
}
