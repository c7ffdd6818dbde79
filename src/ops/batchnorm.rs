//! Batch norm 2d: batch statistics and running averages in training, running statistics in
//! eval, with gradients for the input, the scale (gamma) and the shift (beta).

use super::kernel;
use crate::error::{Error, Result};
use crate::gpu::{KernelSpec, kernel_params, u};
use crate::tensor::Tensor;

const STATS: KernelSpec = kernel!("batchnorm", "bn_stats", 1, 3);
const EVAL_STATS: KernelSpec = kernel!("batchnorm", "bn_eval_stats", 2, 1);
const APPLY: KernelSpec = kernel!("batchnorm", "bn_apply", 4, 1);
const BACKWARD_REDUCE: KernelSpec = kernel!("batchnorm", "bn_backward_reduce", 5, 3);
const BACKWARD_APPLY: KernelSpec = kernel!("batchnorm", "bn_backward_apply", 7, 1);
const STATS_VEC4: KernelSpec = kernel!("batchnorm", "bn_stats_vec4", 1, 3);
const BACKWARD_REDUCE_VEC4: KernelSpec = kernel!("batchnorm", "bn_backward_reduce_vec4", 5, 3);
const APPLY_VEC4: KernelSpec = kernel!("batchnorm", "bn_apply_vec4", 4, 1);
const BACKWARD_APPLY_VEC4: KernelSpec = kernel!("batchnorm", "bn_backward_apply_vec4", 7, 1);
const GPU_SUMS: KernelSpec = kernel!("batchnorm", "bn_gpu_sums", 2, 1);
const GPU_SUMS_VEC4: KernelSpec = kernel!("batchnorm", "bn_gpu_sums_vec4", 2, 1);
const GPU_STATS: KernelSpec = kernel!("batchnorm", "bn_gpu_stats", 1, 3);
const GPU_DSUMS: KernelSpec = kernel!("batchnorm", "bn_gpu_dsums", 5, 1);
const GPU_DSUMS_VEC4: KernelSpec = kernel!("batchnorm", "bn_gpu_dsums_vec4", 5, 1);
const GPU_DFINISH: KernelSpec = kernel!("batchnorm", "bn_gpu_dfinish", 4, 3);
const APPLY_ADD: KernelSpec = kernel!("batchnorm", "bn_apply_add", 5, 1);
const APPLY_ADD_VEC4: KernelSpec = kernel!("batchnorm", "bn_apply_add_vec4", 5, 1);
const APPLY_QUAD: KernelSpec = kernel!("batchnorm", "bn_apply_quad", 4, 1);
const APPLY_ADD_QUAD: KernelSpec = kernel!("batchnorm", "bn_apply_add_quad", 5, 1);
const BACKWARD_APPLY_QUAD: KernelSpec = kernel!("batchnorm", "bn_backward_apply_quad", 7, 1);
const CACHED_STATS: KernelSpec = kernel!("batchnorm", "bn_cached_stats", 1, 3);
const DEFERRED: KernelSpec = kernel!("batchnorm", "bn_backward_deferred", 6, 1);
const DEFERRED_VEC4: KernelSpec = kernel!("batchnorm", "bn_backward_deferred_vec4", 6, 1);
const FUSED: KernelSpec = kernel!("batchnorm", "bn_backward_fused", 6, 2);
const FUSED_VEC4: KernelSpec = kernel!("batchnorm", "bn_backward_fused_vec4", 6, 2);
const DEFER_PREPARE: KernelSpec = kernel!("batchnorm", "bn_defer_prepare", 3, 1);
const DEFER_SPLIT: KernelSpec = kernel!("batchnorm", "bn_defer_split", 1, 4);

/// Layers one deferred backward pass handles ([`DeferredBackward`]: each takes a storage
/// binding for its dy; x, the constants, the gradient and the sums take the other four of
/// the eight a stage may have).
pub(crate) const DEFER_SLOTS: usize = 4;

/// Constants per channel and slot of the deferred apply (`shaders/batchnorm.wgsl`).
const DEFER_COEFS: usize = 6;

/// Target number of workgroups for the real-GPU reductions: each channel's sums are split
/// over samples until about this many run.
const GPU_WORKGROUPS: usize = 1024;

/// Samples each invocation of the elementwise kernels loops over on CPU adapters (measured
/// on llvmpipe, DenseNet-BC-100 batch 64: the backward apply's share of the step fell from
/// 15 % to 10 % with chunks of 8–16 samples; all 64 in one chunk was no better than one).
const CPU_CHUNK: usize = 16;

/// Workgroups the CPU adapters' elementwise grids keep at least (chunks shrink below
/// [`CPU_CHUNK`] to keep them).
const CPU_MIN_WORKGROUPS: usize = 64;

/// The elementwise kernels run over (position, channel, chunk of samples); with HW a
/// multiple of 4, four positions per invocation as vec4s; else, where the channels come in
/// fours, over (vec4 of four channels' planes, quad of channels, chunk) with the `quad`
/// variant if there is one (see `quad_channels` in the shader). Each invocation loads its
/// channel's constants once and loops over its chunk's samples: on CPU adapters up to
/// [`CPU_CHUNK`] samples, on real GPUs one (parallelism first). Returns the variant to use,
/// its grid and the parameters with the chunk set.
fn plane_grid(
    gpu: &crate::Gpu,
    g: &BnGeom,
    scalar: &'static KernelSpec,
    vec4: &'static KernelSpec,
    quad: Option<&'static KernelSpec>,
) -> Result<(&'static KernelSpec, [u32; 3], BnParams)> {
    if g.c > 65535 || g.n > 65535 {
        return Err(Error::Limit {
            op: "batch_norm",
            detail: format!("{} samples × {} channels: at most 65535 of each", g.n, g.c),
        });
    }
    let (spec, per, rows) = match quad {
        _ if g.vec4() => (vec4, 4, g.c),
        Some(quad) if g.quads() => (quad, 1, g.c / 4),
        _ => (scalar, 1, g.c),
    };
    let x_groups = g.hw.div_ceil(per * 64);
    let mut chunk = if super::tuning(gpu) == super::Tuning::Gpu {
        1
    } else {
        CPU_CHUNK.min(g.n).max(1)
    };
    while chunk > 1 && x_groups * rows * g.n.div_ceil(chunk) < CPU_MIN_WORKGROUPS {
        chunk /= 2;
    }
    let grid = [x_groups as u32, rows as u32, g.n.div_ceil(chunk) as u32];
    let params = BnParams {
        chunk: u(chunk),
        ..g.params()
    };
    Ok((spec, grid, params))
}

