//! Pre- and post-processing for images that a host application produced on the GPU
//! (see [`crate::embed`]): packed RGBA8 texels or NCHW f32 pixels in [0, 1] become the
//! model's normalised input without leaving the GPU, and [`decide`] turns the fused head's
//! score rows into one small result row per image that a host can bind.
//!
//! Inference only: nothing here records a gradient. The CPU references are in [`cpu`].

use super::{groups_1d, kernel};
use crate::error::{Error, Result};
use crate::gpu::{Binding, Gpu, KernelSpec, kernel_params, u};
use crate::ops::isomax::SCORES_PER_ROW;
use crate::tensor::Tensor;

const RGBA8_TO_NCHW: KernelSpec = kernel!("preprocess", "rgba8_to_nchw", 2, 1);
const NORMALIZE_NCHW: KernelSpec = kernel!("preprocess", "normalize_nchw", 2, 1);
const DECIDE: KernelSpec = kernel!("preprocess", "decide", 1, 1);

/// Values per row of [`decide`]'s output.
pub const RESULT_COLUMNS: usize = 4;

/// Column of each value in a [`decide`] row.
pub mod result {
    /// Predicted class (argmax of the logits) as f32.
    pub const CLASS: usize = 0;
    /// Maximum softmax probability.
    pub const PROBABILITY: usize = 1;
    /// Entropic score Σ p log p (higher = more in-distribution).
    pub const ES: usize = 2;
    /// 1.0 when ES ≥ the threshold (or no threshold is set), else 0.0.
    pub const IN_DISTRIBUTION: usize = 3;
}

/// Bytes of one packed RGBA8 texel.
pub const TEXEL_BYTES: u64 = 4;

/// A model's per-channel input normalisation `(v − mean) / std`, uploaded once as a
/// `[3, C]` table (scale of a 0..255 value, shift, scale of a 0..1 value) so that a
/// classification never writes host data mid-stream (which would force an extra submit).
pub struct ChannelNorm {
    table: Tensor,
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl ChannelNorm {
    /// The table for `mean` and `std` (one per channel, std finite and positive).
    pub fn new(gpu: &Gpu, mean: &[f32], std: &[f32]) -> Result<ChannelNorm> {
        if mean.is_empty() || mean.len() != std.len() {
            return Err(Error::Config(format!(
                "normalisation needs one mean and one std per channel, got {} and {}",
                mean.len(),
                std.len()
            )));
        }
        if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::Config(format!(
                "normalisation std {s} must be finite and positive"
            )));
        }
        let c = mean.len();
        let mut t = vec![0.0; 3 * c];
        for ch in 0..c {
            // Exactly the CPU path's arithmetic (data::augment::transform_into).
            t[ch] = 1.0 / (255.0 * std[ch]);
            t[c + ch] = -mean[ch] / std[ch];
            t[2 * c + ch] = 1.0 / std[ch];
        }
        Ok(ChannelNorm {
            table: Tensor::from_slice(gpu, &t, &[3, c])?,
            mean: mean.to_vec(),
            std: std.to_vec(),
        })
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// Per-channel means.
    pub fn mean(&self) -> &[f32] {
        &self.mean
    }

    /// Per-channel standard deviations.
    pub fn std(&self) -> &[f32] {
        &self.std
    }
}

kernel_params! {
    /// `Params` of `shaders/preprocess.wgsl`.
    struct PreprocessParams => "Params" {
        n: u32,
        channels: u32,
        out_h: u32,
        out_w: u32,
        in_h: u32,
        in_w: u32,
        rows: u32,
        threshold: f32,
        has_threshold: u32,
    }
}

fn params(n: usize, c: usize, out_hw: (usize, usize), in_hw: (usize, usize)) -> PreprocessParams {
    PreprocessParams {
        n: u(n),
        channels: u(c),
        out_h: u(out_hw.0),
        out_w: u(out_hw.1),
        in_h: u(in_hw.0),
        in_w: u(in_hw.1),
        ..Default::default()
    }
}

/// Normalise NCHW f32 pixels in [0, 1]: `(x − mean[c]) / std[c]`, same shape.
pub fn normalize_nchw(x: &Tensor, norm: &ChannelNorm) -> Result<Tensor> {
    let c = norm.channels();
    let (h, w) = match *x.shape() {
        [b, ch, h, w] if b > 0 && ch == c && h > 0 && w > 0 => (h, w),
        ref s => {
            return Err(Error::shape(
                "normalize_nchw",
                format!("input {s:?} must be [B, {c}, H, W] with every size ≥ 1"),
            ));
        }
    };
    let gpu = x.gpu();
    let out = Tensor::empty(gpu, x.shape())?;
    let n = x.numel();
    gpu.dispatch(
        &NORMALIZE_NCHW,
        &[],
        &params(n, c, (h, w), (h, w)),
        &[x.binding(), norm.table.binding(), out.binding()],
        groups_1d(n, 256),
    )?;
    Ok(out)
}

