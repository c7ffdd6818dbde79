//! IsoMax heads: fused and unfused distances, the normalized variants, the softmax-entropy
//! kernel and the scores, against the CPU reference (`ood::scores`) and finite differences.
mod common;
use common::*;
use isomax::Tensor;
use isomax::ood::scores::{self as cpu, HeadKind};
use isomax::ops::isomax::{self as iso, score, unfused};

/// (B, D, C): B = 1, odd D (1, 7, 33, 342), C = 1, 3, 10, 17, ragged 4×4 tiles.
const SHAPES: [(usize, usize, usize); 10] = [
    (1, 1, 1),
    (1, 7, 3),
    (3, 33, 10),
    (5, 342, 17),
    (4, 1, 10),
    (9, 7, 1),
    (2, 342, 3),
    (17, 33, 17),
    (64, 342, 10),
    (6, 512, 100),
];

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// |got − want| ≤ rtol·|want| + rtol·max|want|: relative per element, with a floor at the
/// tensor's scale for entries that are sums with cancellation.
#[track_caller]
fn assert_rel(got: &[f32], want: &[f64], rtol: f64, what: &str) {
    assert_rel_abs(got, want, rtol, 0.0, what);
}

/// [`assert_rel`] plus an absolute tolerance, for values that are 0 by cancellation.
#[track_caller]
fn assert_rel_abs(got: &[f32], want: &[f64], rtol: f64, atol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = f64::from(g);
        assert!(
            g.is_finite() && (g - w).abs() <= rtol * (w.abs() + scale) + atol,
            "{what}[{i}]: got {g}, want {w} (scale {scale}, len {})",
            want.len()
        );
    }
}

fn read(t: &Tensor) -> Vec<f32> {
    t.to_vec().unwrap()
}

fn labels_for(b: usize, c: usize, seed: u64) -> Vec<u32> {
    rand_vec(b, seed)
        .iter()
        .map(|v| (((v + 1.0) * 0.5 * c as f32) as u32).min(c as u32 - 1))
        .collect()
}

fn label_tensor(gpu: &isomax::Gpu, labels: &[u32]) -> Tensor {
    let v: Vec<f32> = labels.iter().map(|&y| y as f32).collect();
    Tensor::from_slice(gpu, &v, &[labels.len()]).unwrap()
}

type DistFn = fn(&Tensor, &Tensor) -> isomax::Result<Tensor>;
const IMPLS: [(&str, DistFn); 2] = [
    ("fused", iso::prototype_distances),
    ("unfused", unfused::prototype_distances),
];

#[test]
fn distances_and_gradients_match_cpu() {
    let gpu = gpu();
    for (k, &(b, d, c)) in SHAPES.iter().enumerate() {
        let seed = 10 * k as u64;
        let (f, p, w) = (
            rand_vec(b * d, seed),
            rand_vec(c * d, seed + 1),
            rand_vec(b * c, seed + 2),
        );
        let want = cpu::distances_f64(&f64s(&f), &f64s(&p), b, d, c);
        let (wgf, wgp) =
            cpu::distances_backward_f64(&f64s(&f), &f64s(&p), &want, &f64s(&w), b, d, c);
        for (name, dist) in IMPLS {
            let what = format!("{name} B={b} D={d} C={c}");
            let tf = Tensor::from_slice(&gpu, &f, &[b, d]).unwrap();
            let tp = Tensor::from_slice(&gpu, &p, &[c, d]).unwrap();
            tf.set_requires_grad(true);
            tp.set_requires_grad(true);
            let out = dist(&tf, &tp).unwrap();
            assert_eq!(out.shape(), &[b, c]);
            assert_rel(&read(&out), &want, 1e-5, &format!("{what} d"));
            // loss = Σ w∘d, so grad_d = w exactly: isolates the distance backward.
            let (loss, _) = weighted_sum(&out, seed + 2);
            let grads = loss.backward().unwrap();
            assert_rel(
                &read(&grads.get(&tf).cloned().unwrap()),
                &wgf,
                1e-5,
                &format!("{what} grad_f"),
            );
            assert_rel(
                &read(&grads.get(&tp).cloned().unwrap()),
                &wgp,
                1e-5,
                &format!("{what} grad_p"),
            );
        }
    }
}