/// Batch-norm state that lives outside the autodiff graph.
pub struct BatchNormStats<'a> {
    /// Running mean `[C]`, updated in place in training.
    pub running_mean: &'a Tensor,
    /// Running (unbiased) variance `[C]`, updated in place in training.
    pub running_var: &'a Tensor,
    /// Weight of the new batch in the running averages (PyTorch's 0.1).
    pub momentum: f32,
    /// Added to the variance (PyTorch's 1e-5).
    pub eps: f32,
}

/// The geometry and mode of one batch-norm call; what its backward needs besides tensors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BnGeom {
    n: usize,
    /// Channels normalised (a prefix of the input's channels).
    c: usize,
    hw: usize,
    /// Channels of the input tensor.
    c_stride: usize,
    eps: f32,
    momentum: f32,
    frozen: bool,
    relu: bool,
}

impl BnGeom {
    /// Channels normalised (a prefix of the input's channels).
    pub(crate) fn channels(&self) -> usize {
        self.c
    }

    /// The geometry of a pass that only reduces or applies gradients and statistics: no
    /// running averages, no ReLU.
    fn plain(n: usize, c: usize, hw: usize, c_stride: usize) -> BnGeom {
        BnGeom {
            n,
            c,
            hw,
            c_stride,
            eps: 0.0,
            momentum: 0.0,
            frozen: false,
            relu: false,
        }
    }
    /// Whether the kernels can read whole planes as vec4s (H·W a multiple of 4).
    fn vec4(&self) -> bool {
        self.hw.is_multiple_of(4)
    }

    /// Whether the elementwise kernels can read four channels' planes as vec4s (the
    /// channels normalised and those of the input multiples of 4).
    fn quads(&self) -> bool {
        self.c.is_multiple_of(4) && self.c_stride.is_multiple_of(4)
    }

    fn params(&self) -> BnParams {
        BnParams {
            n: u(self.n),
            c: u(self.c),
            hw: u(self.hw),
            eps: self.eps,
            momentum: self.momentum,
            frozen: self.frozen.into(),
            c_stride: u(self.c_stride),
            relu: self.relu.into(),
            ..Default::default()
        }
    }

    /// Pipeline constants of the CPU adapters' reductions: whether a plane has fewer
    /// positions (vec4s in the vec4 kernels) than the workgroup has invocations.
    fn reduce_constants(&self) -> [(&'static str, f64); 1] {
        let positions = if self.vec4() { self.hw / 4 } else { self.hw };
        [("SMALL_PLANES", f64::from(u8::from(positions < 64)))]
    }

    /// The real-GPU reductions' split of each channel's samples: `(splits, chunk)`, or
    /// `None` to use one workgroup per channel (the CPU adapters' kernels).
    fn gpu_split(&self, gpu: &crate::Gpu) -> Option<(usize, usize)> {
        if super::tuning(gpu) != super::Tuning::Gpu {
            return None;
        }
        let want = GPU_WORKGROUPS.div_ceil(self.c).clamp(1, self.n.max(1));
        let chunk = self.n.div_ceil(want).max(1);
        Some((self.n.div_ceil(chunk).max(1), chunk))
    }

    fn gpu_params(&self, (splits, chunk): (usize, usize), centred: bool) -> BnParams {
        BnParams {
            splits: u(splits),
            chunk: u(chunk),
            centred: centred.into(),
            ..self.params()
        }
    }
}

kernel_params! {
    /// `Params` of `shaders/batchnorm.wgsl`.
    struct BnParams => "Params" {
        n: u32,
        c: u32,
        hw: u32,
        eps: f32,
        momentum: f32,
        frozen: u32,
        c_stride: u32,
        relu: u32,
        splits: u32,
        chunk: u32,
        centred: u32,
        c_off: u32,
        cache: u32,
        slot: u32,
        defer: u32,
        dc0: u32,
        dc1: u32,
        dc2: u32,
        dc3: u32,
    }
}

/// Where a training-mode batch norm takes its batch statistics from.
#[derive(Clone, Copy)]
pub(crate) enum BatchStats<'a> {
    /// Reduce the input's channels now.
    Compute,
    /// A cache of `[mean | biased variance]` over the input's `C` channels (`[2C]`), filled
    /// by [`bn_cache_stats`] while those channels were written (a DenseNet block buffer).
    Cached(&'a Tensor),
}

/// Record the batch statistics of channels `c_off..c_off + channels` of `x [N, C, ...]`
/// into `cache [2C]` (`[mean | biased variance]`, indexed by channel), for
/// [`BatchStats::Cached`]: the same reductions as the training forward, without the
/// running-average update (each batch norm reading the cache does its own).
pub(crate) fn bn_cache_stats(
    x: &Tensor,
    c_off: usize,
    channels: usize,
    cache: &Tensor,
) -> Result<()> {
    let s = x.shape();
    if s.len() < 2 || channels == 0 || c_off + channels > s[1] || cache.shape() != [2 * s[1]] {
        return Err(Error::shape(
            "batch_norm",
            format!(
                "statistics cache {:?} of channels {c_off}..{} of input {s:?}",
                cache.shape(),
                c_off + channels
            ),
        ));
    }
    let (n, c_stride) = (s[0], s[1]);
    let hw: usize = s[2..].iter().product();
    if n * hw < 2 {
        return Err(Error::shape(
            "batch_norm",
            format!("training needs more than one value per channel, input {s:?}"),
        ));
    }
    let g = BnGeom::plain(n, channels, hw, c_stride);
    let gpu = x.gpu();
    // Cache mode never touches the running averages; the bindings still need buffers.
    let unused = Tensor::empty(gpu, &[1])?;
    let params = |split: Option<(usize, usize)>, centred: bool| BnParams {
        c_off: u(c_off),
        cache: 1,
        ..match split {
            Some(split) => g.gpu_params(split, centred),
            None => g.params(),
        }
    };
    if let Some(split) = g.gpu_split(gpu) {
        let partial = Tensor::empty(gpu, &[channels * split.0])?;
        for centred in [false, true] {
            gpu.dispatch(
                if g.vec4() { &GPU_SUMS_VEC4 } else { &GPU_SUMS },
                &[],
                &params(Some(split), centred),
                &[x.binding(), cache.binding(), partial.binding()],
                [channels as u32, split.0 as u32, 1],
            )?;
            gpu.dispatch(
                &GPU_STATS,
                &[],
                &params(Some(split), centred),
                &[
                    partial.binding(),
                    cache.binding(),
                    unused.binding(),
                    unused.binding(),
                ],
                [channels.div_ceil(64) as u32, 1, 1],
            )?;
        }
    } else {
        gpu.dispatch(
            if g.vec4() { &STATS_VEC4 } else { &STATS },
            &g.reduce_constants(),
            &params(None, false),
            &[
                x.binding(),
                cache.binding(),
                unused.binding(),
                unused.binding(),
            ],
            [channels as u32, 1, 1],
        )?;
    }
    Ok(())
}

/// Forward without taping: `(y [N, c, ...], stats [2c])`. Training updates the running
/// statistics in place.
pub(crate) fn bn_forward(
    x: &Tensor,
    channels: usize,
    relu: bool,
    gamma: &Tensor,
    beta: &Tensor,
    st: &BatchNormStats,
    training: bool,
) -> Result<(Tensor, Tensor, BnGeom)> {
    bn_forward_from(
        x,
        channels,
        relu,
        gamma,
        beta,
        st,
        training,
        BatchStats::Compute,
    )
}

/// [`bn_forward`] with the batch statistics taken from `from` in training.
#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_forward_from(
    x: &Tensor,
    channels: usize,
    relu: bool,
    gamma: &Tensor,
    beta: &Tensor,
    st: &BatchNormStats,
    training: bool,
    from: BatchStats,
) -> Result<(Tensor, Tensor, BnGeom)> {
    let (stats, g) = bn_stats(x, channels, relu, gamma, beta, st, training, from)?;
    let mut shape = x.shape().to_vec();
    shape[1] = channels;
    let y = bn_apply(x, &stats, gamma, beta, g, &shape)?;
    Ok((y, stats, g))
}

