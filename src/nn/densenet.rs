//! DenseNet-BC (bottleneck + compression), as in docs/method.md §3: DenseNet-BC-100 has growth 12,
//! three dense blocks of 16 bottleneck layers and transitions that halve the channels.
//!
//! Memory and passes: each block is one preallocated buffer, taped as ONE op. Its forward
//! (no taping inside) runs the layers: BN-ReLU over the channel prefix (read in place, no
//! concatenation), 1×1 conv, BN-ReLU, 3×3 conv, and the new channels copied into their slot.
//! It keeps per layer only the batch statistics and the bottleneck output; relu(bn(·)) is
//! recomputed in backward. Its backward walks the layers in reverse with one gradient buffer
//! for the whole block: each layer's BN backward adds its input gradient into the prefix of
//! that buffer in place (no zero-filled full-size gradient per layer, no adds over the block),
//! up to four layers at a time in one pass over the buffer.
//!
//! Batch statistics: a channel of the block never changes within a step, so its batch mean
//! and variance are reduced once, when the channel is written, into a per-block cache; every
//! BN that reads the channel later (each layer's bn1, the transition's, the final one) takes
//! them from the cache and applies its own running-average update, exactly as if it had
//! reduced the channel itself (same kernels, same formulas).

use super::layers::{BatchNorm2d, Conv2d, Module, Role, Seeds, join};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::ops::batchnorm::{
    BatchStats, BnGeom, DeferredBackward, bn_apply, bn_apply_into, bn_backward, bn_cache_stats,
    bn_forward_from, bn_stats,
};
use crate::ops::concat::copy as copy_channels;
use crate::ops::conv::ConvConfig;
use crate::tensor::Tensor;
use std::sync::Arc;

/// `conv(relu(bn(x[:, ..c])))`, not taped. Where the adapter has the direct conv kernels,
/// the normalisation runs inside their loads and relu(bn(x)) is never stored; otherwise it
/// goes through `scratch` (a buffer with room for it) or a temporary.
#[allow(clippy::too_many_arguments)]
fn conv_of_bn_relu(
    x: &Tensor,
    (stats, g): (&Tensor, BnGeom),
    gamma: &Tensor,
    beta: &Tensor,
    w: &Tensor,
    (stride, pad): (usize, usize),
    scratch: Option<&Tensor>,
) -> Result<Tensor> {
    let c = g.channels();
    if let Some(y) = x.conv2d_bn_relu(c, stats, gamma, beta, w, stride, pad)? {
        return Ok(y);
    }
    let t = bn_relu_input(x, (stats, g), gamma, beta, scratch)?;
    x.gpu().no_grad(|| t.conv2d(w, None, stride, pad))
}

/// The weight gradient of [`conv_of_bn_relu`] from `dy`, recomputing relu(bn(x)).
#[allow(clippy::too_many_arguments)]
fn conv_of_bn_relu_dw(
    dy: &Tensor,
    x: &Tensor,
    (stats, g): (&Tensor, BnGeom),
    gamma: &Tensor,
    beta: &Tensor,
    w_shape: &[usize],
    (stride, pad): (usize, usize),
    scratch: Option<&Tensor>,
) -> Result<Tensor> {
    let c = g.channels();
    if let Some(dw) =
        dy.conv2d_bn_relu_backward_weight(x, c, stats, gamma, beta, w_shape, stride, pad)?
    {
        return Ok(dw);
    }
    let t = bn_relu_input(x, (stats, g), gamma, beta, scratch)?;
    dy.conv2d_backward_weight(&t, w_shape, stride, pad, ConvConfig::for_gpu(x.gpu()))
}

/// relu(bn(x[:, ..c])) stored: in `scratch` if given, else in a new tensor.
fn bn_relu_input(
    x: &Tensor,
    (stats, g): (&Tensor, BnGeom),
    gamma: &Tensor,
    beta: &Tensor,
    scratch: Option<&Tensor>,
) -> Result<Tensor> {
    let shape = with_channels(x.shape(), g.channels());
    match scratch {
        Some(s) => {
            let t = s.prefix_view(&shape)?;
            bn_apply_into(x, stats, gamma, beta, g, &t)?;
            Ok(t)
        }
        None => bn_apply(x, stats, gamma, beta, g, &shape),
    }
}

/// Whether this adapter's conv kernels normalise their input themselves (then no buffer
/// for relu(bn(x)) is needed).
fn fused(gpu: &Gpu) -> bool {
    ConvConfig::for_gpu(gpu).direct.is_some()
}

