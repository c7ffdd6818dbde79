//! The kernels the engine would pick on other adapters, run on this one: every [`Tuning`]
//! (the real-GPU one included) forced with `with_tuning`, for the ops whose kernels depend
//! on it without a config of their own (the IsoMax heads' workgroup size, batch norm's
//! reductions), and for whole training steps, against the CPU reference or the default.
//! The matmul and conv presets are forced through their configs in `tests/matmul.rs` and
//! `tests/conv.rs`.
mod common;
use common::*;
use isomax::nn::{Arch, HeadKind, Model, ModelConfig};
use isomax::ood::scores as cpu;
use isomax::ops::with_tuning;
use isomax::optim::{Sgd, SgdConfig};
use isomax::{Gpu, Tensor};

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

#[track_caller]
fn assert_rel(got: &[f32], want: &[f64], rtol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = f64::from(g);
        assert!(
            g.is_finite() && (g - w).abs() <= rtol * (w.abs() + scale),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

#[test]
fn isomax_distances_match_cpu_under_every_tuning() {
    let gpu = gpu();
    for tuning in tunings(&gpu) {
        with_tuning(tuning, || {
            for (k, &(b, d, c)) in [(1, 1, 1), (5, 33, 17), (70, 7, 3), (17, 342, 10)]
                .iter()
                .enumerate()
            {
                let seed = 40 + 10 * k as u64;
                let (f, p, w) = (
                    rand_vec(b * d, seed),
                    rand_vec(c * d, seed + 1),
                    rand_vec(b * c, seed + 2),
                );
                let want = cpu::distances_f64(&f64s(&f), &f64s(&p), b, d, c);
                let (wgf, wgp) =
                    cpu::distances_backward_f64(&f64s(&f), &f64s(&p), &want, &f64s(&w), b, d, c);
                let what = format!("{tuning:?} B={b} D={d} C={c}");
                let tf = Tensor::from_slice(&gpu, &f, &[b, d]).unwrap();
                let tp = Tensor::from_slice(&gpu, &p, &[c, d]).unwrap();
                tf.set_requires_grad(true);
                tp.set_requires_grad(true);
                let out = isomax::ops::isomax::prototype_distances(&tf, &tp).unwrap();
                assert_rel(&out.to_vec().unwrap(), &want, 1e-5, &format!("{what} d"));
                let (loss, _) = weighted_sum(&out, seed + 2);
                let grads = loss.backward().unwrap();
                let gf = grads.get(&tf).unwrap().to_vec().unwrap();
                let gp = grads.get(&tp).unwrap().to_vec().unwrap();
                assert_rel(&gf, &wgf, 1e-5, &format!("{what} grad_f"));
                assert_rel(&gp, &wgp, 1e-5, &format!("{what} grad_p"));
            }
        });
    }
}

/// Losses of three SGD steps and the final parameters, from the same seed.
fn train(gpu: &Gpu, arch: Arch, head: HeadKind) -> (Vec<f32>, Vec<Vec<f32>>) {
    let (c, hw, batch) = (3, 12, 5);
    let cfg = ModelConfig {
        arch,
        head,
        in_channels: c,
        height: hw,
        width: hw,
        num_classes: 10,
        mean: vec![0.0; c],
        std: vec![1.0; c],
    };
    let m = Model::new(gpu, cfg, 7).unwrap();
    let mut opt = Sgd::new(m.params(), SgdConfig::default()).unwrap();
    let x = tensor(gpu, &[batch, c, hw, hw], 3);
    let labels: Vec<f32> = (0..batch).map(|i| (i * 3 % 10) as f32).collect();
    let y = Tensor::from_slice(gpu, &labels, &[batch]).unwrap();
    let mut losses = Vec::new();
    for _ in 0..3 {
        let loss = m
            .forward(&x, true)
            .unwrap()
            .cross_entropy(&y, head.train_scale())
            .unwrap();
        let grads = loss.backward().unwrap();
        opt.step(&grads, 0.05).unwrap();
        losses.push(loss.item().unwrap());
    }
    let params = m.params().iter().map(|p| p.to_vec().unwrap()).collect();
    (losses, params)
}

#[test]
fn training_steps_agree_under_every_tuning() {
    // Every kernel a model uses (conv forward and both backward passes, batch norm, pools,
    // concatenation, the heads, SGD), in each tuning's variant: the same losses and
    // weights as the adapter's own choice, up to summation order.
    let gpu = gpu();
    for (arch, head) in [
        (Arch::ResnetTiny, HeadKind::IsoMax),
        (Arch::DensenetTiny, HeadKind::DisMax),
    ] {
        let (want_loss, want_params) = train(&gpu, arch, head);
        for tuning in tunings(&gpu) {
            let (loss, params) = with_tuning(tuning, || train(&gpu, arch, head));
            let what = format!("{arch:?} {head:?} {tuning:?}");
            for (i, (a, b)) in loss.iter().zip(&want_loss).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                    "{what}: loss of step {i}: {a} vs {b}"
                );
            }
            for (k, (p, q)) in params.iter().zip(&want_params).enumerate() {
                let scale = q.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
                let diff = p.iter().zip(q).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(
                    diff <= 1e-3 * scale,
                    "{what}: parameter {k}: max diff {diff} (scale {scale})"
                );
            }
        }
    }
}
