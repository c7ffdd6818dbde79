//! CPU reference of the heads' math (docs/method.md §1): distances, their gradients, the entropic
//! cross-entropy and the per-row OOD scores.
//!
//! This is the ground truth the GPU kernels are tested against and the CPU side of
//! evaluation. Everything is computed in f64 (the `*_f64` cores, also used by the
//! finite-difference tests) and converted at the f32 boundary. Matrices are row-major:
//! features `f` B×D, prototypes `p` C×D, distances and logits B×C.

/// Which classification head produced the logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum HeadKind {
    /// Linear layer, z = W f + b.
    SoftMax,
    /// z = −‖f − p_j‖, zero-initialized prototypes.
    IsoMax,
    /// z = −|s|·‖n(f) − n(p_j)‖.
    IsoMaxPlus,
    /// z = −(d_j + mean_k d_k), d_j = |s|·‖n(f) − n(p_j)‖/√2.
    DisMax,
}

impl HeadKind {
    /// Entropic scale E_s of the training loss; plain cross-entropy for SoftMax.
    /// Inference always uses scale 1.
    pub fn train_scale(self) -> f32 {
        match self {
            HeadKind::SoftMax => 1.0,
            HeadKind::IsoMax | HeadKind::IsoMaxPlus | HeadKind::DisMax => 10.0,
        }
    }

    /// Divisor of the normalized distance (`div` of [`normalized_distances`]); `None` for
    /// heads that do not normalize.
    pub fn distance_divisor(self) -> Option<f32> {
        match self {
            HeadKind::IsoMaxPlus => Some(1.0),
            HeadKind::DisMax => Some(std::f32::consts::SQRT_2),
            HeadKind::SoftMax | HeadKind::IsoMax => None,
        }
    }
}

/// PyTorch `F.normalize` epsilon: norms are clamped to at least this before dividing.
pub const NORMALIZE_EPS: f64 = 1e-12;

fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn check_len(name: &str, v: &[impl Sized], want: usize) {
    assert_eq!(
        v.len(),
        want,
        "{name} has {} elements, expected {want}",
        v.len()
    );
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// SoftMax head logits z = f Wᵀ + bias, with `w` C×D.
pub fn linear_logits(f: &[f32], w: &[f32], bias: &[f32], b: usize, d: usize, c: usize) -> Vec<f32> {
    check_len("f", f, b * d);
    check_len("w", w, c * d);
    check_len("bias", bias, c);
    let mut z = Vec::with_capacity(b * c);
    for fi in f.chunks_exact(d) {
        for (wj, &bj) in w.chunks_exact(d).zip(bias) {
            let dot: f64 = fi
                .iter()
                .zip(wj)
                .map(|(&x, &y)| f64::from(x) * f64::from(y))
                .sum();
            z.push((dot + f64::from(bj)) as f32);
        }
    }
    z
}

/// Euclidean (not squared) distances d_ij = ‖f_i − p_j‖, B×C.
///
/// Summed over the direct differences: the expanded ‖f‖² − 2f·p + ‖p‖² cancels
/// catastrophically when f ≈ p, which is exactly where zero-initialized prototypes start.
pub fn distances(f: &[f32], p: &[f32], b: usize, d: usize, c: usize) -> Vec<f32> {
    to_f32(&distances_f64(&to_f64(f), &to_f64(p), b, d, c))
}

/// f64 core of [`distances`].
pub fn distances_f64(f: &[f64], p: &[f64], b: usize, d: usize, c: usize) -> Vec<f64> {
    check_len("f", f, b * d);
    check_len("p", p, c * d);
    let mut dist = Vec::with_capacity(b * c);
    for fi in f.chunks_exact(d.max(1)).take(b) {
        for pj in p.chunks_exact(d.max(1)).take(c) {
            let sq: f64 = fi.iter().zip(pj).map(|(x, y)| (x - y) * (x - y)).sum();
            dist.push(sq.sqrt());
        }
    }
    dist.resize(b * c, 0.0);
    dist
}

/// Gradients of [`distances`] given `grad_d` (B×C): returns (grad_f B×D, grad_p C×D).
///
/// Uses the saved forward `dist`, as the GPU kernel does. Where d = 0 the gradient is 0
/// (the subgradient), so zero prototypes meeting an all-zero feature never give NaN.
pub fn distances_backward(
    f: &[f32],
    p: &[f32],
    dist: &[f32],
    grad_d: &[f32],
    b: usize,
    d: usize,
    c: usize,
) -> (Vec<f32>, Vec<f32>) {
    let (gf, gp) = distances_backward_f64(
        &to_f64(f),
        &to_f64(p),
        &to_f64(dist),
        &to_f64(grad_d),
        b,
        d,
        c,
    );
    (to_f32(&gf), to_f32(&gp))
}

/// f64 core of [`distances_backward`].
pub fn distances_backward_f64(
    f: &[f64],
    p: &[f64],
    dist: &[f64],
    grad_d: &[f64],
    b: usize,
    d: usize,
    c: usize,
) -> (Vec<f64>, Vec<f64>) {
    check_len("f", f, b * d);
    check_len("p", p, c * d);
    check_len("dist", dist, b * c);
    check_len("grad_d", grad_d, b * c);
    let mut gf = vec![0.0; b * d];
    let mut gp = vec![0.0; c * d];
    for i in 0..b {
        for j in 0..c {
            let dij = dist[i * c + j];
            if dij == 0.0 {
                continue;
            }
            let w = grad_d[i * c + j] / dij;
            for k in 0..d {
                let g = w * (f[i * d + k] - p[j * d + k]);
                gf[i * d + k] += g;
                gp[j * d + k] -= g;
            }
        }
    }
    (gf, gp)
}

/// Rows divided by max(‖row‖, eps), with the clamped norms kept for the backward pass.
fn normalize_rows(x: &[f64], rows: usize, d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut out = Vec::with_capacity(rows * d);
    let mut norms = Vec::with_capacity(rows);
    for r in 0..rows {
        let row = &x[r * d..(r + 1) * d];
        let n = norm(row);
        norms.push(n);
        let denom = n.max(NORMALIZE_EPS);
        out.extend(row.iter().map(|v| v / denom));
    }
    (out, norms)
}

/// Backward of [`normalize_rows`]: `g` is the gradient wrt the normalized rows `u`, whose
/// unclamped norms are `norms`. Below eps the denominator is the constant eps (clamp_min
/// passes no gradient there); above it, the projection (g − u(u·g)) / ‖x‖.
fn normalize_rows_backward(u: &[f64], norms: &[f64], g: &[f64], d: usize) -> Vec<f64> {
    let mut out = vec![0.0; u.len()];
    if d == 0 {
        return out;
    }
    let rows = out
        .chunks_exact_mut(d)
        .zip(u.chunks_exact(d))
        .zip(g.chunks_exact(d));
    for (((out, u), g), &n) in rows.zip(norms) {
        if n >= NORMALIZE_EPS {
            let ug: f64 = u.iter().zip(g).map(|(a, b)| a * b).sum();
            for ((o, &uk), &gk) in out.iter_mut().zip(u).zip(g) {
                *o = (gk - uk * ug) / n;
            }
        } else {
            for (o, &gk) in out.iter_mut().zip(g) {
                *o = gk / NORMALIZE_EPS;
            }
        }
    }
    out
}

/// Normalized distances of IsoMax+ / DisMax: d_ij = |s|·‖n(f_i) − n(p_j)‖ / div with
/// n(v) = v / max(‖v‖, 1e-12) (PyTorch `F.normalize`). `div` is 1 for IsoMax+ and √2 for
/// DisMax ([`HeadKind::distance_divisor`]).
pub fn normalized_distances(
    f: &[f32],
    p: &[f32],
    s: f32,
    b: usize,
    d: usize,
    c: usize,
    div: f32,
) -> Vec<f32> {
    let dist = normalized_distances_f64(
        &to_f64(f),
        &to_f64(p),
        f64::from(s),
        b,
        d,
        c,
        f64::from(div),
    );
    to_f32(&dist)
}

/// f64 core of [`normalized_distances`].
pub fn normalized_distances_f64(
    f: &[f64],
    p: &[f64],
    s: f64,
    b: usize,
    d: usize,
    c: usize,
    div: f64,
) -> Vec<f64> {
    check_len("f", f, b * d);
    check_len("p", p, c * d);
    let (u, _) = normalize_rows(f, b, d);
    let (v, _) = normalize_rows(p, c, d);
    let mut dist = distances_f64(&u, &v, b, d, c);
    let scale = s.abs() / div;
    dist.iter_mut().for_each(|x| *x *= scale);
    dist
}

/// Gradients of [`normalized_distances`]: (grad_f B×D, grad_p C×D, grad_s).
///
/// Zero where n(f_i) = n(p_j) (subgradient); d|s|/ds is taken as 0 at s = 0 like
/// PyTorch's `abs`.
#[allow(clippy::too_many_arguments)] // mirrors the forward's shape arguments plus grad_d
pub fn normalized_distances_backward(
    f: &[f32],
    p: &[f32],
    s: f32,
    grad_d: &[f32],
    b: usize,
    d: usize,
    c: usize,
    div: f32,
) -> (Vec<f32>, Vec<f32>, f32) {
    let (gf, gp, gs) = normalized_distances_backward_f64(
        &to_f64(f),
        &to_f64(p),
        f64::from(s),
        &to_f64(grad_d),
        b,
        d,
        c,
        f64::from(div),
    );
    (to_f32(&gf), to_f32(&gp), gs as f32)
}

/// f64 core of [`normalized_distances_backward`].
#[allow(clippy::too_many_arguments)] // mirrors the forward's shape arguments plus grad_d
pub fn normalized_distances_backward_f64(
    f: &[f64],
    p: &[f64],
    s: f64,
    grad_d: &[f64],
    b: usize,
    d: usize,
    c: usize,
    div: f64,
) -> (Vec<f64>, Vec<f64>, f64) {
    check_len("f", f, b * d);
    check_len("p", p, c * d);
    check_len("grad_d", grad_d, b * c);
    let (u, nf) = normalize_rows(f, b, d);
    let (v, np) = normalize_rows(p, c, d);
    // The unscaled distances r = ‖u − v‖; d = |s| r / div.
    let r = distances_f64(&u, &v, b, d, c);
    let scale = s.abs() / div;
    let sign = if s > 0.0 {
        1.0
    } else if s < 0.0 {
        -1.0
    } else {
        0.0
    };
    let mut grad_s = 0.0;
    // Gradients wrt the normalized rows u and v first, then through the normalization.
    let mut gu = vec![0.0; b * d];
    let mut gv = vec![0.0; c * d];
    for i in 0..b {
        for j in 0..c {
            let rij = r[i * c + j];
            let g = grad_d[i * c + j];
            grad_s += g * sign * rij / div;
            if rij == 0.0 {
                continue;
            }
            let w = g * scale / rij;
            for k in 0..d {
                let e = w * (u[i * d + k] - v[j * d + k]);
                gu[i * d + k] += e;
                gv[j * d + k] -= e;
            }
        }
    }
    let gf = normalize_rows_backward(&u, &nf, &gu, d);
    let gp = normalize_rows_backward(&v, &np, &gv, d);
    (gf, gp, grad_s)
}

/// Logits from distances (temperature 1): z = −d for IsoMax and IsoMax+,
/// z = −(d + mean_k d_k) for DisMax.
///
/// # Panics
/// For [`HeadKind::SoftMax`], which has no distances (see [`linear_logits`]).
pub fn distance_logits(kind: HeadKind, dist: &[f32], b: usize, c: usize) -> Vec<f32> {
    to_f32(&distance_logits_f64(kind, &to_f64(dist), b, c))
}

/// f64 core of [`distance_logits`].
pub fn distance_logits_f64(kind: HeadKind, dist: &[f64], b: usize, c: usize) -> Vec<f64> {
    check_len("dist", dist, b * c);
    match kind {
        HeadKind::SoftMax => panic!("the SoftMax head has no distances"),
        HeadKind::IsoMax | HeadKind::IsoMaxPlus => dist.iter().map(|x| -x).collect(),
        HeadKind::DisMax => dist
            .chunks_exact(c.max(1))
            .flat_map(|row| {
                let mean = row.iter().sum::<f64>() / c as f64;
                row.iter().map(move |x| -(x + mean))
            })
            .collect(),
    }
}

/// Gradient wrt the distances given `grad_z` (B×C), for [`distance_logits`]. For DisMax
/// every d_k also feeds each row's mean: ∂L/∂d_k = −g_k − (1/C) Σ_j g_j.
///
/// # Panics
/// For [`HeadKind::SoftMax`].
pub fn distance_logits_backward(kind: HeadKind, grad_z: &[f32], b: usize, c: usize) -> Vec<f32> {
    to_f32(&distance_logits_backward_f64(kind, &to_f64(grad_z), b, c))
}

/// f64 core of [`distance_logits_backward`].
pub fn distance_logits_backward_f64(
    kind: HeadKind,
    grad_z: &[f64],
    b: usize,
    c: usize,
) -> Vec<f64> {
    check_len("grad_z", grad_z, b * c);
    match kind {
        HeadKind::SoftMax => panic!("the SoftMax head has no distances"),
        HeadKind::IsoMax | HeadKind::IsoMaxPlus => grad_z.iter().map(|g| -g).collect(),
        HeadKind::DisMax => grad_z
            .chunks_exact(c.max(1))
            .flat_map(|row| {
                let mean = row.iter().sum::<f64>() / c as f64;
                row.iter().map(move |g| -(g + mean))
            })
            .collect(),
    }
}

/// log Σ exp(x), shifted by the maximum so large logits cannot overflow.
fn logsumexp(x: &[f64]) -> f64 {
    let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    m + x.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}

/// Entropic cross-entropy: `loss = mean_i −log softmax(scale·z_i)[y_i]`.
///
/// Returns the loss and its gradient wrt z (B×C), already divided by B:
/// scale·(softmax(scale·z) − onehot(y)) / B. Use scale E_s = 10 for the distance heads.
///
/// # Panics
/// If a label is not below `c`.
pub fn softmax_cross_entropy(
    z: &[f32],
    labels: &[u32],
    b: usize,
    c: usize,
    scale: f32,
) -> (f32, Vec<f32>) {
    let (loss, grad) = softmax_cross_entropy_f64(&to_f64(z), labels, b, c, f64::from(scale));
    (loss as f32, to_f32(&grad))
}

/// f64 core of [`softmax_cross_entropy`].
pub fn softmax_cross_entropy_f64(
    z: &[f64],
    labels: &[u32],
    b: usize,
    c: usize,
    scale: f64,
) -> (f64, Vec<f64>) {
    check_len("z", z, b * c);
    check_len("labels", labels, b);
    let mut loss = 0.0;
    let mut grad = vec![0.0; b * c];
    for (i, &y) in labels.iter().enumerate() {
        let y = y as usize;
        assert!(y < c, "label {y} of row {i} is not below {c} classes");
        let scaled: Vec<f64> = z[i * c..(i + 1) * c].iter().map(|v| scale * v).collect();
        let lse = logsumexp(&scaled);
        loss += lse - scaled[y];
        for (j, g) in grad[i * c..(i + 1) * c].iter_mut().enumerate() {
            let prob = (scaled[j] - lse).exp();
            let target = if j == y { 1.0 } else { 0.0 };
            *g = scale * (prob - target) / b as f64;
        }
    }
    (loss / b as f64, grad)
}

/// Every score of one row of logits (scale 1). Higher means more in-distribution.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RowScores {
    /// Maximum probability.
    pub mps: f32,
    /// Entropic score Σ p log p = −H(p), 0·log 0 = 0 (the paper's score).
    pub es: f32,
    /// Minimum distance score max z (= −min d for IsoMax).
    pub mds: f32,
    /// logsumexp(z).
    pub energy: f32,
    /// max z (same as `mds`; named for the SoftMax head, where z is not a distance).
    pub max_logit: f32,
    /// DisMax max-mean logit score, max z + mean z.
    pub mmls: f32,
    /// DisMax default, max z + mean z + Σ p log p.
    pub mmles: f32,
    /// argmax z (the first one on ties).
    pub prediction: u32,
}

