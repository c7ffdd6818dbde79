//! ResNet with basic blocks (CIFAR form: 3×3 stem, no max-pool), as in docs/method.md §3.

use super::densenet::bn_relu_conv;
use super::layers::{BatchNorm2d, Conv2d, Module, Role, Seeds, join};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::ops::batchnorm::BatchStats;
use crate::tensor::Tensor;

struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    /// 1×1 conv + BN where the shape changes.
    shortcut: Option<(Conv2d, BatchNorm2d)>,
}

impl BasicBlock {
    fn new(gpu: &Gpu, cin: usize, cout: usize, stride: usize, seeds: &mut Seeds) -> Result<Self> {
        let shortcut = if stride != 1 || cin != cout {
            Some((
                Conv2d::new(gpu, cin, cout, 1, stride, 0, false, seeds.next_seed())?,
                BatchNorm2d::new(gpu, cout)?,
            ))
        } else {
            None
        };
        Ok(BasicBlock {
            conv1: Conv2d::new(gpu, cin, cout, 3, stride, 1, false, seeds.next_seed())?,
            bn1: BatchNorm2d::new(gpu, cout)?,
            conv2: Conv2d::new(gpu, cout, cout, 3, 1, 1, false, seeds.next_seed())?,
            bn2: BatchNorm2d::new(gpu, cout)?,
            shortcut,
        })
    }

    /// `relu(bn2(conv2(relu(bn1(conv1(x))))) + skip(x))`. BN1 + ReLU + conv2 is one taped
    /// op (the normalisation runs inside the conv's loads where the adapter has direct conv
    /// kernels, and relu(bn1(·)) is never stored); BN2 + add + ReLU is one fused op.
    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let h = self.conv1.forward(x)?;
        let c = h.shape()[1];
        let out = bn_relu_conv(&h, c, &self.bn1, &self.conv2, training, BatchStats::Compute)?;
        let skip = match &self.shortcut {
            Some((c, b)) => b.forward(&c.forward(x)?, training)?,
            None => x.clone(),
        };
        let bn2 = &self.bn2;
        out.batch_norm_add_relu(&skip, &bn2.gamma, &bn2.beta, &bn2.stats(), training)
    }
}

/// `relu(bn(x))` in one op.
fn bn_relu(x: &Tensor, bn: &BatchNorm2d, training: bool) -> Result<Tensor> {
    let c = x.shape().get(1).copied().unwrap_or(0);
    x.batch_norm_relu(c, &bn.gamma, &bn.beta, &bn.stats(), training)
}

impl Module for BasicBlock {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor, Role)) {
        self.conv1.visit(&join(prefix, "conv1"), f);
        self.bn1.visit(&join(prefix, "bn1"), f);
        self.conv2.visit(&join(prefix, "conv2"), f);
        self.bn2.visit(&join(prefix, "bn2"), f);
        if let Some((c, b)) = &self.shortcut {
            c.visit(&join(prefix, "shortcut.conv"), f);
            b.visit(&join(prefix, "shortcut.bn"), f);
        }
    }
}

/// Stem conv3×3 + BN + ReLU, stages of basic blocks, global average pool.
pub struct ResNet {
    stem: Conv2d,
    bn: BatchNorm2d,
    blocks: Vec<BasicBlock>,
    /// Feature size (channels of the last stage).
    pub features: usize,
}

impl ResNet {
    /// `stages`: (blocks, channels, stride of the first block) per stage.
    pub fn new(
        gpu: &Gpu,
        in_channels: usize,
        stem: usize,
        stages: &[(usize, usize, usize)],
        seeds: &mut Seeds,
    ) -> Result<ResNet> {
        let stem_conv = Conv2d::new(gpu, in_channels, stem, 3, 1, 1, false, seeds.next_seed())?;
        let bn = BatchNorm2d::new(gpu, stem)?;
        let mut blocks = Vec::new();
        let mut c = stem;
        for &(n, cout, stride) in stages {
            for i in 0..n {
                blocks.push(BasicBlock::new(
                    gpu,
                    c,
                    cout,
                    if i == 0 { stride } else { 1 },
                    seeds,
                )?);
                c = cout;
            }
        }
        Ok(ResNet {
            stem: stem_conv,
            bn,
            blocks,
            features: c,
        })
    }

    /// ResNet-34: blocks [3, 4, 6, 3] at 64/128/256/512 channels, strides 1/2/2/2.
    pub fn resnet34(gpu: &Gpu, in_channels: usize, seeds: &mut Seeds) -> Result<ResNet> {
        Self::new(
            gpu,
            in_channels,
            64,
            &[(3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)],
            seeds,
        )
    }

    /// The small CPU-friendly variant (the layout of issue #6's reference benchmark):
    /// stem 16, one block each at 16 (stride 1), 32 and 64 (stride 2).
    pub fn tiny(gpu: &Gpu, in_channels: usize, seeds: &mut Seeds) -> Result<ResNet> {
        Self::new(
            gpu,
            in_channels,
            16,
            &[(1, 16, 1), (1, 32, 2), (1, 64, 2)],
            seeds,
        )
    }

    /// Features `[B, D]` of images `[B, C, H, W]`.
    pub fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let mut h = bn_relu(&self.stem.forward(x)?, &self.bn, training)?;
        for b in &self.blocks {
            h = b.forward(&h, training)?;
        }
        h.global_avg_pool()
    }
}

impl Module for ResNet {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor, Role)) {
        self.stem.visit(&join(prefix, "conv1"), f);
        self.bn.visit(&join(prefix, "bn1"), f);
        for (i, b) in self.blocks.iter().enumerate() {
            b.visit(&join(prefix, &format!("block{i}")), f);
        }
    }
}