/// Check that `buffer` can hold `n` packed RGBA8 images of `width`×`height` texels at
/// `offset` and be bound by the conversion kernel; errors name what was expected and found.
pub fn check_rgba8(
    gpu: &Gpu,
    buffer: &wgpu::Buffer,
    offset: u64,
    n: usize,
    width: usize,
    height: usize,
) -> Result<u64> {
    if n == 0 || width == 0 || height == 0 {
        return Err(Error::Buffer(format!(
            "RGBA8 input of {n} images of {width}×{height} texels: need at least one image of at least 1×1"
        )));
    }
    let usage = buffer.usage();
    if !usage.contains(wgpu::BufferUsages::STORAGE) {
        return Err(Error::Buffer(format!(
            "RGBA8 buffer has usage {usage:?}; it needs STORAGE to be bound by the conversion kernel"
        )));
    }
    let align = u64::from(gpu.device().limits().min_storage_buffer_offset_alignment);
    if !offset.is_multiple_of(align) {
        return Err(Error::Buffer(format!(
            "RGBA8 offset {offset} is not a multiple of the device's storage offset alignment {align}"
        )));
    }
    let need = (n as u64)
        .checked_mul(width as u64)
        .and_then(|v| v.checked_mul(height as u64))
        .and_then(|v| v.checked_mul(TEXEL_BYTES))
        .ok_or_else(|| Error::Buffer(format!("{n} images of {width}×{height} texels overflow")))?;
    if offset.saturating_add(need) > buffer.size() {
        return Err(Error::Buffer(format!(
            "RGBA8 buffer too small: {n} images of {width}×{height} texels need {need} bytes \
             (n·width·height·4) at offset {offset}, buffer has {} bytes",
            buffer.size()
        )));
    }
    let max = gpu.device().limits().max_storage_buffer_binding_size;
    if need > max {
        return Err(Error::Buffer(format!(
            "RGBA8 input of {need} bytes exceeds the device's storage binding limit of {max} bytes; \
             classify fewer images per call"
        )));
    }
    Ok(need)
}

/// Convert `n` packed RGBA8 images (one little-endian u32 per texel: R in bits 0–7, G 8–15,
/// B 16–23, A 24–31 ignored; rows of `width` texels without padding, images back to back)
/// at `offset` in `buffer` to normalised NCHW `[n, C, out_h, out_w]` for a model with
/// `norm.channels()` channels: C = 3 takes R, G, B; C = 1 takes the ITU-R 601 luma
/// 0.299 R + 0.587 G + 0.114 B rounded to an integer (as the CPU path's 8-bit gray
/// conversion); bilinear resize when the sizes differ; then `(v/255 − mean) / std`.
#[allow(clippy::too_many_arguments)]
pub fn rgba8_to_nchw(
    gpu: &Gpu,
    buffer: &wgpu::Buffer,
    offset: u64,
    n: usize,
    width: usize,
    height: usize,
    out_hw: (usize, usize),
    norm: &ChannelNorm,
) -> Result<Tensor> {
    let c = norm.channels();
    if c != 1 && c != 3 {
        return Err(Error::Config(format!(
            "RGBA8 input can feed a 1-channel (gray) or 3-channel (RGB) model, not {c} channels"
        )));
    }
    if out_hw.0 == 0 || out_hw.1 == 0 {
        return Err(Error::shape(
            "rgba8_to_nchw",
            format!("output size {out_hw:?} must be at least 1×1"),
        ));
    }
    let bytes = check_rgba8(gpu, buffer, offset, n, width, height)?;
    let out = Tensor::empty(gpu, &[n, c, out_hw.0, out_hw.1])?;
    let total = out.numel();
    let texels = Binding {
        buffer,
        offset,
        size: bytes,
    };
    gpu.dispatch(
        &RGBA8_TO_NCHW,
        &[],
        &params(total, c, out_hw, (height, width)),
        &[texels, norm.table.binding(), out.binding()],
        groups_1d(total, 256),
    )?;
    Ok(out)
}