/// The statistics (batch ones in training, from `from`) with which `bn` + ReLU normalises
/// the first `channels` channels of `x`.
fn relu_bn_stats(
    bn: &BatchNorm2d,
    x: &Tensor,
    channels: usize,
    training: bool,
    from: BatchStats,
) -> Result<(Tensor, BnGeom)> {
    let (gamma, beta) = (&bn.gamma, &bn.beta);
    bn_stats(x, channels, true, gamma, beta, &bn.stats(), training, from)
}

/// `conv(relu(bn(x[:, ..channels])))`, taped as one op that recomputes relu(bn(x)) in
/// backward instead of keeping it.
pub(super) fn bn_relu_conv(
    x: &Tensor,
    channels: usize,
    bn: &BatchNorm2d,
    conv: &Conv2d,
    training: bool,
    from: BatchStats,
) -> Result<Tensor> {
    let gpu = x.gpu().clone();
    let (stats, g) = relu_bn_stats(bn, x, channels, training, from)?;
    let sp = (conv.stride, conv.padding);
    let y = conv_of_bn_relu(x, (&stats, g), &bn.gamma, &bn.beta, &conv.weight, sp, None)?;
    let t_shape = with_channels(x.shape(), channels);
    let (xd, gamma, beta, w) = (
        x.detach(),
        bn.gamma.detach(),
        bn.beta.detach(),
        conv.weight.detach(),
    );
    let (stride, pad) = (conv.stride, conv.padding);
    gpu.clone()
        .record(&y, &[x, &bn.gamma, &bn.beta, &conv.weight], move |dy| {
            let st = (&stats, g);
            let dw = conv_of_bn_relu_dw(dy, &xd, st, &gamma, &beta, w.shape(), sp, None)?;
            let cfg = ConvConfig::for_gpu(&gpu);
            let dt = dy.conv2d_backward_data(&w, &t_shape, stride, pad, cfg)?;
            let (dx, dgamma, dbeta) = bn_backward(&xd, &dt, &stats, &gamma, &beta, g)?;
            Ok(vec![Some(dx), Some(dgamma), Some(dbeta), Some(dw)])
        });
    Ok(y)
}

/// `relu(bn(x[:, ..channels]))` with the batch statistics from `from`, taped.
fn bn_relu(
    x: &Tensor,
    channels: usize,
    bn: &BatchNorm2d,
    training: bool,
    from: BatchStats,
) -> Result<Tensor> {
    let (y, stats, g) = bn_forward_from(
        x,
        channels,
        true,
        &bn.gamma,
        &bn.beta,
        &bn.stats(),
        training,
        from,
    )?;
    let (xd, gamma, beta) = (x.detach(), bn.gamma.detach(), bn.beta.detach());
    x.gpu().record(&y, &[x, &bn.gamma, &bn.beta], move |dy| {
        let (dx, dgamma, dbeta) = bn_backward(&xd, dy, &stats, &gamma, &beta, g)?;
        Ok(vec![Some(dx), Some(dgamma), Some(dbeta)])
    });
    Ok(y)
}

struct Bottleneck {
    bn1: BatchNorm2d,
    conv1: Conv2d,
    bn2: BatchNorm2d,
    conv2: Conv2d,
}

/// What a bottleneck layer's backward needs from its forward.
struct Saved {
    /// Channels of the block the layer read (its new ones start there).
    c: usize,
    stats1: Tensor,
    g1: BnGeom,
    /// The 1×1 conv's output (input of bn2).
    h1: Tensor,
    stats2: Tensor,
    g2: BnGeom,
}

/// A layer's parameters, detached (shared storage) for the backward closure.
struct LayerParams {
    gamma1: Tensor,
    beta1: Tensor,
    w1: Tensor,
    conv1: (usize, usize),
    gamma2: Tensor,
    beta2: Tensor,
    w2: Tensor,
    conv2: (usize, usize),
}

impl Bottleneck {
    fn params(&self) -> [&Tensor; 6] {
        [
            &self.bn1.gamma,
            &self.bn1.beta,
            &self.conv1.weight,
            &self.bn2.gamma,
            &self.bn2.beta,
            &self.conv2.weight,
        ]
    }

    fn detached(&self) -> LayerParams {
        LayerParams {
            gamma1: self.bn1.gamma.detach(),
            beta1: self.bn1.beta.detach(),
            w1: self.conv1.weight.detach(),
            conv1: (self.conv1.stride, self.conv1.padding),
            gamma2: self.bn2.gamma.detach(),
            beta2: self.bn2.beta.detach(),
            w2: self.conv2.weight.detach(),
            conv2: (self.conv2.stride, self.conv2.padding),
        }
    }