/// The statistics half of [`bn_forward_from`]: `(stats [2c], geometry)`, for
/// [`bn_apply_into`]. Training updates the running statistics in place.
#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_stats(
    x: &Tensor,
    channels: usize,
    relu: bool,
    gamma: &Tensor,
    beta: &Tensor,
    st: &BatchNormStats,
    training: bool,
    from: BatchStats,
) -> Result<(Tensor, BnGeom)> {
    let s = x.shape();
    if s.len() < 2 {
        return Err(Error::shape(
            "batch_norm",
            format!("input {s:?} needs at least [N, C]"),
        ));
    }
    let (n, c_stride) = (s[0], s[1]);
    let hw: usize = s[2..].iter().product();
    let c = channels;
    if c == 0 || c > c_stride {
        return Err(Error::shape(
            "batch_norm",
            format!("{c} channels of input {s:?}"),
        ));
    }
    for (name, t) in [
        ("gamma", gamma),
        ("beta", beta),
        ("running_mean", st.running_mean),
        ("running_var", st.running_var),
    ] {
        if t.shape() != [c] {
            return Err(Error::shape(
                "batch_norm",
                format!("{name} {:?} vs input {s:?} with {c} channels", t.shape()),
            ));
        }
    }
    if training && n * hw < 2 {
        return Err(Error::shape(
            "batch_norm",
            format!("training needs more than one value per channel, input {s:?}"),
        ));
    }
    let g = BnGeom {
        n,
        c,
        hw,
        c_stride,
        eps: st.eps,
        momentum: st.momentum,
        frozen: !training,
        relu,
    };
    let gpu = x.gpu();
    let stats = Tensor::empty(gpu, &[2 * c])?;
    if training && let BatchStats::Cached(cache) = from {
        if cache.shape() != [2 * c_stride] {
            return Err(Error::shape(
                "batch_norm",
                format!(
                    "statistics cache {:?} vs input {s:?} ([2C] expected)",
                    cache.shape()
                ),
            ));
        }
        gpu.dispatch(
            &CACHED_STATS,
            &[],
            &g.params(),
            &[
                cache.binding(),
                stats.binding(),
                st.running_mean.binding(),
                st.running_var.binding(),
            ],
            [c.div_ceil(64) as u32, 1, 1],
        )?;
    } else if training && let Some(split) = g.gpu_split(gpu) {
        let partial = Tensor::empty(gpu, &[c * split.0])?;
        for centred in [false, true] {
            gpu.dispatch(
                if g.vec4() { &GPU_SUMS_VEC4 } else { &GPU_SUMS },
                &[],
                &g.gpu_params(split, centred),
                &[x.binding(), stats.binding(), partial.binding()],
                [c as u32, split.0 as u32, 1],
            )?;
            gpu.dispatch(
                &GPU_STATS,
                &[],
                &g.gpu_params(split, centred),
                &[
                    partial.binding(),
                    stats.binding(),
                    st.running_mean.binding(),
                    st.running_var.binding(),
                ],
                [c.div_ceil(64) as u32, 1, 1],
            )?;
        }
    } else if training {
        gpu.dispatch(
            if g.vec4() { &STATS_VEC4 } else { &STATS },
            &g.reduce_constants(),
            &g.params(),
            &[
                x.binding(),
                stats.binding(),
                st.running_mean.binding(),
                st.running_var.binding(),
            ],
            [c as u32, 1, 1],
        )?;
    } else {
        gpu.dispatch(
            &EVAL_STATS,
            &[],
            &g.params(),
            &[
                st.running_mean.binding(),
                st.running_var.binding(),
                stats.binding(),
            ],
            [c.div_ceil(64) as u32, 1, 1],
        )?;
    }
    Ok((stats, g))
}

