//! Embedding isomax in a wgpu application: classify images that a host's own GPU work
//! produced (a render, a camera pipeline, a compute shader), and say whether each is
//! in-distribution, without a round trip through the CPU.
//!
//! The host keeps its `wgpu::Device` and `wgpu::Queue` and wraps them with
//! [`Gpu::from_device`]; a [`Classifier`] loads a checkpoint written by `isomax train`.
//! Inputs are read in place from a host buffer ([`Classifier::classify_rgba8`]) or a
//! [`Tensor`] ([`Classifier::classify`]); results are GPU buffers the host can bind
//! ([`Classification::results`]) and, if wanted, read back without blocking
//! ([`Classification::read_async`]). Nothing here spawns a thread, and only the explicitly
//! blocking helpers ([`Classification::read`], [`PendingResults::wait`]) wait on the device.
//!
//! Ordering: every call records its kernels and submits them on the host's queue before
//! returning, so host work submitted afterwards on the same queue sees the results, and
//! host writes (`queue.write_buffer` or earlier submits) made before the call are seen by it.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, PendingRead};
use crate::nn::Model;
use crate::ops::isomax;
use crate::ops::preprocess::{self, ChannelNorm, RESULT_COLUMNS, result};
use crate::tensor::Tensor;
use std::path::Path;

/// A trained classifier bound to one [`Gpu`] context: the model, its input layout and
/// normalisation, and the ES threshold that separates in- from out-of-distribution.
pub struct Classifier {
    gpu: Gpu,
    model: Model,
    norm: ChannelNorm,
    threshold: Option<f32>,
}

/// The GPU tensors of one classification. They stay valid (and the host may bind their
/// buffers) as long as this value lives; dropping it returns the buffers to isomax's pool.
#[derive(Debug, Clone)]
pub struct Classification {
    /// `[B, 4]` f32 rows: class id, maximum probability, entropic score (ES), and the
    /// in-distribution flag 1.0/0.0 (`ES ≥ threshold`); columns in
    /// [`crate::ops::preprocess::result`]. Bind [`Tensor::buffer`] at [`Tensor::offset`].
    pub results: Tensor,
    /// `[B, C]`: softmax probabilities (temperature 1).
    pub probs: Tensor,
    /// `[B, 8]`: every score of the fused head; columns in [`crate::ops::isomax::score`].
    pub scores: Tensor,
}

/// One image's verdict, read back from [`Classification::results`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageResult {
    /// Predicted class.
    pub class: u32,
    /// Maximum softmax probability.
    pub probability: f32,
    /// Entropic score Σ p log p (0 at most; higher = more in-distribution).
    pub es: f32,
    /// `es ≥ threshold` (true for every image when the classifier has no threshold).
    pub in_distribution: bool,
}

/// A readback of [`Classification::results`] in flight.
pub struct PendingResults {
    read: PendingRead,
    n: usize,
}

impl PendingResults {
    /// Non-blocking: polls the device once; `Some` when the results are ready. Call it from
    /// the host's own loop (e.g. once per frame).
    pub fn try_take(&mut self) -> Option<Result<Vec<ImageResult>>> {
        let n = self.n;
        self.read.try_take().map(|r| r.map(|v| unpack(&v, n)))
    }

    /// Blocking: wait for the device (for tools and tests, not for a render loop).
    pub fn wait(self) -> Result<Vec<ImageResult>> {
        let n = self.n;
        self.read.wait().map(|v| unpack(&v, n))
    }
}

fn unpack(v: &[f32], n: usize) -> Vec<ImageResult> {
    v.chunks_exact(RESULT_COLUMNS)
        .take(n)
        .map(|r| ImageResult {
            class: r[result::CLASS] as u32,
            probability: r[result::PROBABILITY],
            es: r[result::ES],
            in_distribution: r[result::IN_DISTRIBUTION] != 0.0,
        })
        .collect()
}

impl Classification {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.results.shape()[0]
    }

    /// Always false: a classification holds at least one image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Start reading the results back without blocking (a copy and a map request).
    pub fn read_async(&self) -> PendingResults {
        PendingResults {
            read: self.results.read_async(),
            n: self.len(),
        }
    }

    /// Blocking helper: read the results back, waiting for the device.
    pub fn read(&self) -> Result<Vec<ImageResult>> {
        self.read_async().wait()
    }
}

impl Classifier {
    /// Load a checkpoint written by `isomax train` (weights, input layout, normalisation
    /// and the ES threshold it calibrated on held-out data).
    pub fn load(gpu: &Gpu, checkpoint: &Path) -> Result<Classifier> {
        let (model, ck) = crate::train::load_model(gpu, checkpoint)?;
        Self::new(gpu, model, ck.state.es_threshold)
    }

