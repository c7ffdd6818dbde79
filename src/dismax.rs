//! DisMax's fractional probability regularization (FPR), as the authors' training code
//! applies it: half of every batch becomes quadrant-mixed images whose target is the
//! fractional distribution of the four source labels.
//!
//! For a batch of B images with labels y, let h = ⌊B/2⌋ and n = B − h (the second half,
//! rows h..B). The images of the second half are mixed in place: with rows split at ⌊H/2⌋
//! and columns at ⌊W/2⌋, image h+i keeps its top-left quadrant and takes
//!
//! - its bottom-left quadrant from image h + (i − 1 mod n),
//! - its top-right quadrant from image h + (i − 2 mod n),
//! - its bottom-right quadrant from image h + (i − 3 mod n)
//!
//! (PyTorch's `torch.roll` by 1, 2, 3 over the half batch). Its target distribution is
//! t_i = ¼ Σ_{q=0..3} onehot(y_{h + (i − q mod n)}) — ¼ per quadrant whatever the quadrant's
//! area. With p = softmax(E_s·z) the loss is
//!
//! ```text
//! L = ½ (CE + KL),   CE = −(1/h) Σ_{i<h} log p_{i,y_i},
//!                    KL = (1/n) Σ_{i≥h} Σ_c t_ic (log t_ic − log p_ic)   (0·log 0 = 0)
//! ```
//!
//! (the official code's `(loss + alpha·F.kl_div(log p, t, reduction='batchmean'))/2`, α = 1).
//! The official code first permutes the batch; the loader's shuffle already makes every
//! batch a random sample, so no second permutation is drawn here.
//!
//! On the GPU, L = K − Σ_ic A_ic · log_softmax(E_s·z)_ic with the weights A and the constant
//! K of [`fpr_weights`]: composed from the differentiable `scale`, `log_softmax`, `mul`,
//! `sum` and `affine`, so no new kernel is involved.

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The source image (index into the second half, 0..n) of quadrant `q` of mixed image `i`.
fn source(i: usize, q: usize, n: usize) -> usize {
    (i + 4 * n - q) % n
}

/// Check the batch layout shared by the FPR functions.
fn check(batch: usize, op: &'static str) -> Result<()> {
    if batch < 2 {
        return Err(Error::Config(format!(
            "{op}: fractional probability regularization needs a batch of at least 2 (got {batch})"
        )));
    }
    Ok(())
}

/// Mix the second half of `images` (`[batch, channels, height, width]`, row-major) in
/// place, as described in the module documentation.
pub fn quadrant_mix(
    images: &mut [f32],
    batch: usize,
    channels: usize,
    height: usize,
    width: usize,
) -> Result<()> {
    check(batch, "quadrant_mix")?;
    let plane = height * width;
    let img = channels * plane;
    if images.len() != batch * img {
        return Err(Error::shape(
            "quadrant_mix",
            format!(
                "{} values for a batch [{batch}, {channels}, {height}, {width}]",
                images.len()
            ),
        ));
    }
    let h = batch / 2;
    let n = batch - h;
    let original = images[h * img..].to_vec();
    let (rows, cols) = (height / 2, width / 2);
    for i in 0..n {
        for c in 0..channels {
            for y in 0..height {
                for x in 0..width {
                    let q = match (y >= rows, x >= cols) {
                        (false, false) => 0,
                        (true, false) => 1,
                        (false, true) => 2,
                        (true, true) => 3,
                    };
                    let at = c * plane + y * width + x;
                    images[(h + i) * img + at] = original[source(i, q, n) * img + at];
                }
            }
        }
    }
    Ok(())
}

/// The FPR loss weights A (`[batch, classes]`, row-major) and constant K of a batch with
/// `labels` (second half mixed by [`quadrant_mix`]): A_{i,y_i} = 1/(2h) for i < h,
/// A_ic = t_ic/(2n) for i ≥ h, K = (1/(2n)) Σ_{i≥h} Σ_c t_ic log t_ic, so that
/// L = K − Σ A ⊙ log p.
pub fn fpr_weights(labels: &[u32], classes: usize) -> Result<(Vec<f32>, f32)> {
    let batch = labels.len();
    check(batch, "fpr_weights")?;
    if let Some(y) = labels.iter().find(|&&y| y as usize >= classes) {
        return Err(Error::Config(format!(
            "fpr_weights: label {y} is not below the {classes} classes"
        )));
    }
    let h = batch / 2;
    let n = batch - h;
    let mut a = vec![0.0f32; batch * classes];
    for (i, &y) in labels[..h].iter().enumerate() {
        a[i * classes + y as usize] = 1.0 / (2 * h) as f32;
    }
    let mut k = 0.0f64;
    let mut t = vec![0.0f64; classes];
    for i in 0..n {
        t.iter_mut().for_each(|v| *v = 0.0);
        for q in 0..4 {
            t[labels[h + source(i, q, n)] as usize] += 0.25;
        }
        for (c, &tc) in t.iter().enumerate() {
            if tc > 0.0 {
                a[(h + i) * classes + c] = (tc / (2 * n) as f64) as f32;
                k += tc * tc.ln() / (2 * n) as f64;
            }
        }
    }
    Ok((a, k as f32))
}

/// The FPR loss `[1]` of logits `[B, C]` at entropic scale `scale`, given the weights
/// (`[B, C]` tensor) and constant of [`fpr_weights`]: K − Σ A ⊙ log_softmax(scale·z).
/// Differentiable wrt the logits.
pub fn fpr_loss(logits: &Tensor, weights: &Tensor, constant: f32, scale: f32) -> Result<Tensor> {
    logits.same_shape(weights, "fpr_loss")?;
    logits
        .scale(scale)?
        .log_softmax()?
        .mul(weights)?
        .sum()?
        .affine(-1.0, constant)
}

/// Plain-Rust reference, straight from the definition (for the tests).
#[cfg(any(test, feature = "oracles"))]
pub mod cpu {
    /// ½(CE + KL) of logits `z` (`[b, c]`) whose second half holds quadrant-mixed images,
    /// in f64, computed from the formula without the weights of [`super::fpr_weights`].
    pub fn fpr_loss(z: &[f64], labels: &[u32], c: usize, scale: f64) -> f64 {
        let b = labels.len();
        let (h, n) = (b / 2, b - b / 2);
        let log_p = |i: usize| -> Vec<f64> {
            let row: Vec<f64> = z[i * c..(i + 1) * c].iter().map(|v| v * scale).collect();
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            row.iter().map(|v| v - lse).collect()
        };
        let ce = -(0..h).map(|i| log_p(i)[labels[i] as usize]).sum::<f64>() / h as f64;
        let mut kl = 0.0;
        for i in 0..n {
            let lp = log_p(h + i);
            let mut t = vec![0.0f64; c];
            for roll in 0..4i64 {
                // torch.roll(y[h:], roll)[i] = y[h + (i − roll) mod n]
                let from = (i as i64 - roll).rem_euclid(n as i64) as usize;
                t[labels[h + from] as usize] += 0.25;
            }
            for j in 0..c {
                if t[j] > 0.0 {
                    kl += t[j] * (t[j].ln() - lp[j]);
                }
            }
        }
        (ce + kl / n as f64) / 2.0
    }
}
