//! Batch norm: training forward, running averages, eval mode, gradients.
mod common;
use common::*;
use isomax::Tensor;
use isomax::ops::batchnorm::{BatchNormStats, cpu};
use isomax::ops::with_tuning;

fn stats_tensors(gpu: &isomax::Gpu, c: usize) -> (Tensor, Tensor) {
    (
        Tensor::zeros(gpu, &[c]).unwrap(),
        Tensor::ones(gpu, &[c]).unwrap(),
    )
}

#[test]
fn training_forward_and_running_stats_match_cpu() {
    // Under every tuning: the real-GPU split reductions and the CPU adapters' kernels.
    let gpu = gpu();
    for tuning in tunings(&gpu) {
        with_tuning(tuning, || forward_case(&gpu));
    }
}

fn forward_case(gpu: &isomax::Gpu) {
    for (n, c, h, w) in [
        (1, 1, 1, 2),
        (2, 3, 5, 7),
        (4, 17, 3, 3),
        (3, 2, 1, 1),
        (1, 65, 9, 11),
        // H·W a multiple of 4: the vec4 kernels.
        (2, 3, 4, 4),
        (3, 5, 1, 8),
        // Several samples per split of the real-GPU reductions, the last split partial.
        (40, 65, 1, 2),
        (43, 70, 2, 2),
    ] {
        let hw = h * w;
        let x: Vec<f32> = rand_vec(n * c * hw, 1)
            .iter()
            .map(|v| v * 3.0 + 0.7)
            .collect();
        let (gamma, beta) = (rand_vec(c, 2), rand_vec(c, 3));
        let tx = Tensor::from_slice(gpu, &x, &[n, c, h, w]).unwrap();
        let tg = Tensor::from_slice(gpu, &gamma, &[c]).unwrap();
        let tb = Tensor::from_slice(gpu, &beta, &[c]).unwrap();
        let (rm, rv) = stats_tensors(gpu, c);
        let st = BatchNormStats {
            running_mean: &rm,
            running_var: &rv,
            momentum: 0.1,
            eps: 1e-5,
        };
        let y = tx.batch_norm(&tg, &tb, &st, true).unwrap();
        let (want, mean, var) = cpu::batch_norm(&x, &gamma, &beta, n, c, hw, 1e-5);
        assert_close(&y.to_vec().unwrap(), &want, 1e-4, 1e-4);
        let m = (n * hw) as f32;
        let want_rm: Vec<f32> = mean.iter().map(|v| 0.1 * v).collect();
        let want_rv: Vec<f32> = var.iter().map(|v| 0.9 + 0.1 * v * m / (m - 1.0)).collect();
        assert_close(&rm.to_vec().unwrap(), &want_rm, 1e-4, 1e-5);
        assert_close(&rv.to_vec().unwrap(), &want_rv, 1e-4, 1e-5);
    }
}

#[test]
fn eval_mode_uses_running_statistics() {
    let gpu = gpu();
    let (n, c, hw) = (2, 3, 4);
    let x = rand_vec(n * c * hw, 4);
    let tx = Tensor::from_slice(&gpu, &x, &[n, c, 2, 2]).unwrap();
    let rm = Tensor::from_slice(&gpu, &[0.5, -1.0, 2.0], &[3]).unwrap();
    let rv = Tensor::from_slice(&gpu, &[4.0, 0.25, 1.0], &[3]).unwrap();
    let tg = Tensor::from_slice(&gpu, &[1.0, 2.0, 3.0], &[3]).unwrap();
    let tb = Tensor::from_slice(&gpu, &[0.0, 1.0, -1.0], &[3]).unwrap();
    let st = BatchNormStats {
        running_mean: &rm,
        running_var: &rv,
        momentum: 0.1,
        eps: 0.0,
    };
    let y = tx
        .batch_norm(&tg, &tb, &st, false)
        .unwrap()
        .to_vec()
        .unwrap();
    let (m, v, g, b) = (
        [0.5, -1.0, 2.0],
        [4.0f32, 0.25, 1.0],
        [1.0, 2.0, 3.0],
        [0.0, 1.0, -1.0],
    );
    let want: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(i, xv)| {
            let ch = (i / hw) % c;
            (xv - m[ch]) / v[ch].sqrt() * g[ch] + b[ch]
        })
        .collect();
    assert_close(&y, &want, 1e-5, 1e-6);
    assert_eq!(
        rm.to_vec().unwrap(),
        vec![0.5, -1.0, 2.0],
        "eval leaves running stats alone"
    );
}

#[test]
fn training_gradients_match_finite_differences() {
    // Under every tuning: the real-GPU split reductions and the CPU adapters' kernels.
    let gpu = gpu();
    for tuning in tunings(&gpu) {
        with_tuning(tuning, || gradient_case(&gpu));
    }
}