    /// Wrap a model already on `gpu` (e.g. one just trained) with an ES threshold.
    pub fn new(gpu: &Gpu, model: Model, threshold: Option<f32>) -> Result<Classifier> {
        let c = &model.config;
        if c.mean.len() != c.in_channels || c.std.len() != c.in_channels {
            return Err(Error::Config(format!(
                "model normalisation has {} means and {} stds for {} channels",
                c.mean.len(),
                c.std.len(),
                c.in_channels
            )));
        }
        let norm = ChannelNorm::new(gpu, &c.mean, &c.std)?;
        let mut classifier = Classifier {
            gpu: gpu.clone(),
            model,
            norm,
            threshold: None,
        };
        classifier.set_threshold(threshold)?;
        Ok(classifier)
    }

    /// `[C, H, W]` of one input image as the model takes it.
    pub fn input_shape(&self) -> [usize; 3] {
        let c = &self.model.config;
        [c.in_channels, c.height, c.width]
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.model.config.num_classes
    }

    /// The ES threshold (images with ES below it are out-of-distribution); `None` when the
    /// checkpoint has none, in which case every image is reported in-distribution.
    pub fn threshold(&self) -> Option<f32> {
        self.threshold
    }

    /// Replace the ES threshold (e.g. one calibrated for a different false-alarm rate).
    pub fn set_threshold(&mut self, threshold: Option<f32>) -> Result<()> {
        if threshold.is_some_and(|t| t.is_nan()) {
            return Err(Error::Config("the ES threshold is NaN".into()));
        }
        self.threshold = threshold;
        Ok(())
    }

    /// The model (its config holds the architecture, head and normalisation).
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The context the classifier runs on (use it for [`Tensor::from_buffer`]).
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Classify NCHW f32 pixels in [0, 1], shape `[B, C, H, W]` = `[B, input_shape()]`;
    /// the checkpoint's normalisation is applied on the GPU. Wrap a host buffer with
    /// [`Tensor::from_buffer`] (on [`Classifier::gpu`]) to read it in place.
    pub fn classify(&self, input: &Tensor) -> Result<Classification> {
        if !input.gpu().same_device(&self.gpu) {
            return Err(Error::Config(
                "classify: the input tensor belongs to another Gpu context; create it on \
                 Classifier::gpu()"
                    .into(),
            ));
        }
        let [c, h, w] = self.input_shape();
        match *input.shape() {
            [b, ic, ih, iw] if b > 0 && [ic, ih, iw] == [c, h, w] => {}
            [0, ..] => {
                return Err(Error::shape(
                    "classify",
                    format!(
                        "input {:?} holds zero images; expected [B ≥ 1, {c}, {h}, {w}]",
                        input.shape()
                    ),
                ));
            }
            ref s => {
                return Err(Error::mismatch(
                    "classify",
                    format!("[B, {c}, {h}, {w}]"),
                    format!("{s:?}"),
                ));
            }
        }
        let x = self
            .gpu
            .no_grad(|| preprocess::normalize_nchw(input, &self.norm))?;
        self.run(&x)
    }

    /// Classify `n` images of `width`×`height` packed RGBA8 texels in a host buffer.
    ///
    /// Layout at byte `offset` (a multiple of the device's
    /// `min_storage_buffer_offset_alignment`, 256 by default): `n` images back to back,
    /// each `height` rows of `width` texels, row-major, no row padding; one u32 per texel
    /// holding the bytes R, G, B, A in memory order (little-endian: R in bits 0–7), as
    /// an `Rgba8Unorm` texture copied into a buffer gives when `width·4` is a multiple of
    /// 256 (`COPY_BYTES_PER_ROW_ALIGNMENT`; otherwise repack the rows). The buffer needs
    /// `STORAGE` usage and at least `offset + n·width·height·4` bytes; alpha is ignored.
    ///
    /// On the GPU: a 3-channel model takes R, G, B; a 1-channel model the ITU-R 601 luma
    /// 0.299 R + 0.587 G + 0.114 B rounded to an integer (as the `isomax score` path's
    /// 8-bit gray conversion); bilinear resize to the model's size when it differs (the
    /// CLI path resizes with `image`'s triangle filter, so the two agree exactly only at
    /// the model's size); then the checkpoint's normalisation.
    pub fn classify_rgba8(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        n: usize,
        width: usize,
        height: usize,
    ) -> Result<Classification> {
        let [_, h, w] = self.input_shape();
        let x = self.gpu.no_grad(|| {
            preprocess::rgba8_to_nchw(
                &self.gpu,
                buffer,
                offset,
                n,
                width,
                height,
                (h, w),
                &self.norm,
            )
        })?;
        self.run(&x)
    }

    /// Forward (eval mode, no tape), fused head, decision; then submit.
    fn run(&self, x: &Tensor) -> Result<Classification> {
        let b = x.shape()[0];
        let out = self.gpu.no_grad(|| -> Result<Classification> {
            let logits = self.model.forward(x, false)?;
            let no_labels = Tensor::zeros(&self.gpu, &[b])?;
            let head = isomax::softmax_entropy(&logits, &no_labels, 1.0)?;
            let results = preprocess::decide(&head.scores, self.threshold)?;
            Ok(Classification {
                results,
                probs: head.probs,
                scores: head.scores,
            })
        })?;
        // Submit now so the host's later submissions on the same queue see the results.
        self.gpu.flush();
        Ok(out)
    }
}