#[test]
fn zero_distance_gives_zero_gradient_not_nan() {
    let gpu = gpu();
    let (b, d, c) = (5, 33, 10);
    // The initial IsoMax state: all-zero prototypes, and an all-zero (post-ReLU) feature row.
    let mut f = rand_vec(b * d, 1);
    f[..d].fill(0.0);
    let p0 = vec![0.0; c * d];
    // A trained state where feature row 3 sits exactly on prototype 7.
    let p1 = rand_vec(c * d, 2);
    let mut f1 = f.clone();
    f1[3 * d..4 * d].copy_from_slice(&p1[7 * d..8 * d]);
    for (f, p, row, proto) in [(&f, &p0, 0, None), (&f1, &p1, 3, Some(7))] {
        let labels = labels_for(b, c, 3);
        let want = cpu::distances_f64(&f64s(f), &f64s(p), b, d, c);
        let z = cpu::distance_logits_f64(HeadKind::IsoMax, &want, b, c);
        let (_, gz) = cpu::softmax_cross_entropy_f64(&z, &labels, b, c, 10.0);
        let gd = cpu::distance_logits_backward_f64(HeadKind::IsoMax, &gz, b, c);
        let (wgf, wgp) = cpu::distances_backward_f64(&f64s(f), &f64s(p), &want, &gd, b, d, c);
        for (name, dist) in IMPLS {
            let tf = Tensor::from_slice(&gpu, f, &[b, d]).unwrap();
            let tp = Tensor::from_slice(&gpu, p, &[c, d]).unwrap();
            tf.set_requires_grad(true);
            tp.set_requires_grad(true);
            let dd = dist(&tf, &tp).unwrap();
            let out = read(&dd);
            match proto {
                None => assert!(out[..c].iter().all(|&x| x == 0.0), "{name}: {out:?}"),
                Some(j) => assert_eq!(out[row * c + j], 0.0, "{name}"),
            }
            let z = iso::logits_from_distances(&dd, false).unwrap();
            let head = iso::softmax_entropy(&z, &label_tensor(&gpu, &labels), 10.0).unwrap();
            let grads = head.loss.backward().unwrap();
            let (gf, gp) = (
                read(&grads.get(&tf).cloned().unwrap()),
                read(&grads.get(&tp).cloned().unwrap()),
            );
            assert!(
                gf.iter().chain(&gp).all(|g| g.is_finite()),
                "{name}: NaN/inf gradient"
            );
            if proto.is_none() {
                assert!(
                    gf[..d].iter().all(|&g| g == 0.0),
                    "{name}: zero row gets gradient 0"
                );
            }
            // With all prototypes equal, grad_f is 0 by cancellation (Σ_j grad_z = 0): f32
            // leaves ~1e-8 there, hence the absolute floor.
            assert_rel_abs(&gf, &wgf, 1e-4, 1e-6, &format!("{name} grad_f"));
            assert_rel_abs(&gp, &wgp, 1e-4, 1e-6, &format!("{name} grad_p"));
        }
    }
}

#[test]
fn normalized_distances_and_gradients_match_cpu() {
    let gpu = gpu();
    for (k, &(b, d, c)) in SHAPES.iter().enumerate() {
        let seed = 100 + 10 * k as u64;
        let (f, p, w) = (
            rand_vec(b * d, seed),
            rand_vec(c * d, seed + 1),
            rand_vec(b * c, seed + 2),
        );
        for (s, div) in [(1.3f32, 1.0f32), (-0.7, std::f32::consts::SQRT_2)] {
            let what = format!("B={b} D={d} C={c} s={s} div={div}");
            let want =
                cpu::normalized_distances_f64(&f64s(&f), &f64s(&p), s.into(), b, d, c, div.into());
            let (wgf, wgp, wgs) = cpu::normalized_distances_backward_f64(
                &f64s(&f),
                &f64s(&p),
                s.into(),
                &f64s(&w),
                b,
                d,
                c,
                div.into(),
            );
            let tf = Tensor::from_slice(&gpu, &f, &[b, d]).unwrap();
            let tp = Tensor::from_slice(&gpu, &p, &[c, d]).unwrap();
            let ts = Tensor::from_slice(&gpu, &[s], &[1]).unwrap();
            for t in [&tf, &tp, &ts] {
                t.set_requires_grad(true);
            }
            let out = iso::normalized_prototype_distances(&tf, &tp, &ts, div).unwrap();
            assert_rel(&read(&out), &want, 1e-5, &format!("{what} d"));
            let (loss, _) = weighted_sum(&out, seed + 2);
            let grads = loss.backward().unwrap();
            assert_rel(
                &read(&grads.get(&tf).cloned().unwrap()),
                &wgf,
                1e-5,
                &format!("{what} grad_f"),
            );
            assert_rel(
                &read(&grads.get(&tp).cloned().unwrap()),
                &wgp,
                1e-5,
                &format!("{what} grad_p"),
            );
            assert_rel(
                &read(&grads.get(&ts).cloned().unwrap()),
                &[wgs],
                1e-5,
                &format!("{what} grad_s"),
            );
        }
    }
}