fn gradient_case(gpu: &isomax::Gpu) {
    for (n, c, h, w) in [
        (2, 3, 3, 1),
        (1, 2, 2, 3),
        (3, 1, 1, 1),
        (2, 2, 2, 2),
        (33, 40, 1, 1),
    ] {
        let hw = h * w;
        let x = rand_vec(n * c * hw, 5);
        let (gamma, beta) = (rand_vec(c, 6), rand_vec(c, 7));
        let wl = rand_vec(n * c * hw, 8);
        let host =
            |x: &[f32], g: &[f32], b: &[f32]| dot(&cpu::batch_norm(x, g, b, n, c, hw, 1e-5).0, &wl);
        let tx = Tensor::from_slice(gpu, &x, &[n, c, h, w]).unwrap();
        let tg = Tensor::from_slice(gpu, &gamma, &[c]).unwrap();
        let tb = Tensor::from_slice(gpu, &beta, &[c]).unwrap();
        for t in [&tx, &tg, &tb] {
            t.set_requires_grad(true);
        }
        let (rm, rv) = stats_tensors(gpu, c);
        let st = BatchNormStats {
            running_mean: &rm,
            running_var: &rv,
            momentum: 0.1,
            eps: 1e-5,
        };
        let twl = Tensor::from_slice(gpu, &wl, &[n, c, h, w]).unwrap();
        let grads = tx
            .batch_norm(&tg, &tb, &st, true)
            .unwrap()
            .mul(&twl)
            .unwrap()
            .sum()
            .unwrap()
            .backward()
            .unwrap();
        assert_close(
            &grads.get(&tx).cloned().unwrap().to_vec().unwrap(),
            &numeric_grad(&x, 1e-3, |v| host(v, &gamma, &beta)),
            2e-2,
            2e-3,
        );
        assert_close(
            &grads.get(&tg).cloned().unwrap().to_vec().unwrap(),
            &numeric_grad(&gamma, 1e-3, |v| host(&x, v, &beta)),
            1e-2,
            1e-3,
        );
        assert_close(
            &grads.get(&tb).cloned().unwrap().to_vec().unwrap(),
            &numeric_grad(&beta, 1e-3, |v| host(&x, &gamma, v)),
            1e-2,
            1e-3,
        );
    }
}

#[test]
fn mismatched_parameter_shape_is_an_error() {
    let gpu = gpu();
    let x = Tensor::zeros(&gpu, &[2, 3, 4, 4]).unwrap();
    let g = Tensor::ones(&gpu, &[4]).unwrap();
    let (rm, rv) = stats_tensors(&gpu, 3);
    let st = BatchNormStats {
        running_mean: &rm,
        running_var: &rv,
        momentum: 0.1,
        eps: 1e-5,
    };
    let e = x.batch_norm(&g, &rm, &st, true).unwrap_err().to_string();
    assert!(e.contains("[4]") && e.contains("[2, 3, 4, 4]"), "{e}");
}

#[test]
fn fused_prefix_bn_relu_matches_slice_then_bn_then_relu() {
    // Under every tuning: the real-GPU split reductions and the CPU adapters' kernels.
    let gpu = gpu();
    for tuning in tunings(&gpu) {
        with_tuning(tuning, || prefix_case(&gpu));
    }
}

fn prefix_case(gpu: &isomax::Gpu) {
    // The DenseNet path: normalise channels 0..3 of a 5-channel tensor in place of a copy.
    let (n, c_all, c, h, w) = (3, 5, 3, 4, 3);
    for training in [true, false] {
        let x = param(gpu, &[n, c_all, h, w], 11);
        let gamma = param(gpu, &[c], 12);
        let beta = param(gpu, &[c], 13);
        let (rm, rv) = stats_tensors(gpu, c);
        let st = BatchNormStats {
            running_mean: &rm,
            running_var: &rv,
            momentum: 0.1,
            eps: 1e-5,
        };
        let fused = x.batch_norm_relu(c, &gamma, &beta, &st, training).unwrap();
        let (l1, _) = weighted_sum(&fused, 14);
        let grads = l1.backward().unwrap();
        let g_fused: Vec<Vec<f32>> = [&x, &gamma, &beta]
            .iter()
            .map(|t| grads.get(t).cloned().unwrap().to_vec().unwrap())
            .collect();
        let (rm2, rv2) = stats_tensors(gpu, c);
        let st2 = BatchNormStats {
            running_mean: &rm2,
            running_var: &rv2,
            momentum: 0.1,
            eps: 1e-5,
        };
        let plain = x
            .slice_channels(0, c)
            .unwrap()
            .batch_norm(&gamma, &beta, &st2, training)
            .unwrap()
            .relu()
            .unwrap();
        assert_close(
            &fused.to_vec().unwrap(),
            &plain.to_vec().unwrap(),
            1e-5,
            1e-6,
        );
        let (l2, _) = weighted_sum(&plain, 14);
        let grads = l2.backward().unwrap();
        for (got, t) in g_fused.iter().zip([&x, &gamma, &beta]) {
            assert_close(
                got,
                &grads.get(t).cloned().unwrap().to_vec().unwrap(),
                1e-4,
                1e-5,
            );
        }
        assert_close(&rm.to_vec().unwrap(), &rm2.to_vec().unwrap(), 1e-6, 1e-7);
    }
}