/// `y = bn(x)` (and ReLU) from known statistics; also used to recompute activations in
/// backward instead of keeping them.
pub(crate) fn bn_apply(
    x: &Tensor,
    stats: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    g: BnGeom,
    shape: &[usize],
) -> Result<Tensor> {
    let y = Tensor::empty(x.gpu(), shape)?;
    bn_apply_into(x, stats, gamma, beta, g, &y)?;
    Ok(y)
}

/// [`bn_apply`] into `y [N, c, ...]` (the caller's buffer).
pub(crate) fn bn_apply_into(
    x: &Tensor,
    stats: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    g: BnGeom,
    y: &Tensor,
) -> Result<()> {
    if y.numel() != g.n * g.c * g.hw {
        return Err(Error::shape(
            "batch_norm",
            format!(
                "output {:?} for {} samples × {} channels × {} positions",
                y.shape(),
                g.n,
                g.c,
                g.hw
            ),
        ));
    }
    let (spec, grid, params) = plane_grid(x.gpu(), &g, &APPLY, &APPLY_VEC4, Some(&APPLY_QUAD))?;
    x.gpu().dispatch(
        spec,
        &[],
        &params,
        &[
            x.binding(),
            stats.binding(),
            gamma.binding(),
            beta.binding(),
            y.binding(),
        ],
        grid,
    )
}

/// Gradients `(dx with x's shape, dgamma, dbeta)` from `dy [N, c, ...]`.
pub(crate) fn bn_backward(
    x: &Tensor,
    dy: &Tensor,
    stats: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    g: BnGeom,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (dgamma, dbeta) = bn_backward_sums(x, dy, stats, gamma, beta, g, None)?;
    let gpu = x.gpu();
    // A prefix's gradient lives in x's full layout, zero past the prefix.
    let dx = if g.c < g.c_stride {
        Tensor::zeros(gpu, x.shape())?
    } else {
        Tensor::empty(gpu, x.shape())?
    };
    let (spec, grid, params) = plane_grid(
        gpu,
        &g,
        &BACKWARD_APPLY,
        &BACKWARD_APPLY_VEC4,
        Some(&BACKWARD_APPLY_QUAD),
    )?;
    gpu.dispatch(
        spec,
        &[],
        &params,
        &[
            x.binding(),
            dy.binding(),
            stats.binding(),
            gamma.binding(),
            beta.binding(),
            dgamma.binding(),
            dbeta.binding(),
            dx.binding(),
        ],
        grid,
    )?;
    Ok((dx, dgamma, dbeta))
}

/// The reduction half of the backward: `(dgamma, dbeta)`. With `defer = (coef, slot)` it
/// also stores this batch norm's dx constants in slot `slot` of `coef`, so that a deferred
/// pass ([`DeferredBackward`]) can add its dx later.
fn bn_backward_sums(
    x: &Tensor,
    dy: &Tensor,
    stats: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    g: BnGeom,
    defer: Option<(&Tensor, usize)>,
) -> Result<(Tensor, Tensor)> {
    let want = [g.n, g.c, g.hw];
    if dy.numel() != g.n * g.c * g.hw || dy.shape().first() != Some(&g.n) {
        return Err(Error::shape(
            "batch_norm",
            format!(
                "gradient {:?} vs {want:?} (samples, channels, positions)",
                dy.shape()
            ),
        ));
    }
    let gpu = x.gpu();
    let dgamma = Tensor::empty(gpu, &[g.c])?;
    let dbeta = Tensor::empty(gpu, &[g.c])?;
    let (coef, slot) = match defer {
        Some((coef, slot)) => {
            if slot >= DEFER_SLOTS || coef.numel() != DEFER_SLOTS * g.c_stride * DEFER_COEFS {
                return Err(Error::shape(
                    "batch_norm",
                    format!(
                        "deferred-apply slot {slot} of a buffer {:?} for {} channels",
                        coef.shape(),
                        g.c_stride
                    ),
                ));
            }
            (coef.clone(), slot)
        }
        // The kernels still bind a buffer.
        None => (Tensor::empty(gpu, &[1])?, 0),
    };
    let deferring = BnParams {
        slot: u(slot),
        defer: defer.is_some().into(),
        ..Default::default()
    };
    if let Some(split) = g.gpu_split(gpu) {
        let partial = Tensor::empty(gpu, &[g.c * split.0 * 2])?;
        gpu.dispatch(
            if g.vec4() {
                &GPU_DSUMS_VEC4
            } else {
                &GPU_DSUMS
            },
            &[],
            &g.gpu_params(split, false),
            &[
                x.binding(),
                dy.binding(),
                stats.binding(),
                gamma.binding(),
                beta.binding(),
                partial.binding(),
            ],
            [g.c as u32, split.0 as u32, 1],
        )?;
        gpu.dispatch(
            &GPU_DFINISH,
            &[],
            &BnParams {
                slot: deferring.slot,
                defer: deferring.defer,
                ..g.gpu_params(split, false)
            },
            &[
                partial.binding(),
                stats.binding(),
                gamma.binding(),
                beta.binding(),
                dgamma.binding(),
                dbeta.binding(),
                coef.binding(),
            ],
            [g.c.div_ceil(64) as u32, 1, 1],
        )?;
    } else {
        gpu.dispatch(
            if g.vec4() {
                &BACKWARD_REDUCE_VEC4
            } else {
                &BACKWARD_REDUCE
            },
            &g.reduce_constants(),
            &BnParams {
                slot: deferring.slot,
                defer: deferring.defer,
                ..g.params()
            },
            &[
                x.binding(),
                dy.binding(),
                stats.binding(),
                gamma.binding(),
                beta.binding(),
                dgamma.binding(),
                dbeta.binding(),
                coef.binding(),
            ],
            [g.c as u32, 1, 1],
        )?;
    }
    Ok((dgamma, dbeta))
}

/// How a deferred pass finds its layers' constants.
enum Pass<'a> {
    /// Each layer's reduction stored its dx constants in `coef` ([`bn_backward_sums`]).
    Apply(&'a Tensor),
    /// The pass reduces the layers itself (CPU adapters): their constants in `consts`
    /// (`bn_defer_prepare`), their sums out in `sums`.
    Fused {
        consts: &'a Tensor,
        sums: &'a Tensor,
    },
}

