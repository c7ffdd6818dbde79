//! DenseNet-BC (bottleneck + compression), as in SPEC §3: DenseNet-BC-100 has growth 12,
//! three dense blocks of 16 bottleneck layers and transitions that halve the channels.

use super::layers::{BatchNorm2d, Conv2d, Module, Role, Seeds, join};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::tensor::Tensor;

struct Bottleneck {
    bn1: BatchNorm2d,
    conv1: Conv2d,
    bn2: BatchNorm2d,
    conv2: Conv2d,
}

impl Bottleneck {
    /// The new `growth` channels computed from the block's features so far.
    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let h = self.conv1.forward(&self.bn1.forward(x, training)?.relu()?)?;
        self.conv2.forward(&self.bn2.forward(&h, training)?.relu()?)
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
    pub fn new(gpu: &Gpu, in_channels: usize, growth: usize, layers: usize, seeds: &mut Seeds) -> Result<DenseNet> {
        let mut c = 2 * growth;
        let conv1 = Conv2d::new(gpu, in_channels, c, 3, 1, 1, false, seeds.next())?;
        let mut blocks = Vec::new();
        let mut transitions = Vec::new();
        for b in 0..3 {
            let mut block = Vec::new();
            for _ in 0..layers {
                block.push(Bottleneck {
                    bn1: BatchNorm2d::new(gpu, c)?,
                    conv1: Conv2d::new(gpu, c, 4 * growth, 1, 1, 0, false, seeds.next())?,
                    bn2: BatchNorm2d::new(gpu, 4 * growth)?,
                    conv2: Conv2d::new(gpu, 4 * growth, growth, 3, 1, 1, false, seeds.next())?,
                });
                c += growth;
            }
            blocks.push(block);
            if b < 2 {
                let out = c / 2;
                transitions.push(Transition { bn: BatchNorm2d::new(gpu, c)?, conv: Conv2d::new(gpu, c, out, 1, 1, 0, false, seeds.next())? });
                c = out;
            }
        }
        Ok(DenseNet { conv1, blocks, transitions, bn: BatchNorm2d::new(gpu, c)?, features: c })
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
        for (b, block) in self.blocks.iter().enumerate() {
            for layer in block {
                let new = layer.forward(&h, training)?;
                h = Tensor::concat_channels(&[&h, &new])?;
            }
            if let Some(t) = self.transitions.get(b) {
                h = t.conv.forward(&t.bn.forward(&h, training)?.relu()?)?.avg_pool2d(2, 2)?;
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