#[test]
fn normalized_zero_state_is_finite_and_matches_cpu() {
    // Zero feature row against zero prototypes: the 1e-12 clamp, no NaN.
    let gpu = gpu();
    let (b, d, c) = (3, 7, 3);
    let mut f = rand_vec(b * d, 5);
    f[..d].fill(0.0);
    let p = vec![0.0; c * d];
    let w = rand_vec(b * c, 6);
    let want = cpu::normalized_distances_f64(&f64s(&f), &f64s(&p), 1.0, b, d, c, 1.0);
    let (wgf, wgp, wgs) =
        cpu::normalized_distances_backward_f64(&f64s(&f), &f64s(&p), 1.0, &f64s(&w), b, d, c, 1.0);
    let tf = Tensor::from_slice(&gpu, &f, &[b, d]).unwrap();
    let tp = Tensor::from_slice(&gpu, &p, &[c, d]).unwrap();
    let ts = Tensor::from_slice(&gpu, &[1.0], &[1]).unwrap();
    for t in [&tf, &tp, &ts] {
        t.set_requires_grad(true);
    }
    let out = iso::normalized_prototype_distances(&tf, &tp, &ts, 1.0).unwrap();
    let got = read(&out);
    assert!(got[..c].iter().all(|&x| x == 0.0));
    assert_rel(&got, &want, 1e-5, "d");
    let grads = weighted_sum(&out, 6).0.backward().unwrap();
    let gf = read(&grads.get(&tf).cloned().unwrap());
    assert!(gf[..d].iter().all(|&g| g == 0.0));
    // Against zero prototypes grad_f is the tangential part of a radial vector: 0 by
    // cancellation, which f32 leaves at ~1e-7.
    assert_rel_abs(&gf, &wgf, 1e-5, 1e-6, "grad_f");
    assert_rel(
        &read(&grads.get(&tp).cloned().unwrap()),
        &wgp,
        1e-5,
        "grad_p",
    );
    assert_rel(
        &read(&grads.get(&ts).cloned().unwrap()),
        &[wgs],
        1e-5,
        "grad_s",
    );
}

/// The f64 CPU loss of the whole head: distances → logits → entropic cross-entropy.
fn cpu_head_loss(
    kind: HeadKind,
    f: &[f64],
    p: &[f64],
    s: f64,
    labels: &[u32],
    bdc: (usize, usize, usize),
) -> f64 {
    let (b, d, c) = bdc;
    let dist = match kind.distance_divisor() {
        Some(div) => cpu::normalized_distances_f64(f, p, s, b, d, c, div.into()),
        None => cpu::distances_f64(f, p, b, d, c),
    };
    let z = cpu::distance_logits_f64(kind, &dist, b, c);
    cpu::softmax_cross_entropy_f64(&z, labels, b, c, kind.train_scale().into()).0
}