    /// Writes the new channels into `block` at `c` from its first `c` channels (not taped);
    /// relu(bn1(·)) goes through `scratch` (one buffer for every layer of the block).
    fn forward_into(
        &self,
        block: &Tensor,
        c: usize,
        training: bool,
        cache: Option<&Tensor>,
        scratch: Option<&Tensor>,
    ) -> Result<(usize, Saved)> {
        let from = cache.map_or(BatchStats::Compute, BatchStats::Cached);
        let (bn1, bn2) = (&self.bn1, &self.bn2);
        let (stats1, g1) = relu_bn_stats(bn1, block, c, training, from)?;
        let (w1, w2) = (&self.conv1.weight, &self.conv2.weight);
        let sp1 = (self.conv1.stride, self.conv1.padding);
        let h1 = conv_of_bn_relu(
            block,
            (&stats1, g1),
            &bn1.gamma,
            &bn1.beta,
            w1,
            sp1,
            scratch,
        )?;
        let c2 = h1.shape()[1];
        let (stats2, g2) = relu_bn_stats(bn2, &h1, c2, training, BatchStats::Compute)?;
        let sp2 = (self.conv2.stride, self.conv2.padding);
        let new = conv_of_bn_relu(&h1, (&stats2, g2), &bn2.gamma, &bn2.beta, w2, sp2, None)?;
        let k = new.shape()[1];
        copy_channels(&new, 0, block, c, k)?;
        if let Some(cache) = cache {
            bn_cache_stats(block, c, k, cache)?;
        }
        Ok((
            k,
            Saved {
                c,
                stats1,
                g1,
                h1,
                stats2,
                g2,
            },
        ))
    }
}

/// The backward of one dense block: `grad` (the block's shape) is the gradient of the block
/// buffer, owned by this call and updated in place; returns the gradient of the block's
/// input (its first `c0` channels) and of each layer's parameters, in `params()` order.
fn block_backward(
    block: &Tensor,
    grad: &Tensor,
    c0: usize,
    layers: &[LayerParams],
    saved: Vec<Saved>,
) -> Result<Vec<Option<Tensor>>> {
    let gpu = block.gpu();
    let cfg = ConvConfig::for_gpu(gpu);
    let shape = block.shape().to_vec();
    let with_channels = |c: usize| with_channels(&shape, c);
    // Without fused kernels, relu(bn1(·)) of every layer is recomputed into one buffer.
    let widest = saved.iter().map(|s| s.c).max().unwrap_or(c0);
    let scratch = if fused(gpu) {
        None
    } else {
        Some(Tensor::empty(gpu, &with_channels(widest))?)
    };
    // Each layer's bn1 adds its input gradient into the prefix it read; those backward
    // passes are deferred and run a few layers at a time (see DeferredBackward). A layer's
    // new channels must be complete before its own backward: the waiting layers are added
    // over them first.
    let mut bn1 = DeferredBackward::new(block, grad)?;
    let mut per_layer = Vec::with_capacity(layers.len());
    for (l, s) in layers.iter().zip(saved).rev() {
        let k = l.w2.shape()[0];
        bn1.complete(s.c..s.c + k)?;
        // The new channels' gradient is complete: only later layers and the block's
        // consumer read them.
        let dnew = Tensor::empty(gpu, &with_channels(k))?;
        copy_channels(grad, s.c, &dnew, 0, k)?;
        let (stride, pad) = l.conv2;
        let st2 = (&s.stats2, s.g2);
        let (g2, b2) = (&l.gamma2, &l.beta2);
        let dw2 = conv_of_bn_relu_dw(&dnew, &s.h1, st2, g2, b2, l.w2.shape(), l.conv2, None)?;
        let dt2 = dnew.conv2d_backward_data(&l.w2, s.h1.shape(), stride, pad, cfg)?;
        drop(dnew);
        let (dh1, dgamma2, dbeta2) =
            bn_backward(&s.h1, &dt2, &s.stats2, &l.gamma2, &l.beta2, s.g2)?;
        drop((dt2, s.h1, s.stats2));
        let (stride, pad) = l.conv1;
        let t1_shape = with_channels(s.c);
        let st1 = (&s.stats1, s.g1);
        let (g1, b1) = (&l.gamma1, &l.beta1);
        let sc = scratch.as_ref();
        let dw1 = conv_of_bn_relu_dw(&dh1, block, st1, g1, b1, l.w1.shape(), l.conv1, sc)?;
        let dt1 = dh1.conv2d_backward_data(&l.w1, &t1_shape, stride, pad, cfg)?;
        drop(dh1);
        bn1.push(&dt1, &s.stats1, g1, b1, s.g1)?;
        per_layer.push([dw1, dgamma2, dbeta2, dw2]);
    }
    let bn1 = bn1.finish()?;
    drop(scratch);
    let dx = Tensor::empty(gpu, &with_channels(c0))?;
    copy_channels(grad, 0, &dx, 0, c0)?;
    let mut grads = vec![Some(dx)];
    // Both lists run from the last layer to the first.
    for ([dw1, dgamma2, dbeta2, dw2], (dgamma1, dbeta1)) in per_layer.into_iter().zip(bn1).rev() {
        grads.extend([dgamma1, dbeta1, dw1, dgamma2, dbeta2, dw2].map(Some));
    }
    Ok(grads)
}

