//! The IsoMax family of heads (docs/method.md §1) on the GPU.
//!
//! - [`prototype_distances`]: fused d_ij = ‖f_i − p_j‖ (one kernel, register tiles, no
//!   barriers) with one-pass, atomic-free gradients for features and prototypes.
//! - [`normalized_prototype_distances`]: IsoMax+ / DisMax, d_ij = |s|·‖n(f_i) − n(p_j)‖/div.
//! - [`logits_from_distances`]: z = −d, or DisMax's z = −(d + mean_k d_k).
//! - [`softmax_entropy`]: the entropic loss, the probabilities and every OOD score per row.
//! - [`unfused`]: the same distances from primitive ops only, the benchmark's baseline.
//!
//! The CPU reference is [`crate::ood::scores`]; `tests/isomax.rs` compares against it.

use super::{groups_1d, kernel};
use crate::error::{Error, Result};
use crate::gpu::{Binding, Gpu, KernelSpec, kernel_params, u};
use crate::tensor::Tensor;

const DIST_FWD: KernelSpec = kernel!("isomax", "dist_fwd", 2, 1);
const DIST_GRAD_F: KernelSpec = kernel!("isomax", "dist_grad_f", 4, 1);
const DIST_GRAD_P: KernelSpec = kernel!("isomax", "dist_grad_p", 4, 1);
const ROW_NORMALIZE: KernelSpec = kernel!("isomax", "row_normalize", 1, 2);
const ROW_NORMALIZE_BACKWARD: KernelSpec = kernel!("isomax", "row_normalize_backward", 3, 1);
const ABS_SCALE: KernelSpec = kernel!("isomax", "abs_scale", 2, 1);
const ABS_SCALE_PARTIAL: KernelSpec = kernel!("isomax", "abs_scale_partial", 2, 1);
const ABS_SCALE_FINAL: KernelSpec = kernel!("isomax", "abs_scale_final", 2, 1);
const ADD_ROW_MEAN: KernelSpec = kernel!("isomax", "add_row_mean", 1, 1);
const SOFTMAX_ENTROPY: KernelSpec = kernel!("isomax", "softmax_entropy", 2, 3);
const SOFTMAX_ENTROPY_BACKWARD: KernelSpec = kernel!("isomax", "softmax_entropy_backward", 3, 1);

/// Rows (or prototypes) and columns per invocation in the distance kernels' register tiles.
const TILE: usize = 4;

/// Number of scores per row in [`HeadOutput::scores`].
pub const SCORES_PER_ROW: usize = 8;

/// Column of each score in [`HeadOutput::scores`] (same order as `RowScores`).
pub mod score {
    /// Maximum probability, max softmax(z).
    pub const MPS: usize = 0;
    /// Entropic score Σ p log p (= −H(p)).
    pub const ES: usize = 1;
    /// Minimum distance score, max z.
    pub const MDS: usize = 2;
    /// Energy, logsumexp z.
    pub const ENERGY: usize = 3;
    /// Maximum logit, max z.
    pub const MAX_LOGIT: usize = 4;
    /// DisMax max-mean logit score, max z + mean z.
    pub const MMLS: usize = 5;
    /// DisMax default score, max z + mean z + Σ p log p.
    pub const MMLES: usize = 6;
    /// argmax z as f32 (the first one on ties).
    pub const PREDICTION: usize = 7;
}

/// Invocations per workgroup. Small on CPU adapters: llvmpipe runs one workgroup per
/// thread, so with 64-wide groups a 64-row batch would occupy a single core.
fn wg(gpu: &Gpu) -> u32 {
    match super::tuning(gpu) {
        super::Tuning::Gpu => WORKGROUPS[1],
        super::Tuning::Cpu | super::Tuning::CpuSubgroup => WORKGROUPS[0],
    }
}

/// The workgroup sizes [`wg`] picks from (the `WG` pipeline constant).
pub(crate) const WORKGROUPS: [u32; 2] = [16, 64];

