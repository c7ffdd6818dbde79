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
    for (n, c, h, w, offset) in [
        (1, 1, 1, 2, 0.7),
        (2, 3, 5, 7, 0.7),
        (4, 17, 3, 3, 0.7),
        (3, 2, 1, 1, 0.7),
        (1, 65, 9, 11, 0.7),
        // H·W a multiple of 4: the vec4 kernels.
        (2, 3, 4, 4, 0.7),
        (3, 5, 1, 8, 0.7),
        // Planes of at least 64 positions (vec4s), walked with constant strides.
        (2, 3, 16, 17, 0.7),
        // Several samples per split of the real-GPU reductions, the last split partial.
        (40, 65, 1, 2, 0.7),
        (43, 70, 2, 2, 0.7),
        // Planes not a multiple of 4 with channels in fours: the quad kernels (a vec4
        // spanning two channels, four, or three; chunks of samples with a remainder).
        (3, 8, 3, 3, 0.7),
        (2, 4, 1, 1, 0.7),
        (2, 8, 1, 3, 0.7),
        (3, 4, 1, 2, 0.7),
        (71, 8, 3, 3, 0.7),
        // A mean far from zero beside a small spread: E[x²] − E[x]² would cancel.
        (5, 3, 3, 5, 500.0),
        (5, 3, 4, 5, -800.0),
    ] {
        let hw = h * w;
        let x: Vec<f32> = rand_vec(n * c * hw, 1)
            .iter()
            .map(|v| v * 3.0 + offset)
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
        // vec4 planes, chunks of 8 samples with a remainder (CPU tunings).
        (35, 17, 2, 2),
        // Planes of fewer positions than a workgroup's 64 invocations (several samples
        // per pass) above, and of more: scalar, vec4.
        (2, 2, 9, 9),
        (1, 2, 16, 17),
        // Channels in fours on planes not a multiple of 4 (quad kernels), batch 1.
        (2, 4, 3, 3),
        (1, 8, 1, 3),
        (3, 4, 1, 2),
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
    // The DenseNet path: normalise channels 0..c of a c_all-channel tensor in place of a
    // copy; scalar planes, and channels in fours (quad kernels).
    for (n, c_all, c, h, w) in [(3, 5, 3, 4, 3), (2, 8, 4, 3, 3), (2, 12, 8, 1, 3)] {
        prefix_shape_case(gpu, n, c_all, c, h, w);
    }
}

fn prefix_shape_case(gpu: &isomax::Gpu, n: usize, c_all: usize, c: usize, h: usize, w: usize) {
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

#[test]
fn fused_bn_add_relu_matches_cpu_and_bn_then_add_then_relu() {
    // ResNet's block output relu(bn(x) + skip) as one op. Under every tuning; odd planes
    // (scalar kernel), planes of a multiple of 4 (vec4), batch 1; training and eval.
    let gpu = gpu();
    for tuning in tunings(&gpu) {
        for (n, c, h, w) in [
            (3, 5, 3, 3),
            (1, 4, 2, 2),
            (2, 3, 1, 5),
            (4, 2, 2, 4),
            // Channels in fours on planes not a multiple of 4 (quad kernel).
            (2, 4, 3, 3),
            (1, 8, 1, 3),
            (3, 4, 1, 1),
        ] {
            with_tuning(tuning, || add_relu_case(&gpu, n, c, h, w));
        }
    }
}

fn add_relu_case(gpu: &isomax::Gpu, n: usize, c: usize, h: usize, w: usize) {
    let hw = h * w;
    for training in [true, false] {
        let xv = rand_vec(n * c * hw, 21);
        let sv = rand_vec(n * c * hw, 22);
        let x = Tensor::from_slice(gpu, &xv, &[n, c, h, w]).unwrap();
        let skip = Tensor::from_slice(gpu, &sv, &[n, c, h, w]).unwrap();
        let gamma = param(gpu, &[c], 23);
        let beta = param(gpu, &[c], 24);
        for t in [&x, &skip] {
            t.set_requires_grad(true);
        }
        let run = |fused: bool| {
            let (rm, rv) = stats_tensors(gpu, c);
            let st = BatchNormStats {
                running_mean: &rm,
                running_var: &rv,
                momentum: 0.1,
                eps: 1e-5,
            };
            let y = if fused {
                x.batch_norm_add_relu(&skip, &gamma, &beta, &st, training)
            } else {
                x.batch_norm(&gamma, &beta, &st, training)
                    .and_then(|b| b.add(&skip))
                    .and_then(|s| s.relu())
            }
            .unwrap();
            let (loss, _) = weighted_sum(&y, 25);
            let grads = loss.backward().unwrap();
            let g: Vec<Vec<f32>> = [&x, &skip, &gamma, &beta]
                .iter()
                .map(|t| grads.get(t).cloned().unwrap().to_vec().unwrap())
                .collect();
            let running = [rm.to_vec().unwrap(), rv.to_vec().unwrap()];
            (y.to_vec().unwrap(), g, running)
        };
        let (y1, g1, r1) = run(true);
        let (y2, g2, r2) = run(false);
        // The same arithmetic in the same order: the forward is bit-exact.
        assert_eq!(y1, y2);
        for (a, b) in g1.iter().zip(&g2) {
            assert_close(a, b, 1e-5, 1e-6);
        }
        for (a, b) in r1.iter().zip(&r2) {
            assert_close(a, b, 1e-6, 1e-7);
        }
        if training {
            // CPU reference of the forward.
            let (gv, bv) = (gamma.to_vec().unwrap(), beta.to_vec().unwrap());
            let (bn, _, _) = cpu::batch_norm(&xv, &gv, &bv, n, c, hw, 1e-5);
            let want: Vec<f32> = bn.iter().zip(&sv).map(|(b, s)| (b + s).max(0.0)).collect();
            assert_close(&y1, &want, 1e-4, 1e-5);
            // The residual's gradient is the output gradient where the output is positive.
            let want: Vec<f32> = rand_vec(n * c * hw, 25)
                .iter()
                .zip(&want)
                .map(|(g, y)| if *y > 0.0 { *g } else { 0.0 })
                .collect();
            assert_close(&g1[1], &want, 1e-6, 1e-7);
        }
    }
    // A residual of another shape is an error naming the op.
    let x = Tensor::zeros(gpu, &[n, c, h, w]).unwrap();
    let bad = Tensor::zeros(gpu, &[n, c + 1, h, w]).unwrap();
    let (g, b) = stats_tensors(gpu, c);
    let st = BatchNormStats {
        running_mean: &g,
        running_var: &b,
        momentum: 0.1,
        eps: 1e-5,
    };
    let e = x
        .batch_norm_add_relu(&bad, &g, &b, &st, true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("batch_norm_add_relu"), "{e}");
}