/// Result rows `[B, 4]` (columns in [`result`]) from the fused head's score rows `[B, 8]`:
/// class, maximum probability, ES and the in-distribution flag `ES ≥ threshold` (1.0 for
/// every image when `threshold` is `None`).
pub fn decide(scores: &Tensor, threshold: Option<f32>) -> Result<Tensor> {
    let b = match *scores.shape() {
        [b, SCORES_PER_ROW] if b > 0 => b,
        ref s => {
            return Err(Error::shape(
                "decide",
                format!("scores {s:?} must be [B, {SCORES_PER_ROW}] with B ≥ 1"),
            ));
        }
    };
    if threshold.is_some_and(|t| t.is_nan()) {
        return Err(Error::Config("decide: the ES threshold is NaN".into()));
    }
    let gpu = scores.gpu();
    let out = Tensor::empty(gpu, &[b, RESULT_COLUMNS])?;
    gpu.dispatch(
        &DECIDE,
        &[],
        &PreprocessParams {
            rows: u(b),
            threshold: threshold.unwrap_or(0.0),
            has_threshold: threshold.is_some().into(),
            ..Default::default()
        },
        &[scores.binding(), out.binding()],
        groups_1d(b, 64),
    )?;
    Ok(out)
}

/// Plain-Rust references of the kernels above, with the same f32 arithmetic.
#[cfg(any(test, feature = "oracles"))]
pub mod cpu {
    use super::{RESULT_COLUMNS, result};
    use crate::ops::isomax::{SCORES_PER_ROW, score};

    fn channel_value(t: u32, c: usize, channels: usize) -> f32 {
        if channels == 1 {
            let r = (t & 0xff) as f32;
            let g = ((t >> 8) & 0xff) as f32;
            let b = ((t >> 16) & 0xff) as f32;
            return (0.299 * r + 0.587 * g + 0.114 * b + 0.5).floor();
        }
        ((t >> (8 * c)) & 0xff) as f32
    }

    /// See [`super::rgba8_to_nchw`]; `texels` holds `n·width·height` packed texels.
    pub fn rgba8_to_nchw(
        texels: &[u32],
        (n, width, height): (usize, usize, usize),
        (out_h, out_w): (usize, usize),
        mean: &[f32],
        std: &[f32],
    ) -> Vec<f32> {
        let c = mean.len();
        let value = |img: usize, y: usize, x: usize, ch: usize| {
            channel_value(texels[(img * height + y) * width + x], ch, c)
        };
        let mut out = Vec::with_capacity(n * c * out_h * out_w);
        for img in 0..n {
            for ch in 0..c {
                let scale = 1.0 / (255.0 * std[ch]);
                let shift = -mean[ch] / std[ch];
                for oy in 0..out_h {
                    for ox in 0..out_w {
                        let v = if (out_h, out_w) == (height, width) {
                            value(img, oy, ox, ch)
                        } else {
                            let sy = ((oy as f32 + 0.5) * height as f32 / out_h as f32 - 0.5)
                                .clamp(0.0, (height - 1) as f32);
                            let sx = ((ox as f32 + 0.5) * width as f32 / out_w as f32 - 0.5)
                                .clamp(0.0, (width - 1) as f32);
                            let (y0, x0) = (sy.floor() as usize, sx.floor() as usize);
                            let (y1, x1) = ((y0 + 1).min(height - 1), (x0 + 1).min(width - 1));
                            let (fy, fx) = (sy - y0 as f32, sx - x0 as f32);
                            let top =
                                value(img, y0, x0, ch) * (1.0 - fx) + value(img, y0, x1, ch) * fx;
                            let bottom =
                                value(img, y1, x0, ch) * (1.0 - fx) + value(img, y1, x1, ch) * fx;
                            top * (1.0 - fy) + bottom * fy
                        };
                        out.push(v * scale + shift);
                    }
                }
            }
        }
        out
    }

    /// See [`super::normalize_nchw`]; `x` is `[B, C, H, W]` with `hw = H·W`.
    pub fn normalize_nchw(x: &[f32], hw: usize, mean: &[f32], std: &[f32]) -> Vec<f32> {
        let c = mean.len();
        x.iter()
            .enumerate()
            .map(|(i, v)| {
                let ch = (i / hw) % c;
                v * (1.0 / std[ch]) + (-mean[ch] / std[ch])
            })
            .collect()
    }

    /// See [`super::decide`]; `scores` holds `[B, 8]` rows.
    pub fn decide(scores: &[f32], threshold: Option<f32>) -> Vec<f32> {
        scores
            .chunks_exact(SCORES_PER_ROW)
            .flat_map(|r| {
                let es = r[score::ES];
                let inside = threshold.is_none_or(|t| es >= t);
                let mut row = [0.0; RESULT_COLUMNS];
                row[result::CLASS] = r[score::PREDICTION];
                row[result::PROBABILITY] = r[score::MPS];
                row[result::ES] = es;
                row[result::IN_DISTRIBUTION] = if inside { 1.0 } else { 0.0 };
                row
            })
            .collect()
    }
}