/// GPU head: (loss, grad_f, grad_p, grad_s).
#[allow(clippy::too_many_arguments)]
fn gpu_head(
    gpu: &isomax::Gpu,
    kind: HeadKind,
    fused: bool,
    f: &[f32],
    p: &[f32],
    s: f32,
    labels: &[u32],
    (b, d, c): (usize, usize, usize),
) -> (f32, Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
    let tf = Tensor::from_slice(gpu, f, &[b, d]).unwrap();
    let tp = Tensor::from_slice(gpu, p, &[c, d]).unwrap();
    let ts = Tensor::from_slice(gpu, &[s], &[1]).unwrap();
    for t in [&tf, &tp, &ts] {
        t.set_requires_grad(true);
    }
    let dist = match (kind.distance_divisor(), fused) {
        (Some(div), _) => iso::normalized_prototype_distances(&tf, &tp, &ts, div).unwrap(),
        (None, true) => iso::prototype_distances(&tf, &tp).unwrap(),
        (None, false) => unfused::prototype_distances(&tf, &tp).unwrap(),
    };
    let z = iso::logits_from_distances(&dist, kind == HeadKind::DisMax).unwrap();
    let head = iso::softmax_entropy(&z, &label_tensor(gpu, labels), kind.train_scale()).unwrap();
    let loss = head.loss.item().unwrap();
    let grads = head.loss.backward().unwrap();
    let gs = grads.get(&ts).cloned().map(|g| read(&g));
    (
        loss,
        read(&grads.get(&tf).cloned().unwrap()),
        read(&grads.get(&tp).cloned().unwrap()),
        gs,
    )
}