/// Adds into `grad` (x's shape), over `channels` of x, the input gradients of the waiting
/// batch norms in slots `0..dys.len()`; `dys[s]` is slot s's output gradient
/// `[N, c_s, ...]`, and every `c_s` covers `channels`. One pass reads x and `grad` once for
/// all of them.
fn deferred_pass(
    x: &Tensor,
    grad: &Tensor,
    pass: Pass,
    dys: &[&Tensor],
    channels: std::ops::Range<usize>,
) -> Result<()> {
    let s = x.shape();
    let (n, c_stride) = (s[0], s[1]);
    let hw: usize = s[2..].iter().product();
    let bad = |detail: String| Err(Error::shape("batch_norm", detail));
    if grad.shape() != s {
        return bad(format!("gradient buffer {:?} vs input {s:?}", grad.shape()));
    }
    if dys.is_empty() || dys.len() > DEFER_SLOTS || channels.end > c_stride {
        return bad(format!(
            "{} deferred layers over channels {channels:?} of input {s:?}",
            dys.len()
        ));
    }
    let mut dc = [0u32; DEFER_SLOTS];
    for (slot, dy) in dys.iter().enumerate() {
        let c = dy.shape().get(1).copied().unwrap_or(0);
        if dy.shape()[0] != n || dy.numel() != n * c * hw || c < channels.end {
            return bad(format!(
                "deferred gradient {:?} over channels {channels:?} of input {s:?}",
                dy.shape()
            ));
        }
        dc[slot] = u(c);
    }
    if channels.is_empty() {
        return Ok(());
    }
    let g = BnGeom::plain(n, channels.len(), hw, c_stride);
    let gpu = x.gpu();
    let layers = ("LAYERS", dys.len() as f64);
    // Unused slots bind slot 0's gradient (never read).
    let dy = |slot: usize| dys.get(slot).unwrap_or(&dys[0]).binding();
    let dys = [dy(0), dy(1), dy(2), dy(3)];
    let with_slots = |params: BnParams| BnParams {
        c_off: u(channels.start),
        dc0: dc[0],
        dc1: dc[1],
        dc2: dc[2],
        dc3: dc[3],
        ..params
    };
    match pass {
        Pass::Apply(coef) => {
            if coef.numel() != DEFER_SLOTS * c_stride * DEFER_COEFS {
                return bad(format!("coefficients {:?} vs input {s:?}", coef.shape()));
            }
            let (spec, grid, params) = plane_grid(gpu, &g, &DEFERRED, &DEFERRED_VEC4, None)?;
            let [d0, d1, d2, d3] = dys;
            gpu.dispatch(
                spec,
                &[layers],
                &with_slots(params),
                &[x.binding(), coef.binding(), d0, d1, d2, d3, grad.binding()],
                grid,
            )
        }
        Pass::Fused { consts, sums } => {
            if consts.numel() != DEFER_SLOTS * c_stride * 8
                || sums.numel() != DEFER_SLOTS * 2 * c_stride
            {
                return bad(format!(
                    "constants {:?} and sums {:?} vs input {s:?}",
                    consts.shape(),
                    sums.shape()
                ));
            }
            let [d0, d1, d2, d3] = dys;
            gpu.dispatch(
                if g.vec4() { &FUSED_VEC4 } else { &FUSED },
                &[layers, g.reduce_constants()[0]],
                &with_slots(g.params()),
                &[
                    x.binding(),
                    consts.binding(),
                    d0,
                    d1,
                    d2,
                    d3,
                    grad.binding(),
                    sums.binding(),
                ],
                [channels.len() as u32, 1, 1],
            )
        }
    }
}

/// The backward passes of batch norms over prefixes of one input whose input gradients all
/// add into one buffer (a DenseNet block's bn1 of every layer), deferred: up to
/// [`DEFER_SLOTS`] layers wait, and one pass per channel range adds them all, reading the
/// input and the gradient once for all of them. On CPU adapters the pass also does the
/// layers' reductions (reading the input once for all of them too); on real GPUs each
/// layer's reduction runs when it joins (split reductions).
///
/// Layers join widest prefix first ([`DeferredBackward::push`]); before the channels past a
/// joining layer's prefix are read, [`DeferredBackward::complete`] adds the waiting layers
/// over them.
pub(crate) struct DeferredBackward {
    x: Tensor,
    grad: Tensor,
    fused: bool,
    /// Fused: [mean, invstd, gamma, beta], [relu, frozen, 0, 0] per slot and channel;
    /// else the dx constants.
    consts: Tensor,
    /// Fused: this group's [dgamma | dbeta] per slot.
    sums: Tensor,
    waiting: Vec<Waiting>,
    /// (dgamma, dbeta) of each settled layer, in joining order.
    done: Vec<(Tensor, Tensor)>,
    /// The waiting layers have been added over channels `low..` already.
    low: usize,
}

struct Waiting {
    dy: Tensor,
    g: BnGeom,
    /// Not fused: the layer's (dgamma, dbeta), reduced when it joined.
    sums: Option<(Tensor, Tensor)>,
}

impl DeferredBackward {
    /// For batch norms over prefixes of `x`, adding into `grad` (x's shape).
    pub(crate) fn new(x: &Tensor, grad: &Tensor) -> Result<DeferredBackward> {
        let (gpu, s) = (x.gpu(), x.shape());
        if s.len() < 2 || grad.shape() != s {
            return Err(Error::shape(
                "batch_norm",
                format!("gradient buffer {:?} vs input {s:?}", grad.shape()),
            ));
        }
        let fused = super::tuning(gpu) != super::Tuning::Gpu;
        let per = if fused { 8 } else { DEFER_COEFS };
        Ok(DeferredBackward {
            x: x.clone(),
            grad: grad.clone(),
            fused,
            consts: Tensor::empty(gpu, &[DEFER_SLOTS * s[1] * per])?,
            sums: Tensor::empty(gpu, &[DEFER_SLOTS * 2 * s[1]])?,
            waiting: Vec::with_capacity(DEFER_SLOTS),
            done: Vec::new(),
            low: s[1],
        })
    }

