//! DisMax's fractional probability regularization: the quadrant mix (against literal
//! expectations of the official code's `torch.roll`), the weights, and the GPU loss against
//! the plain-Rust definition and finite differences, on awkward shapes.
mod common;
use common::{assert_close, numeric_grad, rand_vec};
use isomax::Tensor;
use isomax::dismax::{cpu, fpr_loss, fpr_weights, quadrant_mix};

#[test]
fn quadrant_mix_rolls_the_second_half_like_the_official_code() {
    // 8 images of 1 channel, 4×4, image k filled with k: h = 4, n = 4.
    let (b, h, w) = (8, 4, 4);
    let mut x: Vec<f32> = (0..b).flat_map(|k| vec![k as f32; h * w]).collect();
    quadrant_mix(&mut x, b, 1, h, w).unwrap();
    let at = |k: usize, y: usize, xx: usize| x[k * h * w + y * w + xx];
    for k in 0..4 {
        assert!(
            (0..h * w).all(|i| x[k * h * w + i] == k as f32),
            "first half untouched"
        );
    }
    // torch.roll(v, r)[i] = v[(i − r) mod n]: image 4 takes bottom-left from 7, top-right
    // from 6, bottom-right from 5; image 6 from 5, 4, 7.
    for (k, tl, bl, tr, br) in [
        (4, 4., 7., 6., 5.),
        (5, 5., 4., 7., 6.),
        (6, 6., 5., 4., 7.),
        (7, 7., 6., 5., 4.),
    ] {
        assert_eq!(
            (at(k, 0, 0), at(k, 3, 1), at(k, 1, 3), at(k, 2, 2)),
            (tl, bl, tr, br),
            "image {k}"
        );
    }
    // Odd sizes: 5 images (h = 2, n = 3), 2 channels, 3×5: rows split at 1, columns at 2.
    let (b, c, h, w) = (5, 2, 3, 5);
    let orig: Vec<f32> = (0..b * c * h * w).map(|i| i as f32).collect();
    let mut x = orig.clone();
    quadrant_mix(&mut x, b, c, h, w).unwrap();
    let img = c * h * w;
    for i in 0..3usize {
        for ch in 0..c {
            for y in 0..h {
                for xx in 0..w {
                    let roll = match (y >= 1, xx >= 2) {
                        (false, false) => 0,
                        (true, false) => 1,
                        (false, true) => 2,
                        (true, true) => 3,
                    };
                    let from = 2 + (i as i64 - roll).rem_euclid(3) as usize;
                    let off = ch * h * w + y * w + xx;
                    assert_eq!(x[(2 + i) * img + off], orig[from * img + off]);
                }
            }
        }
    }
    assert_eq!(&x[..2 * img], &orig[..2 * img]);
    assert!(quadrant_mix(&mut [0.0; 4], 1, 1, 2, 2).is_err(), "batch 1");
    assert!(
        quadrant_mix(&mut [0.0; 7], 2, 1, 2, 2).is_err(),
        "wrong length"
    );
}

#[test]
fn fpr_weights_sum_to_the_two_halves_and_hold_quarter_targets() {
    let labels = [0u32, 2, 1, 1, 0, 3, 2];
    let c = 4;
    let (a, k) = fpr_weights(&labels, c).unwrap();
    let (h, n) = (3, 4);
    // First half: one-hot / (2h); second half: t / (2n) with t = ¼ Σ onehot(rolled labels).
    for i in 0..h {
        for j in 0..c {
            let want = if j == labels[i] as usize {
                1.0 / 6.0
            } else {
                0.0
            };
            assert!((a[i * c + j] - want).abs() < 1e-7);
        }
    }
    // Row h (i = 0) mixes labels[3], labels[6], labels[5], labels[4] = 1, 2, 3, 0.
    for j in 0..c {
        assert!(
            (a[h * c + j] - 0.25 / 8.0).abs() < 1e-7,
            "{:?}",
            &a[h * c..]
        );
    }
    let total: f32 = a.iter().sum();
    assert!((total - 1.0).abs() < 1e-6, "½ + ½: {total}");
    let want_k: f64 = (0..n)
        .map(|i| {
            let mut t = [0.0f64; 4];
            for r in 0..4i64 {
                t[labels[h + (i as i64 - r).rem_euclid(n as i64) as usize] as usize] += 0.25;
            }
            t.iter()
                .filter(|v| **v > 0.0)
                .map(|v| v * v.ln())
                .sum::<f64>()
                / (2 * n) as f64
        })
        .sum();
    assert!((k as f64 - want_k).abs() < 1e-6, "{k} vs {want_k}");
    assert!(fpr_weights(&[0], 2).is_err());
    assert!(fpr_weights(&[0, 5], 2).is_err());
}

#[test]
fn fpr_loss_matches_the_definition_and_finite_differences() {
    let gpu = common::gpu();
    for (b, c, scale, seed) in [
        (2, 3, 10.0, 1u64),
        (5, 3, 10.0, 2),
        (7, 10, 1.0, 3),
        (9, 5, 3.0, 4),
    ] {
        let z = rand_vec(b * c, seed);
        let labels: Vec<u32> = (0..b)
            .map(|i| ((i * 7 + seed as usize) % c) as u32)
            .collect();
        let (a, k) = fpr_weights(&labels, c).unwrap();
        let zt = Tensor::from_slice(&gpu, &z, &[b, c]).unwrap();
        zt.set_requires_grad(true);
        let at = Tensor::from_slice(&gpu, &a, &[b, c]).unwrap();
        let loss = fpr_loss(&zt, &at, k, scale).unwrap();
        let reference = |z: &[f32]| {
            let z64: Vec<f64> = z.iter().map(|v| *v as f64).collect();
            cpu::fpr_loss(&z64, &labels, c, scale as f64)
        };
        let want = reference(&z);
        let got = loss.item().unwrap();
        assert!(
            (got as f64 - want).abs() <= 1e-5 + 1e-5 * want.abs(),
            "B={b} C={c}: {got} vs {want}"
        );
        let grads = loss.backward().unwrap();
        let g = grads.get(&zt).unwrap().to_vec().unwrap();
        let eps = if scale > 5.0 { 1e-3 } else { 1e-2 };
        let num = numeric_grad(&z, eps, reference);
        assert_close(&g, &num, 2e-2, 2e-3);
    }
}