#[test]
fn whole_head_gradients_match_finite_differences() {
    let gpu = gpu();
    let cases = [
        (HeadKind::IsoMax, true),
        (HeadKind::IsoMax, false),
        (HeadKind::IsoMaxPlus, true),
        (HeadKind::DisMax, true),
    ];
    for &bdc in &[(3, 7, 5), (1, 33, 3), (4, 1, 10), (2, 5, 1)] {
        let (b, d, c) = bdc;
        let (f, p) = (rand_vec(b * d, 7), rand_vec(c * d, 8));
        let labels = labels_for(b, c, 9);
        let s = 1.1f32;
        for (kind, fused) in cases {
            let what = format!("{kind:?} fused={fused} {bdc:?}");
            let (loss, gf, gp, gs) = gpu_head(&gpu, kind, fused, &f, &p, s, &labels, bdc);
            let (f64f, f64p) = (f64s(&f), f64s(&p));
            let want = cpu_head_loss(kind, &f64f, &f64p, s.into(), &labels, bdc);
            assert!(
                (f64::from(loss) - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "{what}: loss {loss} vs {want}"
            );
            let eps = 1e-3;
            let nf = numeric_grad(&f, eps, |x| {
                cpu_head_loss(kind, &f64s(x), &f64p, s.into(), &labels, bdc)
            });
            let np = numeric_grad(&p, eps, |x| {
                cpu_head_loss(kind, &f64f, &f64s(x), s.into(), &labels, bdc)
            });
            assert_rel(&gf, &f64s(&nf), 1e-3, &format!("{what} grad_f"));
            assert_rel(&gp, &f64s(&np), 1e-3, &format!("{what} grad_p"));
            if kind.distance_divisor().is_some() {
                let ns = numeric_grad(&[s], eps, |x| {
                    cpu_head_loss(kind, &f64f, &f64p, x[0].into(), &labels, bdc)
                });
                assert_rel(&gs.unwrap(), &f64s(&ns), 1e-3, &format!("{what} grad_s"));
            }
        }
    }
}

#[test]
fn gpu_forward_agrees_with_gpu_backward() {
    // Finite differences of the GPU's own f32 loss (coarse eps): forward and backward kernels
    // describe the same function.
    let gpu = gpu();
    let bdc = (3, 7, 5);
    let (b, d, c) = bdc;
    let (f, p) = (rand_vec(b * d, 11), rand_vec(c * d, 12));
    let labels = labels_for(b, c, 13);
    for kind in [HeadKind::IsoMax, HeadKind::DisMax] {
        let (_, gf, gp, _) = gpu_head(&gpu, kind, true, &f, &p, 1.0, &labels, bdc);
        let loss_at =
            |f: &[f32], p: &[f32]| gpu_head(&gpu, kind, true, f, p, 1.0, &labels, bdc).0 as f64;
        let nf = numeric_grad(&f, 1e-2, |x| loss_at(x, &p));
        let np = numeric_grad(&p, 1e-2, |x| loss_at(&f, x));
        assert_close(&gf, &nf, 2e-2, 2e-3);
        assert_close(&gp, &np, 2e-2, 2e-3);
    }
}

#[test]
fn whole_head_gradients_match_cpu_analytic() {
    // Full-size shapes: the GPU head gradients vs the f64 CPU chain. Tolerance 1e-4: at
    // E_s = 10 the softmax amplifies the f32 rounding of d (~1e-7·d) tenfold.
    let gpu = gpu();
    for &bdc in &[(64, 342, 10), (17, 33, 17), (1, 342, 3), (32, 512, 100)] {
        let (b, d, c) = bdc;
        let (f, p) = (rand_vec(b * d, 21), rand_vec(c * d, 22));
        let labels = labels_for(b, c, 23);
        for kind in [HeadKind::IsoMax, HeadKind::IsoMaxPlus, HeadKind::DisMax] {
            let s = 1.1;
            let (f64f, f64p) = (f64s(&f), f64s(&p));
            let div = kind.distance_divisor();
            let dist = match div {
                Some(div) => cpu::normalized_distances_f64(&f64f, &f64p, s, b, d, c, div.into()),
                None => cpu::distances_f64(&f64f, &f64p, b, d, c),
            };
            let z = cpu::distance_logits_f64(kind, &dist, b, c);
            let (_, gz) = cpu::softmax_cross_entropy_f64(&z, &labels, b, c, 10.0);
            let gd = cpu::distance_logits_backward_f64(kind, &gz, b, c);
            let (wgf, wgp) = match div {
                Some(div) => {
                    let (gf, gp, _) = cpu::normalized_distances_backward_f64(
                        &f64f,
                        &f64p,
                        s,
                        &gd,
                        b,
                        d,
                        c,
                        div.into(),
                    );
                    (gf, gp)
                }
                None => cpu::distances_backward_f64(&f64f, &f64p, &dist, &gd, b, d, c),
            };
            for fused in [true, false] {
                if !fused && div.is_some() {
                    continue;
                }
                let what = format!("{kind:?} fused={fused} {bdc:?}");
                let (_, gf, gp, _) = gpu_head(&gpu, kind, fused, &f, &p, s as f32, &labels, bdc);
                assert_rel(&gf, &wgf, 1e-4, &format!("{what} grad_f"));
                assert_rel(&gp, &wgp, 1e-4, &format!("{what} grad_p"));
            }
        }
    }
}

#[test]
fn dismax_logits_and_gradient_match_cpu() {
    let gpu = gpu();
    for (b, c) in [(1, 1), (3, 10), (7, 17)] {
        let dist: Vec<f32> = rand_vec(b * c, 31).iter().map(|v| v.abs() * 5.0).collect();
        let w = rand_vec(b * c, 32);
        let td = Tensor::from_slice(&gpu, &dist, &[b, c]).unwrap();
        td.set_requires_grad(true);
        let z = iso::logits_from_distances(&td, true).unwrap();
        assert_rel(
            &read(&z),
            &cpu::distance_logits_f64(HeadKind::DisMax, &f64s(&dist), b, c),
            1e-6,
            "z",
        );
        let grads = weighted_sum(&z, 32).0.backward().unwrap();
        let want = cpu::distance_logits_backward_f64(HeadKind::DisMax, &f64s(&w), b, c);
        assert_rel(
            &read(&grads.get(&td).cloned().unwrap()),
            &want,
            1e-6,
            "grad_d",
        );
        let z = iso::logits_from_distances(&td, false).unwrap();
        assert_rel(
            &read(&z),
            &cpu::distance_logits_f64(HeadKind::IsoMax, &f64s(&dist), b, c),
            0.0,
            "z",
        );
    }
}

#[test]
fn scores_and_probs_match_row_scores() {
    let gpu = gpu();
    for (k, (b, c)) in [(1, 1), (1, 3), (5, 10), (33, 17), (64, 100)]
        .into_iter()
        .enumerate()
    {
        // Logits like a trained IsoMax head's: negative distances of a few units.
        let z: Vec<f32> = rand_vec(b * c, 40 + k as u64)
            .iter()
            .map(|v| 4.0 * v - 3.0)
            .collect();
        let labels = labels_for(b, c, 50);
        let tz = Tensor::from_slice(&gpu, &z, &[b, c]).unwrap();
        let head = iso::softmax_entropy(&tz, &label_tensor(&gpu, &labels), 10.0).unwrap();
        assert_eq!(head.scores.shape(), &[b, iso::SCORES_PER_ROW]);
        let (probs, rows) = cpu::row_scores(&z, b, c);
        assert_rel(&read(&head.probs), &f64s(&probs), 1e-5, "probs");
        let got = read(&head.scores);
        let col = |j: usize| -> Vec<f32> { got.chunks(8).map(|r| r[j]).collect() };
        let want = |f: fn(&cpu::RowScores) -> f32| -> Vec<f64> {
            rows.iter().map(|r| f64::from(f(r))).collect()
        };
        assert_rel(&col(score::MPS), &want(|r| r.mps), 1e-5, "mps");
        assert_rel(&col(score::ES), &want(|r| r.es), 1e-5, "es");
        assert_rel(&col(score::MDS), &want(|r| r.mds), 1e-6, "mds");
        assert_rel(&col(score::ENERGY), &want(|r| r.energy), 1e-5, "energy");
        assert_rel(
            &col(score::MAX_LOGIT),
            &want(|r| r.max_logit),
            1e-6,
            "max_logit",
        );
        assert_rel(&col(score::MMLS), &want(|r| r.mmls), 1e-5, "mmls");
        assert_rel(&col(score::MMLES), &want(|r| r.mmles), 1e-5, "mmles");
        let pred: Vec<u32> = col(score::PREDICTION).iter().map(|&v| v as u32).collect();
        assert_eq!(pred, rows.iter().map(|r| r.prediction).collect::<Vec<_>>());
    }
}

#[test]
fn one_hot_row_has_zero_entropy_not_nan() {
    let gpu = gpu();
    let z = [-1000.0f32, 0.0, -1000.0, -1000.0, 2.0, 2.0, 2.0, 2.0];
    let tz = Tensor::from_slice(&gpu, &z, &[2, 4]).unwrap();
    let head = iso::softmax_entropy(&tz, &label_tensor(&gpu, &[1, 0]), 1.0).unwrap();
    let s = read(&head.scores);
    assert_eq!(s[score::ES], 0.0);
    assert_eq!(s[score::MPS], 1.0);
    assert_eq!(s[score::PREDICTION], 1.0);
    assert_eq!(s[8 + score::PREDICTION], 0.0, "ties go to the first class");
    assert!((s[8 + score::ES] + 4f32.ln()).abs() < 1e-6);
    assert_eq!(&read(&head.probs)[..4], &[0.0, 1.0, 0.0, 0.0]);
}

#[test]
fn loss_and_gradient_at_scale_10_match_cpu() {
    let gpu = gpu();
    for (k, (b, c)) in [(1, 1), (1, 3), (5, 10), (33, 17), (128, 100)]
        .into_iter()
        .enumerate()
    {
        for scale in [1.0f32, 10.0] {
            let z: Vec<f32> = rand_vec(b * c, 60 + k as u64)
                .iter()
                .map(|v| 2.0 * v - 3.0)
                .collect();
            let labels = labels_for(b, c, 70 + k as u64);
            let (want, wgz) =
                cpu::softmax_cross_entropy_f64(&f64s(&z), &labels, b, c, scale.into());
            let tz = Tensor::from_slice(&gpu, &z, &[b, c]).unwrap();
            tz.set_requires_grad(true);
            let head = iso::softmax_entropy(&tz, &label_tensor(&gpu, &labels), scale).unwrap();
            let what = format!("B={b} C={c} scale={scale}");
            assert_rel(
                &[head.loss.item().unwrap()],
                &[want],
                1e-5,
                &format!("{what} loss"),
            );
            let grads = head.loss.scale(3.0).unwrap().backward().unwrap();
            let wgz: Vec<f64> = wgz.iter().map(|g| 3.0 * g).collect();
            assert_rel(
                &read(&grads.get(&tz).cloned().unwrap()),
                &wgz,
                1e-5,
                &format!("{what} grad_z"),
            );
        }
    }
}

#[test]
fn out_of_range_label_is_clamped_not_read_out_of_bounds() {
    let gpu = gpu();
    let z = rand_vec(6, 80);
    let tz = Tensor::from_slice(&gpu, &z, &[2, 3]).unwrap();
    let bad = iso::softmax_entropy(&tz, &label_tensor(&gpu, &[1, 1000]), 10.0).unwrap();
    let clamped = iso::softmax_entropy(&tz, &label_tensor(&gpu, &[1, 2]), 10.0).unwrap();
    assert_eq!(bad.loss.item().unwrap(), clamped.loss.item().unwrap());
}

#[test]
fn head_is_deterministic() {
    let gpu = gpu();
    let bdc = (64, 342, 10);
    let (b, d, c) = bdc;
    let (f, p) = (rand_vec(b * d, 90), rand_vec(c * d, 91));
    let labels = labels_for(b, c, 92);
    for kind in [HeadKind::IsoMax, HeadKind::DisMax] {
        let r1 = gpu_head(&gpu, kind, true, &f, &p, 1.0, &labels, bdc);
        let r2 = gpu_head(&gpu, kind, true, &f, &p, 1.0, &labels, bdc);
        assert_eq!(r1.0.to_bits(), r2.0.to_bits());
        assert!(
            r1.1.iter()
                .zip(&r2.1)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
        assert!(
            r1.2.iter()
                .zip(&r2.2)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }
}

#[test]
fn shape_errors_name_the_shapes() {
    let gpu = gpu();
    let f = Tensor::zeros(&gpu, &[4, 7]).unwrap();
    let p = Tensor::zeros(&gpu, &[3, 8]).unwrap();
    for e in [
        iso::prototype_distances(&f, &p).unwrap_err(),
        unfused::prototype_distances(&f, &p).unwrap_err(),
    ] {
        let e = e.to_string();
        assert!(e.contains("[4, 7]") && e.contains("[3, 8]"), "{e}");
    }
    let p = Tensor::zeros(&gpu, &[3, 7]).unwrap();
    let s = Tensor::zeros(&gpu, &[2]).unwrap();
    let e = iso::normalized_prototype_distances(&f, &p, &s, 1.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[2]"), "{e}");
    let z = Tensor::zeros(&gpu, &[4, 3]).unwrap();
    let y = Tensor::zeros(&gpu, &[5]).unwrap();
    let e = iso::softmax_entropy(&z, &y, 10.0).unwrap_err().to_string();
    assert!(e.contains("[5]") && e.contains("[4, 3]"), "{e}");
}

#[test]
fn sqrt_and_expand_primitives() {
    let gpu = gpu();
    // sqrt: value and gradient, with gradient 0 (not inf) at 0.
    let x = [0.0f32, 0.25, 4.0, 9.0];
    let tx = Tensor::from_slice(&gpu, &x, &[4]).unwrap();
    tx.set_requires_grad(true);
    let y = tx.sqrt().unwrap();
    assert_eq!(read(&y), vec![0.0, 0.5, 2.0, 3.0]);
    let grads = y.sum().unwrap().backward().unwrap();
    assert_eq!(
        read(&grads.get(&tx).cloned().unwrap()),
        vec![0.0, 1.0, 0.25, 1.0 / 6.0]
    );
    // expand: [2, 3] → [2, 4, 3] and [4, 2, 3]; backward sums the copies.
    let a = rand_vec(6, 95);
    let ta = Tensor::from_slice(&gpu, &a, &[2, 3]).unwrap();
    ta.set_requires_grad(true);
    let e1 = ta.expand(1, 4).unwrap();
    assert_eq!(e1.shape(), &[2, 4, 3]);
    let v = read(&e1);
    assert_eq!(&v[3..6], &a[..3]);
    assert_eq!(&v[12..15], &a[3..6]);
    let e0 = ta.expand(0, 4).unwrap();
    assert_eq!(e0.shape(), &[4, 2, 3]);
    assert_eq!(&read(&e0)[18..], &a[..]);
    let e2 = ta.expand(2, 2).unwrap();
    assert_eq!(e2.shape(), &[2, 3, 2]);
    assert_eq!(&read(&e2)[..4], &[a[0], a[0], a[1], a[1]]);
    let grads = e1
        .add(&e0.reshape(&[2, 4, 3]).unwrap())
        .unwrap()
        .sum()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(read(&grads.get(&ta).cloned().unwrap()), vec![8.0; 6]);
    assert!(ta.expand(3, 2).is_err());
}