    /// Adds the waiting layers over `channels` (past the prefix of the next layer to join).
    pub(crate) fn complete(&mut self, channels: std::ops::Range<usize>) -> Result<()> {
        if self.waiting.is_empty() {
            return Ok(());
        }
        if channels.end != self.low {
            return Err(Error::shape(
                "batch_norm",
                format!(
                    "deferred pass over {channels:?}, waiting layers added from {}",
                    self.low
                ),
            ));
        }
        let dys: Vec<&Tensor> = self.waiting.iter().map(|w| &w.dy).collect();
        let pass = if self.fused {
            Pass::Fused {
                consts: &self.consts,
                sums: &self.sums,
            }
        } else {
            Pass::Apply(&self.consts)
        };
        deferred_pass(&self.x, &self.grad, pass, &dys, channels.clone())?;
        self.low = channels.start;
        Ok(())
    }

    /// A batch norm over the first `g.channels()` channels of the input, with output
    /// gradient `dy`, joins; it must not be wider than the layers waiting. A full group is
    /// added over the rest of its channels at once.
    pub(crate) fn push(
        &mut self,
        dy: &Tensor,
        stats: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        g: BnGeom,
    ) -> Result<()> {
        let c = g.c;
        if !self.waiting.is_empty() && c != self.low {
            return Err(Error::shape(
                "batch_norm",
                format!(
                    "deferred layer of {c} channels joins layers added from {}",
                    self.low
                ),
            ));
        }
        if dy.numel() != g.n * c * g.hw || g.c_stride != self.x.shape()[1] {
            return Err(Error::shape(
                "batch_norm",
                format!(
                    "gradient {:?} for {c} channels of {:?}",
                    dy.shape(),
                    self.x.shape()
                ),
            ));
        }
        let slot = self.waiting.len();
        let gpu = self.x.gpu();
        let sums = if self.fused {
            gpu.dispatch(
                &DEFER_PREPARE,
                &[],
                &BnParams {
                    slot: u(slot),
                    ..g.params()
                },
                &[
                    stats.binding(),
                    gamma.binding(),
                    beta.binding(),
                    self.consts.binding(),
                ],
                [c.div_ceil(64) as u32, 1, 1],
            )?;
            None
        } else {
            let defer = Some((&self.consts, slot));
            Some(bn_backward_sums(&self.x, dy, stats, gamma, beta, g, defer)?)
        };
        self.waiting.push(Waiting {
            dy: dy.clone(),
            g,
            sums,
        });
        self.low = c;
        if self.waiting.len() == DEFER_SLOTS {
            self.complete(0..c)?;
            self.settle()?;
        }
        Ok(())
    }

    /// The waiting layers are complete: keep their parameter gradients, free their slots.
    fn settle(&mut self) -> Result<()> {
        let waiting = std::mem::take(&mut self.waiting);
        if !self.fused {
            self.done.extend(waiting.into_iter().filter_map(|w| w.sums));
            return Ok(());
        }
        let gpu = self.x.gpu();
        let mut outs: Vec<(Tensor, Tensor)> = Vec::with_capacity(waiting.len());
        let mut dc = [0u32; DEFER_SLOTS];
        for (slot, w) in waiting.iter().enumerate() {
            outs.push((Tensor::empty(gpu, &[w.g.c])?, Tensor::empty(gpu, &[w.g.c])?));
            dc[slot] = u(w.g.c);
        }
        let widest = waiting.iter().map(|w| w.g.c).max().unwrap_or(1);
        for which in 0..2 {
            // Unused slots bind slot 0's output (never written).
            let out = |slot: usize| {
                let (dgamma, dbeta) = outs.get(slot).unwrap_or(&outs[0]);
                if which == 0 { dgamma } else { dbeta }
            };
            gpu.dispatch(
                &DEFER_SPLIT,
                &[("LAYERS", outs.len() as f64)],
                &BnParams {
                    slot: which,
                    c_stride: u(self.x.shape()[1]),
                    dc0: dc[0],
                    dc1: dc[1],
                    dc2: dc[2],
                    dc3: dc[3],
                    ..Default::default()
                },
                &[
                    self.sums.binding(),
                    out(0).binding(),
                    out(1).binding(),
                    out(2).binding(),
                    out(3).binding(),
                ],
                [widest.div_ceil(64) as u32, 1, 1],
            )?;
        }
        // The next group's passes overwrite the sums after the split has read them.
        self.done.extend(outs);
        Ok(())
    }

    /// Adds the layers still waiting over the rest of their channels; the `(dgamma, dbeta)`
    /// of every layer, in joining order.
    pub(crate) fn finish(mut self) -> Result<Vec<(Tensor, Tensor)>> {
        if !self.waiting.is_empty() {
            self.complete(0..self.low)?;
            self.settle()?;
        }
        Ok(self.done)
    }
}

impl Tensor {
    /// Batch norm of `[N, C, H, W]` (or `[N, C]`) with scale `gamma [C]` and shift `beta [C]`.
    /// `training`: normalise with batch statistics and update the running ones; else use
    /// the running statistics.
    pub fn batch_norm(
        &self,
        gamma: &Tensor,
        beta: &Tensor,
        stats: &BatchNormStats,
        training: bool,
    ) -> Result<Tensor> {
        let c = self.shape().get(1).copied().unwrap_or(0);
        self.batch_norm_ex(c, false, gamma, beta, stats, training)
    }

    /// `relu(batch_norm(x[:, ..channels]))`: normalise the first `channels` channels (a
    /// prefix view, no copy) and apply ReLU, in one kernel. Output `[N, channels, ...]`; the
    /// gradient wrt `self` has `self`'s shape, zero past the prefix.
    pub fn batch_norm_relu(
        &self,
        channels: usize,
        gamma: &Tensor,
        beta: &Tensor,
        stats: &BatchNormStats,
        training: bool,
    ) -> Result<Tensor> {
        self.batch_norm_ex(channels, true, gamma, beta, stats, training)
    }