/// Dispatch `spec` over `n` invocations with the per-adapter workgroup size.
fn launch(
    gpu: &Gpu,
    spec: &KernelSpec,
    params: IsomaxParams,
    bindings: &[Binding<'_>],
    n: usize,
) -> Result<()> {
    let w = wg(gpu);
    gpu.dispatch(
        spec,
        &[("WG", f64::from(w))],
        &params,
        bindings,
        groups_1d(n, w),
    )
}

kernel_params! {
    /// `Params` of `shaders/isomax.wgsl`.
    struct IsomaxParams => "Params" {
        b: u32,
        c: u32,
        d: u32,
        n: u32,
        scale: f32,
        inv_b: f32,
    }
}

fn params(b: usize, c: usize, d: usize, n: usize, scale: f32, inv_b: f32) -> IsomaxParams {
    IsomaxParams {
        b: u(b),
        c: u(c),
        d: u(d),
        n: u(n),
        scale,
        inv_b,
    }
}

/// `(B, C, D)` of features `[B, D]` and prototypes `[C, D]`, every size at least 1.
fn head_dims(
    op: &'static str,
    features: &Tensor,
    prototypes: &Tensor,
) -> Result<(usize, usize, usize)> {
    let (fs, ps) = (features.shape(), prototypes.shape());
    if fs.len() != 2 || ps.len() != 2 || fs[1] != ps[1] || fs.contains(&0) || ps.contains(&0) {
        return Err(Error::shape(
            op,
            format!(
                "features {fs:?} must be [B, D] and prototypes {ps:?} [C, D] with the same D, all sizes ≥ 1"
            ),
        ));
    }
    Ok((fs[0], ps[0], fs[1]))
}

/// `(rows, cols)` of a non-empty 2-D tensor.
fn dims2(op: &'static str, what: &str, t: &Tensor) -> Result<(usize, usize)> {
    match *t.shape() {
        [r, c] if r > 0 && c > 0 => Ok((r, c)),
        ref s => Err(Error::shape(
            op,
            format!("{what} {s:?} must be a non-empty [rows, cols] matrix"),
        )),
    }
}

/// Euclidean (not squared) distances d_ij = ‖f_i − p_j‖₂ of features `[B, D]` to prototypes
/// `[C, D]`, shape `[B, C]`, in one fused kernel.
///
/// Computed from the direct differences Σ(f − p)²: the expanded ‖f‖² + ‖p‖² − 2f·p loses
/// everything near d = 0, which is where zero-initialized prototypes start. Gradients:
/// grad_f = Σ_j g_ij (f_i − p_j)/d_ij and grad_p = −Σ_i g_ij (f_i − p_j)/d_ij, each one
/// kernel pass in a fixed order, with the d = 0 terms defined as 0 (never NaN).
pub fn prototype_distances(features: &Tensor, prototypes: &Tensor) -> Result<Tensor> {
    let (b, c, d) = head_dims("prototype_distances", features, prototypes)?;
    let gpu = features.gpu().clone();
    let out = Tensor::empty(&gpu, &[b, c])?;
    launch(
        &gpu,
        &DIST_FWD,
        params(b, c, d, 0, 1.0, 0.0),
        &[features.binding(), prototypes.binding(), out.binding()],
        b.div_ceil(TILE) * c.div_ceil(TILE),
    )?;
    let need = (features.requires_grad(), prototypes.requires_grad());
    let (f, p, dist) = (features.detach(), prototypes.detach(), out.detach());
    gpu.clone().record(&out, &[features, prototypes], move |g| {
        let gf = if need.0 {
            let gf = Tensor::empty(&gpu, &[b, d])?;
            let n = b.div_ceil(TILE) * d.div_ceil(TILE);
            launch(
                &gpu,
                &DIST_GRAD_F,
                params(b, c, d, 0, 1.0, 0.0),
                &[
                    f.binding(),
                    p.binding(),
                    dist.binding(),
                    g.binding(),
                    gf.binding(),
                ],
                n,
            )?;
            Some(gf)
        } else {
            None
        };
        let gp = if need.1 {
            let gp = Tensor::empty(&gpu, &[c, d])?;
            let n = c.div_ceil(TILE) * d.div_ceil(TILE);
            launch(
                &gpu,
                &DIST_GRAD_P,
                params(b, c, d, 0, 1.0, 0.0),
                &[
                    f.binding(),
                    p.binding(),
                    dist.binding(),
                    g.binding(),
                    gp.binding(),
                ],
                n,
            )?;
            Some(gp)
        } else {
            None
        };
        Ok(vec![gf, gp])
    });
    Ok(out)
}

/// Rows divided by max(‖row‖, 1e-12), like PyTorch `F.normalize`.
fn normalize_rows(x: &Tensor) -> Result<Tensor> {
    let (rows, d) = dims2("normalize_rows", "input", x)?;
    let gpu = x.gpu().clone();
    let u = Tensor::empty(&gpu, &[rows, d])?;
    let norms = Tensor::empty(&gpu, &[rows])?;
    launch(
        &gpu,
        &ROW_NORMALIZE,
        params(0, 0, d, rows, 1.0, 0.0),
        &[x.binding(), u.binding(), norms.binding()],
        rows,
    )?;
    let saved = u.detach();
    gpu.clone().record(&u, &[x], move |g| {
        let gx = Tensor::empty(&gpu, &[rows, d])?;
        launch(
            &gpu,
            &ROW_NORMALIZE_BACKWARD,
            params(0, 0, d, rows, 1.0, 0.0),
            &[saved.binding(), norms.binding(), g.binding(), gx.binding()],
            rows,
        )?;
        Ok(vec![Some(gx)])
    });
    Ok(u)
}

/// `r · |s| · alpha` with the scalar `s` read on the GPU (no host round trip).
fn abs_scale(r: &Tensor, s: &Tensor, alpha: f32) -> Result<Tensor> {
    let (b, c) = dims2("abs_scale", "distances", r)?;
    let gpu = r.gpu().clone();
    let out = Tensor::empty(&gpu, &[b, c])?;
    let n = b * c;
    launch(
        &gpu,
        &ABS_SCALE,
        params(b, c, 0, n, alpha, 0.0),
        &[r.binding(), s.binding(), out.binding()],
        n,
    )?;
    let need = (r.requires_grad(), s.requires_grad());
    let (rd, sd) = (r.detach(), s.detach());
    gpu.clone().record(&out, &[r, s], move |g| {
        let (r, s) = (&rd, &sd);
        let gr = if need.0 {
            let gr = Tensor::empty(&gpu, &[b, c])?;
            launch(
                &gpu,
                &ABS_SCALE,
                params(b, c, 0, n, alpha, 0.0),
                &[g.binding(), s.binding(), gr.binding()],
                n,
            )?;
            Some(gr)
        } else {
            None
        };
        let gs = if need.1 {
            let partial = Tensor::empty(&gpu, &[b])?;
            launch(
                &gpu,
                &ABS_SCALE_PARTIAL,
                params(b, c, 0, 0, 0.0, 0.0),
                &[g.binding(), r.binding(), partial.binding()],
                b,
            )?;
            let gs = Tensor::empty(&gpu, &[1])?;
            gpu.dispatch(
                &ABS_SCALE_FINAL,
                &[],
                &params(b, c, 0, 0, alpha, 0.0),
                &[partial.binding(), s.binding(), gs.binding()],
                [1, 1, 1],
            )?;
            Some(gs)
        } else {
            None
        };
        Ok(vec![gr, gs])
    });
    Ok(out)
}

/// Normalized distances of IsoMax+ (`divisor` 1) and DisMax (`divisor` √2):
/// d_ij = |s|·‖f_i/‖f_i‖ − p_j/‖p_j‖‖₂ / divisor, norms clamped at 1e-12 like PyTorch's
/// `F.normalize`, `s` the learnable scale of shape `[1]`. Gradients reach features,
/// prototypes and `s` (d|s|/ds = 0 at s = 0).
///
/// Composed of small kernels (row norms, the fused distance, the scale) that all stay on
/// the GPU.
pub fn normalized_prototype_distances(
    features: &Tensor,
    prototypes: &Tensor,
    scale: &Tensor,
    divisor: f32,
) -> Result<Tensor> {
    head_dims("normalized_prototype_distances", features, prototypes)?;
    if scale.shape() != [1] {
        return Err(Error::shape(
            "normalized_prototype_distances",
            format!(
                "scale {:?} must have shape [1] (features {:?})",
                scale.shape(),
                features.shape()
            ),
        ));
    }
    if !(divisor.is_finite() && divisor > 0.0) {
        return Err(Error::Config(format!(
            "normalized_prototype_distances: divisor {divisor} must be finite and positive"
        )));
    }
    let u = normalize_rows(features)?;
    let v = normalize_rows(prototypes)?;
    let r = prototype_distances(&u, &v)?;
    abs_scale(&r, scale, 1.0 / divisor)
}

/// Logits from distances (temperature 1): z = −d, or for DisMax z = −(d + mean_k d_k).
pub fn logits_from_distances(d: &Tensor, dismax: bool) -> Result<Tensor> {
    let (b, c) = dims2("logits_from_distances", "distances", d)?;
    if !dismax {
        return d.scale(-1.0);
    }
    let gpu = d.gpu().clone();
    let out = Tensor::empty(&gpu, &[b, c])?;
    launch(
        &gpu,
        &ADD_ROW_MEAN,
        params(b, c, 0, 0, -1.0, 0.0),
        &[d.binding(), out.binding()],
        b,
    )?;
    gpu.clone().record(&out, &[d], move |g| {
        // ∂L/∂d_k = −g_k − mean_j g_j: the same symmetric map applied to g.
        let gd = Tensor::empty(&gpu, &[b, c])?;
        launch(
            &gpu,
            &ADD_ROW_MEAN,
            params(b, c, 0, 0, -1.0, 0.0),
            &[g.binding(), gd.binding()],
            b,
        )?;
        Ok(vec![Some(gd)])
    });
    Ok(out)
}

/// What [`softmax_entropy`] produces.
#[derive(Debug, Clone)]
pub struct HeadOutput {
    /// `[1]`: mean over the batch of −log softmax(scale·z)_y. Differentiable wrt the logits.
    pub loss: Tensor,
    /// `[B, C]`: softmax(z) at scale 1 (the entropic scale is training-only).
    pub probs: Tensor,
    /// `[B, 8]`: per row mps, es, mds (= max z), energy (logsumexp z), max_logit, mmls,
    /// mmles, prediction (argmax z as f32, first on ties); columns in [`score`].
    pub scores: Tensor,
}

/// The entropic loss, probabilities and OOD scores of logits `[B, C]`, one invocation per
/// row, numerically stable (max-shifted; 0·log 0 = 0).
///
/// `labels` is `[B]` of class ids stored as f32. They must be integers below C: the host
/// cannot check them without a readback, so the kernel clamps an out-of-range label into
/// [0, C−1] (never reading out of bounds) and the loss is then that of the clamped class.
/// Backward (wrt the logits only): grad_z = scale·(softmax(scale·z) − onehot(y))/B times
/// the incoming gradient. The batch mean is a fixed-order reduction (deterministic).
pub fn softmax_entropy(logits: &Tensor, labels: &Tensor, scale: f32) -> Result<HeadOutput> {
    let (b, c) = dims2("softmax_entropy", "logits", logits)?;
    if labels.shape() != [b] {
        return Err(Error::shape(
            "softmax_entropy",
            format!(
                "labels {:?} must be [B] for logits {:?}",
                labels.shape(),
                logits.shape()
            ),
        ));
    }
    let gpu = logits.gpu().clone();
    let probs = Tensor::empty(&gpu, &[b, c])?;
    let scores = Tensor::empty(&gpu, &[b, SCORES_PER_ROW])?;
    let row_loss = Tensor::empty(&gpu, &[b])?;
    launch(
        &gpu,
        &SOFTMAX_ENTROPY,
        params(b, c, 0, 0, scale, 0.0),
        &[
            logits.binding(),
            labels.binding(),
            probs.binding(),
            scores.binding(),
            row_loss.binding(),
        ],
        b,
    )?;
    let loss = gpu.no_grad(|| row_loss.mean())?;
    let (z, y) = (logits.detach(), labels.detach());
    gpu.clone().record(&loss, &[logits], move |g| {
        let gz = Tensor::empty(&gpu, &[b, c])?;
        launch(
            &gpu,
            &SOFTMAX_ENTROPY_BACKWARD,
            params(b, c, 0, 0, scale, 1.0 / b as f32),
            &[z.binding(), y.binding(), g.binding(), gz.binding()],
            b,
        )?;
        Ok(vec![Some(gz)])
    });
    Ok(HeadOutput {
        loss,
        probs,
        scores,
    })
}

/// The distances built only from primitive engine ops (expand, sub, mul, sum_axes, sqrt),
/// materializing `[B, C, D]` intermediates: the baseline the fused kernels are measured
/// against, and a second implementation for the tests.
#[cfg(any(test, feature = "oracles"))]
pub mod unfused {
    use super::head_dims;
    use crate::error::Result;
    use crate::tensor::Tensor;

    /// d_ij = ‖f_i − p_j‖ via `[B, C, D]` broadcasts. Gradients come from the primitives'
    /// rules; `sqrt`'s gradient is 0 at 0, so d = 0 gives 0, as in the fused kernel.
    pub fn prototype_distances(features: &Tensor, prototypes: &Tensor) -> Result<Tensor> {
        let (b, c, _) = head_dims("unfused::prototype_distances", features, prototypes)?;
        let fe = features.expand(1, c)?; // [B, C, D]
        let pe = prototypes.expand(0, b)?; // [B, C, D]
        let diff = fe.sub(&pe)?;
        diff.mul(&diff)?.sum_axes(2..3)?.sqrt()
    }
}