/// Probabilities softmax(z) (B×C) and every score per row, for logits at scale 1
/// (E_s is a training-only factor). Logits are expected to be finite.
pub fn row_scores(z: &[f32], b: usize, c: usize) -> (Vec<f32>, Vec<RowScores>) {
    check_len("z", z, b * c);
    assert!(c > 0, "row_scores needs at least one class");
    let mut probs = Vec::with_capacity(b * c);
    let mut scores = Vec::with_capacity(b);
    for row in z.chunks_exact(c).take(b) {
        let row = to_f64(row);
        let lse = logsumexp(&row);
        let (mut arg, mut max) = (0, row[0]);
        for (j, &v) in row.iter().enumerate() {
            if v > max {
                (arg, max) = (j, v);
            }
        }
        let mean = row.iter().sum::<f64>() / c as f64;
        let mut es = 0.0;
        let mut mps: f64 = 0.0;
        for &v in &row {
            let log_p = v - lse;
            let prob = log_p.exp();
            // Skipping underflowed probabilities is the 0·log 0 = 0 convention.
            if prob > 0.0 {
                es += prob * log_p;
            }
            mps = mps.max(prob);
            probs.push(prob as f32);
        }
        scores.push(RowScores {
            mps: mps as f32,
            es: es as f32,
            mds: max as f32,
            energy: lse as f32,
            max_logit: max as f32,
            mmls: (max + mean) as f32,
            mmles: (max + mean + es) as f32,
            prediction: arg as u32,
        });
    }
    (probs, scores)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng, rngs::StdRng};

    fn random(rng: &mut StdRng, len: usize) -> Vec<f64> {
        (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// Central-difference gradient of a scalar function of `x`.
    fn numeric_grad(x: &[f64], mut loss: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
        let h = 1e-6;
        let mut x = x.to_vec();
        (0..x.len())
            .map(|k| {
                let orig = x[k];
                x[k] = orig + h;
                let up = loss(&x);
                x[k] = orig - h;
                let down = loss(&x);
                x[k] = orig;
                (up - down) / (2.0 * h)
            })
            .collect()
    }

    fn assert_grad_close(analytic: &[f64], numeric: &[f64], what: &str) {
        assert_eq!(analytic.len(), numeric.len());
        for (k, (a, n)) in analytic.iter().zip(numeric).enumerate() {
            assert!(
                (a - n).abs() < 1e-6 * (1.0 + n.abs()),
                "{what}[{k}]: analytic {a} vs numeric {n}"
            );
        }
    }

    /// A fixed linear functional of the distances, so every grad_d entry differs.
    fn weights(rng: &mut StdRng, len: usize) -> Vec<f64> {
        random(rng, len)
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn distances_match_definition() {
        // f = [(0,0), (3,4)], p = [(0,0), (1,1), (3,0)].
        let f = [0.0, 0.0, 3.0, 4.0];
        let p = [0.0, 0.0, 1.0, 1.0, 3.0, 0.0];
        let dist = distances(&f, &p, 2, 2, 3);
        let s2 = 2f32.sqrt();
        let want = [0.0, s2, 3.0, 5.0, 13f32.sqrt(), 4.0];
        for (g, w) in dist.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{dist:?}");
        }
    }

    #[test]
    fn distances_precise_near_prototype() {
        // The expanded form would lose this entirely in f32.
        let f = [1000.0, 1000.0];
        let p = [1000.0, 1000.001];
        let d = distances(&f, &p, 1, 2, 1)[0];
        assert!((d - 0.001).abs() < 1e-4, "{d}");
    }

    #[test]
    fn distances_gradient_finite_difference() {
        let (b, d, c) = (3, 4, 5);
        let mut rng = StdRng::seed_from_u64(1);
        let f = random(&mut rng, b * d);
        let p = random(&mut rng, c * d);
        let w = weights(&mut rng, b * c);
        let dist = distances_f64(&f, &p, b, d, c);
        let (gf, gp) = distances_backward_f64(&f, &p, &dist, &w, b, d, c);
        let nf = numeric_grad(&f, |x| dot(&w, &distances_f64(x, &p, b, d, c)));
        let np = numeric_grad(&p, |x| dot(&w, &distances_f64(&f, x, b, d, c)));
        assert_grad_close(&gf, &nf, "grad_f");
        assert_grad_close(&gp, &np, "grad_p");

        // The f32 wrapper agrees with the core.
        let f32s = |v: &[f64]| to_f32(v);
        let (gf32, _) = distances_backward(&f32s(&f), &f32s(&p), &f32s(&dist), &f32s(&w), b, d, c);
        for (a, e) in gf32.iter().zip(&gf) {
            assert!((f64::from(*a) - e).abs() < 1e-4);
        }
    }

    #[test]
    fn distances_zero_gives_zero_gradient() {
        // Zero-initialized prototypes and an all-zero (post-ReLU) feature: d = 0.
        let (b, d, c) = (2, 3, 2);
        let f = [0.0, 0.0, 0.0, 1.0, 2.0, 2.0];
        let p = [0.0; 6];
        let dist = distances(&f, &p, b, d, c);
        assert_eq!(&dist[..2], &[0.0, 0.0]);
        let grad_d = [1.0; 4];
        let (gf, gp) = distances_backward(&f, &p, &dist, &grad_d, b, d, c);
        assert!(gf.iter().chain(&gp).all(|g| g.is_finite()));
        assert_eq!(&gf[..3], &[0.0, 0.0, 0.0]);
        // Row 1 (distance 3 to each zero prototype) still gets 2·(1,2,2)/3.
        let want = [2.0 / 3.0, 4.0 / 3.0, 4.0 / 3.0];
        for (g, w) in gf[3..].iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{gf:?}");
        }
    }

    #[test]
    fn normalized_distances_match_definition() {
        // n(f) = (1,0), n(p) = (0,1): ‖n(f) − n(p)‖ = √2; with s = −2 → 2√2, DisMax → 2.
        let f = [5.0, 0.0];
        let p = [0.0, 0.5];
        let iso = normalized_distances(&f, &p, -2.0, 1, 2, 1, 1.0)[0];
        assert!((iso - 2.0 * 2f32.sqrt()).abs() < 1e-6);
        let div = HeadKind::DisMax.distance_divisor().unwrap();
        let dis = normalized_distances(&f, &p, -2.0, 1, 2, 1, div)[0];
        assert!((dis - 2.0).abs() < 1e-6);
        // A zero feature normalizes to zero (not NaN): distance |s|·‖n(p)‖ = 2.
        let zero = normalized_distances(&[0.0, 0.0], &p, 2.0, 1, 2, 1, 1.0)[0];
        assert!((zero - 2.0).abs() < 1e-6);
    }

    #[test]
    fn normalized_distances_gradient_finite_difference() {
        let (b, d, c) = (3, 4, 5);
        let mut rng = StdRng::seed_from_u64(2);
        let f = random(&mut rng, b * d);
        let p = random(&mut rng, c * d);
        let w = weights(&mut rng, b * c);
        for (s, div) in [(1.3, 1.0), (-0.7, std::f64::consts::SQRT_2)] {
            let (gf, gp, gs) = normalized_distances_backward_f64(&f, &p, s, &w, b, d, c, div);
            let loss = |f: &[f64], p: &[f64], s: f64| {
                dot(&w, &normalized_distances_f64(f, p, s, b, d, c, div))
            };
            let nf = numeric_grad(&f, |x| loss(x, &p, s));
            let np = numeric_grad(&p, |x| loss(&f, x, s));
            let ns = numeric_grad(&[s], |x| loss(&f, &p, x[0]));
            assert_grad_close(&gf, &nf, "grad_f");
            assert_grad_close(&gp, &np, "grad_p");
            assert_grad_close(&[gs], &ns, "grad_s");
        }
    }

    #[test]
    fn normalized_distances_zero_gives_zero_gradient() {
        // Row 0 is a zero feature against a zero prototype; row 1 points the same way as
        // prototype 1. Both give r = 0 and must not produce NaN.
        let (b, d, c) = (2, 2, 2);
        let f = [0.0, 0.0, 2.0, 2.0];
        let p = [0.0, 0.0, 1.0, 1.0];
        let dist = normalized_distances(&f, &p, 1.0, b, d, c, 1.0);
        assert_eq!(dist[0], 0.0);
        assert!(dist[3].abs() < 1e-6);
        let grad_d = [1.0, 0.0, 0.0, 1.0];
        let (gf, gp, gs) = normalized_distances_backward(&f, &p, 1.0, &grad_d, b, d, c, 1.0);
        assert!(gf.iter().chain(&gp).all(|g| *g == 0.0), "{gf:?} {gp:?}");
        assert_eq!(gs, 0.0);
    }

    #[test]
    fn loss_gradient_finite_difference() {
        let (b, c) = (4, 6);
        let mut rng = StdRng::seed_from_u64(3);
        let z = random(&mut rng, b * c);
        let labels = [0, 5, 2, 2];
        for scale in [1.0, 10.0] {
            let (_, grad) = softmax_cross_entropy_f64(&z, &labels, b, c, scale);
            let numeric =
                numeric_grad(&z, |x| softmax_cross_entropy_f64(x, &labels, b, c, scale).0);
            assert_grad_close(&grad, &numeric, "grad_z");
        }
    }

    #[test]
    fn loss_hand_case() {
        // Uniform logits over 4 classes: loss ln 4; gradient (¼ − 1[j=y])·scale/B.
        let z = [0.0f32; 8];
        let (loss, grad) = softmax_cross_entropy(&z, &[1, 3], 2, 4, 10.0);
        assert!((loss - 4f32.ln()).abs() < 1e-6);
        assert!((grad[0] - 10.0 * 0.25 / 2.0).abs() < 1e-6);
        assert!((grad[1] - 10.0 * -0.75 / 2.0).abs() < 1e-6);
        // Huge logits stay finite thanks to the max shift.
        let (loss, grad) = softmax_cross_entropy(&[1e4, -1e4], &[1], 1, 2, 10.0);
        assert!(loss.is_finite() && grad.iter().all(|g| g.is_finite()));
        assert!((loss - 2e5).abs() < 1.0);
    }

    /// The whole head, distances → logits → entropic loss, against finite differences.
    #[test]
    fn head_chain_finite_difference() {
        let (b, d, c) = (3, 4, 5);
        let labels = [4, 0, 2];
        let mut rng = StdRng::seed_from_u64(4);
        let f = random(&mut rng, b * d);
        let p = random(&mut rng, c * d);
        let s = 1.1;
        for kind in [HeadKind::IsoMax, HeadKind::IsoMaxPlus, HeadKind::DisMax] {
            let scale = f64::from(kind.train_scale());
            let div = kind.distance_divisor().map(f64::from);
            let dist_of = |f: &[f64], p: &[f64], s: f64| match div {
                Some(div) => normalized_distances_f64(f, p, s, b, d, c, div),
                None => distances_f64(f, p, b, d, c),
            };
            let loss = |f: &[f64], p: &[f64], s: f64| {
                let z = distance_logits_f64(kind, &dist_of(f, p, s), b, c);
                softmax_cross_entropy_f64(&z, &labels, b, c, scale).0
            };

            let dist = dist_of(&f, &p, s);
            let z = distance_logits_f64(kind, &dist, b, c);
            let (_, grad_z) = softmax_cross_entropy_f64(&z, &labels, b, c, scale);
            let grad_d = distance_logits_backward_f64(kind, &grad_z, b, c);
            let (gf, gp) = match div {
                Some(div) => {
                    let (gf, gp, gs) =
                        normalized_distances_backward_f64(&f, &p, s, &grad_d, b, d, c, div);
                    let ns = numeric_grad(&[s], |x| loss(&f, &p, x[0]));
                    assert_grad_close(&[gs], &ns, &format!("{kind:?} grad_s"));
                    (gf, gp)
                }
                None => distances_backward_f64(&f, &p, &dist, &grad_d, b, d, c),
            };
            let nf = numeric_grad(&f, |x| loss(x, &p, s));
            let np = numeric_grad(&p, |x| loss(&f, x, s));
            assert_grad_close(&gf, &nf, &format!("{kind:?} grad_f"));
            assert_grad_close(&gp, &np, &format!("{kind:?} grad_p"));
        }
    }

    #[test]
    fn dismax_logits_subtract_mean() {
        let z = distance_logits(HeadKind::DisMax, &[1.0, 2.0, 3.0], 1, 3);
        assert_eq!(z, vec![-3.0, -4.0, -5.0]);
        let z = distance_logits(HeadKind::IsoMax, &[1.0, 2.0], 1, 2);
        assert_eq!(z, vec![-1.0, -2.0]);
    }

    #[test]
    fn linear_logits_hand_case() {
        // f = (1, 2); W rows (1, 0), (0.5, -1); bias (0, 3) → z = (1, 3 − 1.5).
        let z = linear_logits(&[1.0, 2.0], &[1.0, 0.0, 0.5, -1.0], &[0.0, 3.0], 1, 2, 2);
        assert_eq!(z, vec![1.0, 1.5]);
    }

    #[test]
    fn row_scores_uniform_and_one_hot() {
        // Row 0: uniform over C = 4 → p = ¼, ES = −ln 4, energy = ln 4 + 2.
        // Row 1: one logit 1000 above the rest → p one-hot (others underflow to 0), ES 0.
        let c = 4;
        let z = [2.0, 2.0, 2.0, 2.0, -1000.0, 0.0, -1000.0, -1000.0];
        let (probs, rows) = row_scores(&z, 2, c);
        let u = &rows[0];
        assert!(probs[..4].iter().all(|&p| (p - 0.25).abs() < 1e-7));
        assert!((u.mps - 0.25).abs() < 1e-7);
        assert!((u.es + 4f32.ln()).abs() < 1e-6);
        assert_eq!((u.mds, u.max_logit), (2.0, 2.0));
        assert!((u.energy - (2.0 + 4f32.ln())).abs() < 1e-6);
        assert_eq!(u.mmls, 4.0);
        assert!((u.mmles - (4.0 - 4f32.ln())).abs() < 1e-6);
        assert_eq!(u.prediction, 0, "ties go to the first class");

        let h = &rows[1];
        assert_eq!(&probs[4..], &[0.0, 1.0, 0.0, 0.0]);
        assert_eq!(h.es, 0.0);
        assert!(!h.es.is_nan());
        assert_eq!(h.mps, 1.0);
        assert_eq!(h.prediction, 1);
        assert_eq!(h.mds, 0.0);
        assert!((h.mmls - (-750.0)).abs() < 1e-3);
    }

    #[test]
    fn row_scores_two_class_entropy() {
        // p = (¾, ¼) from z = (ln 3, 0): ES = ¾ ln ¾ + ¼ ln ¼.
        let z = [3f32.ln(), 0.0];
        let (probs, rows) = row_scores(&z, 1, 2);
        assert!((probs[0] - 0.75).abs() < 1e-6);
        let want = 0.75 * 0.75f32.ln() + 0.25 * 0.25f32.ln();
        assert!((rows[0].es - want).abs() < 1e-6);
        assert!((rows[0].energy - 4f32.ln()).abs() < 1e-6);
    }
}