    /// `relu(batch_norm(self) + residual)` (a residual block's output), the batch norm, the
    /// add and the ReLU in one pass over memory. `residual` has `self`'s shape. Its
    /// backward masks the gradient by the output (ReLU), which is the residual's gradient,
    /// and runs the batch norm's backward on it.
    pub fn batch_norm_add_relu(
        &self,
        residual: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        st: &BatchNormStats,
        training: bool,
    ) -> Result<Tensor> {
        if residual.shape() != self.shape() {
            return Err(Error::shape(
                "batch_norm_add_relu",
                format!(
                    "residual {:?} vs input {:?}",
                    residual.shape(),
                    self.shape()
                ),
            ));
        }
        let c = self.shape().get(1).copied().unwrap_or(0);
        let (stats, g) = bn_stats(
            self,
            c,
            false,
            gamma,
            beta,
            st,
            training,
            BatchStats::Compute,
        )?;
        let y = Tensor::empty(self.gpu(), self.shape())?;
        let (spec, grid, params) = plane_grid(
            self.gpu(),
            &g,
            &APPLY_ADD,
            &APPLY_ADD_VEC4,
            Some(&APPLY_ADD_QUAD),
        )?;
        self.gpu().dispatch(
            spec,
            &[],
            &params,
            &[
                self.binding(),
                stats.binding(),
                gamma.binding(),
                beta.binding(),
                residual.binding(),
                y.binding(),
            ],
            grid,
        )?;
        let (x, gm, bt, yd) = (self.detach(), gamma.detach(), beta.detach(), y.detach());
        self.gpu()
            .record(&y, &[self, residual, gamma, beta], move |dy| {
                let dz = yd.relu_backward(dy)?;
                let (dx, dgamma, dbeta) = bn_backward(&x, &dz, &stats, &gm, &bt, g)?;
                Ok(vec![Some(dx), Some(dz), Some(dgamma), Some(dbeta)])
            });
        Ok(y)
    }

    fn batch_norm_ex(
        &self,
        channels: usize,
        relu: bool,
        gamma: &Tensor,
        beta: &Tensor,
        st: &BatchNormStats,
        training: bool,
    ) -> Result<Tensor> {
        let (y, stats, g) = bn_forward(self, channels, relu, gamma, beta, st, training)?;
        let (x, gm, bt) = (self.detach(), gamma.detach(), beta.detach());
        self.gpu().record(&y, &[self, gamma, beta], move |dy| {
            let (dx, dgamma, dbeta) = bn_backward(&x, dy, &stats, &gm, &bt, g)?;
            Ok(vec![Some(dx), Some(dgamma), Some(dbeta)])
        });
        Ok(y)
    }
}

/// Plain-Rust reference for the tests.
#[cfg(any(test, feature = "oracles"))]
pub mod cpu {
    /// Training-mode batch norm of `[n, c, hw]`: `(y, batch mean, biased batch variance)`.
    pub fn batch_norm(
        x: &[f32],
        gamma: &[f32],
        beta: &[f32],
        n: usize,
        c: usize,
        hw: usize,
        eps: f32,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let m = (n * hw) as f64;
        let mut y = vec![0.0; x.len()];
        let (mut means, mut vars) = (vec![0.0; c], vec![0.0; c]);
        for ch in 0..c {
            let idx = |j: usize| ((j / hw) * c + ch) * hw + j % hw;
            let mean = (0..n * hw).map(|j| x[idx(j)] as f64).sum::<f64>() / m;
            let var = (0..n * hw)
                .map(|j| (x[idx(j)] as f64 - mean).powi(2))
                .sum::<f64>()
                / m;
            let inv = 1.0 / (var + eps as f64).sqrt();
            for j in 0..n * hw {
                y[idx(j)] =
                    ((x[idx(j)] as f64 - mean) * inv * gamma[ch] as f64 + beta[ch] as f64) as f32;
            }
            means[ch] = mean as f32;
            vars[ch] = var as f32;
        }
        (y, means, vars)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{Tuning, with_tuning};

    fn rand(n: usize, seed: u64) -> Vec<f32> {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    fn close(got: &[f32], want: &[f32], tol: f32, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol * (1.0 + w.abs()),
                "{what}[{i}]: got {g}, want {w}"
            );
        }
    }