/// `shape` with `c` channels.
fn with_channels(shape: &[usize], c: usize) -> Vec<usize> {
    let mut s = shape.to_vec();
    s[1] = c;
    s
}

/// One dense block taped as one op: `(block [N, c0 + Σ growth, ...], statistics cache)`;
/// the cache (training only) holds the batch `[mean | biased var]` of every block channel.
fn dense_block(
    layers: &[Bottleneck],
    h: &Tensor,
    training: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let gpu = h.gpu().clone();
    let c0 = h.shape()[1];
    let growth: usize = layers.iter().map(|l| l.conv2.weight.shape()[0]).sum();
    let mut shape = h.shape().to_vec();
    shape[1] = c0 + growth;
    let mut inputs = vec![h];
    for l in layers {
        inputs.extend(l.params());
    }
    let taped = crate::autograd::grad_enabled() && inputs.iter().any(|t| t.requires_grad());
    let (block, cache, saved) = gpu.no_grad(|| -> Result<_> {
        let block = Tensor::empty(&gpu, &shape)?;
        copy_channels(h, 0, &block, 0, c0)?;
        let cache = if training {
            let cache = Tensor::empty(&gpu, &[2 * shape[1]])?;
            bn_cache_stats(&block, 0, c0, &cache)?;
            Some(cache)
        } else {
            None
        };
        let last = layers.last().map_or(0, |l| l.conv2.weight.shape()[0]);
        let scratch = if fused(&gpu) {
            None
        } else {
            Some(Tensor::empty(
                &gpu,
                &with_channels(&shape, shape[1] - last),
            )?)
        };
        let mut c = c0;
        let mut saved = Vec::new();
        for l in layers {
            let (k, s) = l.forward_into(&block, c, training, cache.as_ref(), scratch.as_ref())?;
            c += k;
            // Inference keeps nothing.
            if taped {
                saved.push(s);
            }
        }
        Ok((block, cache, saved))
    })?;
    if taped {
        let out = block.detach();
        let params: Vec<LayerParams> = layers.iter().map(Bottleneck::detached).collect();
        let buffer = block.clone();
        gpu.record(&out, &inputs, move |dy| {
            // The block's gradient comes fresh from its consumer's backward: update it in
            // place unless something else holds it.
            let grad = if Arc::strong_count(&dy.0) == 1 && Arc::strong_count(&dy.0.storage) == 1 {
                dy.clone()
            } else {
                let g = Tensor::empty(dy.gpu(), dy.shape())?;
                copy_channels(dy, 0, &g, 0, dy.shape()[1])?;
                g
            };
            block_backward(&buffer, &grad, c0, &params, saved)
        });
        return Ok((out, cache));
    }
    Ok((block, cache))
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
        for (b, layers) in self.blocks.iter().enumerate() {
            let (block, cache) = dense_block(layers, &h, training)?;
            let from = cache
                .as_ref()
                .map_or(BatchStats::Compute, BatchStats::Cached);
            let c = block.shape()[1];
            match self.transitions.get(b) {
                Some(t) => {
                    h = bn_relu_conv(&block, c, &t.bn, &t.conv, training, from)?
                        .avg_pool2d(2, 2)?;
                }
                None => return bn_relu(&block, c, &self.bn, training, from)?.global_avg_pool(),
            }
        }
        unreachable_blocks()
    }
}

/// `new` builds three blocks, the last without a transition, so `forward` returns inside its
/// loop; a model without blocks cannot be constructed.
fn unreachable_blocks() -> Result<Tensor> {
    Err(crate::error::Error::Config(
        "DenseNet without a final dense block".into(),
    ))
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