    /// Statistics cached per channel group (DenseNet) give a prefix batch norm the same
    /// output and running averages as reducing the prefix directly and as the CPU
    /// reference; the accumulating backward adds exactly the plain backward's dx into the
    /// caller's buffer. Odd planes (scalar kernels), multiples of 4 (vec4), batch 1, every
    /// tuning (the real-GPU split reductions too).
    #[test]
    fn cached_statistics_and_accumulated_gradients_match_the_direct_path() {
        let gpu = crate::Gpu::portable().expect("an adapter");
        for tuning in [Tuning::Gpu, Tuning::Cpu] {
            for (n, cs, h, w, split, prefix) in [
                (2, 7, 3, 3, 3, 5),
                (1, 6, 2, 2, 2, 6),
                (3, 5, 1, 1, 1, 4),
                (1, 4, 1, 3, 2, 3),
                // Chunks of several samples with a remainder (CPU tunings).
                (71, 3, 4, 4, 1, 2),
                (71, 3, 1, 3, 1, 2),
            ] {
                with_tuning(tuning, || case(&gpu, n, cs, h * w, split, prefix));
            }
        }

        fn case(gpu: &crate::Gpu, n: usize, cs: usize, hw: usize, split: usize, c: usize) {
            let t = |v: &[f32], shape: &[usize]| Tensor::from_slice(gpu, v, shape).unwrap();
            let xv = rand(n * cs * hw, 1);
            let x = t(&xv, &[n, cs, hw]);
            let (gv, bv) = (rand(c, 2), rand(c, 3));
            let (gamma, beta) = (t(&gv, &[c]), t(&bv, &[c]));
            let rmv = rand(c, 4);
            let rvv: Vec<f32> = rand(c, 5).iter().map(|v| v + 2.0).collect();
            let running = || (t(&rmv, &[c]), t(&rvv, &[c]));
            // The cache, filled in two groups as a DenseNet block writes its channels.
            let cache = Tensor::empty(gpu, &[2 * cs]).unwrap();
            bn_cache_stats(&x, 0, split, &cache).unwrap();
            bn_cache_stats(&x, split, cs - split, &cache).unwrap();
            let forward = |from: BatchStats| {
                let (rm, rv) = running();
                let st = BatchNormStats {
                    running_mean: &rm,
                    running_var: &rv,
                    momentum: 0.1,
                    eps: 1e-5,
                };
                let (y, stats, g) =
                    bn_forward_from(&x, c, true, &gamma, &beta, &st, true, from).unwrap();
                let out = (
                    y.to_vec().unwrap(),
                    rm.to_vec().unwrap(),
                    rv.to_vec().unwrap(),
                );
                (out, stats, g)
            };
            let ((y1, rm1, rv1), stats, g) = forward(BatchStats::Cached(&cache));
            let ((y2, rm2, rv2), _, _) = forward(BatchStats::Compute);
            close(&y1, &y2, 1e-6, "y cached vs direct");
            close(&rm1, &rm2, 1e-6, "running mean");
            close(&rv1, &rv2, 1e-6, "running var");
            // CPU reference of the prefix.
            let prefix: Vec<f32> = (0..n)
                .flat_map(|i| xv[i * cs * hw..(i * cs + c) * hw].to_vec())
                .collect();
            let (want, mean, var) = cpu::batch_norm(&prefix, &gv, &bv, n, c, hw, 1e-5);
            let want: Vec<f32> = want.iter().map(|v| v.max(0.0)).collect();
            close(&y1, &want, 1e-4, "y vs cpu");
            let m = (n * hw) as f32;
            for ch in 0..c {
                let rm = 0.9 * rmv[ch] + 0.1 * mean[ch];
                let rv = 0.9 * rvv[ch] + 0.1 * var[ch] * m / (m - 1.0).max(1.0);
                close(&[rm1[ch], rv1[ch]], &[rm, rv], 1e-5, "running vs cpu");
            }
            // The deferred backward adds the plain backward's dx into a buffer that
            // already holds a gradient, with the same parameter gradients.
            let before = rand(n * cs * hw, 7);
            let acc = t(&before, &[n, cs, hw]);
            let dy = t(&rand(n * c * hw, 6), &[n, c, hw]);
            let mut deferred = DeferredBackward::new(&x, &acc).unwrap();
            deferred.push(&dy, &stats, &gamma, &beta, g).unwrap();
            let sums = deferred.finish().unwrap();
            let (dx, dg2, db2) = bn_backward(&x, &dy, &stats, &gamma, &beta, g).unwrap();
            let want: Vec<f32> = dx
                .to_vec()
                .unwrap()
                .iter()
                .zip(&before)
                .map(|(d, b)| d + b)
                .collect();
            close(&acc.to_vec().unwrap(), &want, 1e-5, "deferred dx");
            assert_eq!(sums.len(), 1);
            close(
                &sums[0].0.to_vec().unwrap(),
                &dg2.to_vec().unwrap(),
                1e-5,
                "dgamma",
            );
            close(
                &sums[0].1.to_vec().unwrap(),
                &db2.to_vec().unwrap(),
                1e-5,
                "dbeta",
            );
            let wrong = t(&before[..n * c * hw], &[n, c, hw]);
            assert!(DeferredBackward::new(&x, &wrong).is_err() || c == cs);
        }
    }

    /// Several batch norms over prefixes of one input (a DenseNet block's layers), with and
    /// without ReLU, training and frozen, their backward passes deferred as a block defers
    /// them (a full group of 4, then 1; the waiting layers completed over the channels past
    /// each joining layer's prefix), give the sum of the plain backward passes' dx and their
    /// parameter gradients. Odd planes (scalar kernels), multiples of 4 (vec4), planes of
    /// more positions than a workgroup has invocations, batch 1, every tuning (CPU: the
    /// fused passes; real GPUs: reductions at once, applies deferred).
    #[test]
    fn deferred_backward_adds_the_plain_gradients_of_several_layers() {
        let gpu = crate::Gpu::portable().expect("an adapter");
        for tuning in [Tuning::Gpu, Tuning::Cpu] {
            for (n, cs, hw) in [(2, 9, 9), (1, 7, 4), (3, 6, 1), (19, 5, 12), (2, 5, 300)] {
                with_tuning(tuning, || case(&gpu, n, cs, hw));
            }
        }

        fn case(gpu: &crate::Gpu, n: usize, cs: usize, hw: usize) {
            let t = |v: &[f32], shape: &[usize]| Tensor::from_slice(gpu, v, shape).unwrap();
            let x = t(&rand(n * cs * hw, 1), &[n, cs, hw]);
            let before = rand(n * cs * hw, 2);
            let acc = t(&before, &[n, cs, hw]);
            let mut want = before.clone();
            let mut deferred = DeferredBackward::new(&x, &acc).unwrap();
            let prefixes = [cs, cs - 1, cs - 2, cs - 2, cs - 3];
            let mut low = cs;
            let mut plain = Vec::new();
            for (l, &c) in prefixes.iter().enumerate() {
                deferred.complete(c..low).unwrap();
                low = c;
                let (relu, training) = (l != 1, l != 2);
                let seed = 10 * l as u64;
                let (gamma, beta) = (t(&rand(c, seed), &[c]), t(&rand(c, seed + 1), &[c]));
                let rm = t(&rand(c, seed + 2), &[c]);
                let rv = t(&vec![1.5; c], &[c]);
                let st = BatchNormStats {
                    running_mean: &rm,
                    running_var: &rv,
                    momentum: 0.1,
                    eps: 1e-5,
                };
                let (_, stats, g) = bn_forward(&x, c, relu, &gamma, &beta, &st, training).unwrap();
                let dy = t(&rand(n * c * hw, seed + 3), &[n, c, hw]);
                let (dx, dgamma, dbeta) = bn_backward(&x, &dy, &stats, &gamma, &beta, g).unwrap();
                for (w, d) in want.iter_mut().zip(dx.to_vec().unwrap()) {
                    *w += d;
                }
                plain.push((dgamma.to_vec().unwrap(), dbeta.to_vec().unwrap()));
                deferred.push(&dy, &stats, &gamma, &beta, g).unwrap();
            }
            let sums = deferred.finish().unwrap();
            assert_eq!(sums.len(), prefixes.len());
            for ((dg, db), (want_dg, want_db)) in sums.iter().zip(&plain) {
                close(&dg.to_vec().unwrap(), want_dg, 1e-4, "dgamma");
                close(&db.to_vec().unwrap(), want_db, 1e-4, "dbeta");
            }
            close(
                &acc.to_vec().unwrap(),
                &want,
                1e-5,
                "deferred dx of five layers",
            );
        }
    }
}
