//! Elementwise ops, broadcasts and reductions against CPU references and finite differences.
mod common;
use common::*;
use isomax::Tensor;
use isomax::ops::{elementwise, reduce};

#[test]
fn add_sub_mul_scale_relu_match_cpu() {
    let gpu = gpu();
    // Lengths that are multiples of 4 run the vec4 kernels, the others the scalar ones.
    for (k, shape) in [
        vec![1],
        vec![7],
        vec![3, 5, 17],
        vec![257, 301],
        vec![4],
        vec![6, 10],
    ]
    .into_iter()
    .enumerate()
    {
        let n: usize = shape.iter().product();
        let (a, b) = (rand_vec(n, k as u64), rand_vec(n, 100 + k as u64));
        let ta = Tensor::from_slice(&gpu, &a, &shape).unwrap();
        let tb = Tensor::from_slice(&gpu, &b, &shape).unwrap();
        let sum: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        let diff: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
        let prod: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x * y).collect();
        let aff: Vec<f32> = a.iter().map(|x| 2.5 * x - 0.5).collect();
        assert_close(&ta.add(&tb).unwrap().to_vec().unwrap(), &sum, 1e-6, 1e-7);
        assert_close(&ta.sub(&tb).unwrap().to_vec().unwrap(), &diff, 1e-6, 1e-7);
        assert_close(&ta.mul(&tb).unwrap().to_vec().unwrap(), &prod, 1e-6, 1e-7);
        assert_close(
            &ta.affine(2.5, -0.5).unwrap().to_vec().unwrap(),
            &aff,
            1e-6,
            1e-7,
        );
        assert_close(
            &ta.relu().unwrap().to_vec().unwrap(),
            &elementwise::cpu::relu(&a),
            0.0,
            0.0,
        );
        // d/da Σ relu(a)·b = b where a > 0
        ta.set_requires_grad(true);
        let grads = ta
            .relu()
            .unwrap()
            .mul(&tb)
            .unwrap()
            .sum()
            .unwrap()
            .backward()
            .unwrap();
        let want: Vec<f32> = a
            .iter()
            .zip(&b)
            .map(|(x, y)| if *x > 0.0 { *y } else { 0.0 })
            .collect();
        assert_close(
            &grads.get(&ta).cloned().unwrap().to_vec().unwrap(),
            &want,
            1e-6,
            1e-7,
        );
    }
}

#[test]
fn large_tensor_uses_two_dimensional_dispatch() {
    // 70 000 workgroups of 256 > 65535: exercises the gid.y path (an odd length keeps the
    // one-element-per-invocation kernel).
    let gpu = gpu();
    let n = 256 * 70_000 + 1;
    let a: Vec<f32> = (0..n).map(|i| (i % 1000) as f32).collect();
    let t = Tensor::from_slice(&gpu, &a, &[n]).unwrap();
    let out = t.affine(1.0, 1.0).unwrap().to_vec().unwrap();
    assert_eq!(out[n - 1], a[n - 1] + 1.0);
    assert_eq!(out[12345], a[12345] + 1.0);
}

#[test]
fn shape_mismatch_is_an_error_naming_both_shapes() {
    let gpu = gpu();
    let a = Tensor::zeros(&gpu, &[2, 3]).unwrap();
    let b = Tensor::zeros(&gpu, &[3, 2]).unwrap();
    let e = a.add(&b).unwrap_err().to_string();
    assert!(e.contains("[2, 3]") && e.contains("[3, 2]"), "{e}");
}

#[test]
fn broadcast_and_reductions_match_cpu() {
    let gpu = gpu();
    let shape = [3, 5, 7, 2];
    let n = 3 * 5 * 7 * 2;
    let x = rand_vec(n, 1);
    let b = rand_vec(5, 2);
    let tx = Tensor::from_slice(&gpu, &x, &shape).unwrap();
    let tb = Tensor::from_slice(&gpu, &b, &[5]).unwrap();
    let got = tx.add_along(&tb, 1).unwrap().to_vec().unwrap();
    assert_close(
        &got,
        &elementwise::cpu::add_along(&x, &b, 14, 5),
        1e-6,
        1e-7,
    );
    let s = tx.sum_axes(2..4).unwrap();
    assert_eq!(s.shape(), &[3, 5]);
    assert_close(
        &s.to_vec().unwrap(),
        &reduce::cpu::sum_mid(&x, 15, 14, 1),
        1e-5,
        1e-6,
    );
    let s = tx.sum_to_axis(3, 5, 14).unwrap().to_vec().unwrap();
    assert_close(&s, &reduce::cpu::sum_keep_mid(&x, 3, 5, 14), 1e-5, 1e-6);
    let m = tx.mean().unwrap().item().unwrap();
    let want = x.iter().map(|v| *v as f64).sum::<f64>() / n as f64;
    assert!((m as f64 - want).abs() < 1e-5);
}

#[test]
fn gradients_of_elementwise_chain_match_finite_differences() {
    // loss = sum(w * relu((a * b + bias_along_axis1) * 0.5 - a)) ; check d/da, d/db, d/dbias.
    // [2, 3, 5] runs the one-element kernels, [2, 3, 4] the vec4 ones.
    let gpu = gpu();
    for inner in [5, 4] {
        chain_check(&gpu, inner);
    }
}

fn chain_check(gpu: &isomax::Gpu, inner: usize) {
    let gpu = gpu.clone();
    let shape = [2, 3, inner];
    let n = 6 * inner;
    let (a, b, bias) = (rand_vec(n, 3), rand_vec(n, 4), rand_vec(3, 5));
    let w = rand_vec(n, 6);
    let host = |a: &[f32], b: &[f32], bias: &[f32]| -> f64 {
        (0..n)
            .map(|i| {
                let v = ((a[i] * b[i] + bias[(i / inner) % 3]) * 0.5 - a[i]).max(0.0);
                v as f64 * w[i] as f64
            })
            .sum()
    };
    let ta = Tensor::from_slice(&gpu, &a, &shape).unwrap();
    let tb = Tensor::from_slice(&gpu, &b, &shape).unwrap();
    let tbias = Tensor::from_slice(&gpu, &bias, &[3]).unwrap();
    for t in [&ta, &tb, &tbias] {
        t.set_requires_grad(true);
    }
    let tw = Tensor::from_slice(&gpu, &w, &shape).unwrap();
    let y = ta
        .mul(&tb)
        .unwrap()
        .add_along(&tbias, 1)
        .unwrap()
        .scale(0.5)
        .unwrap()
        .sub(&ta)
        .unwrap()
        .relu()
        .unwrap();
    let loss = y.mul(&tw).unwrap().sum().unwrap();
    assert!((loss.item().unwrap() as f64 - host(&a, &b, &bias)).abs() < 1e-4);
    let grads = loss.backward().unwrap();
    let ga = numeric_grad(&a, 1e-3, |v| host(v, &b, &bias));
    let gb = numeric_grad(&b, 1e-3, |v| host(&a, v, &bias));
    let gbias = numeric_grad(&bias, 1e-3, |v| host(&a, &b, v));
    assert_close(
        &grads.get(&ta).cloned().unwrap().to_vec().unwrap(),
        &ga,
        1e-2,
        2e-3,
    );
    assert_close(
        &grads.get(&tb).cloned().unwrap().to_vec().unwrap(),
        &gb,
        1e-2,
        2e-3,
    );
    assert_close(
        &grads.get(&tbias).cloned().unwrap().to_vec().unwrap(),
        &gbias,
        1e-2,
        2e-3,
    );
    assert!(
        loss.backward().is_err(),
        "backward consumes the graph: a second one is an error"
    );
}

#[test]
fn gradients_accumulate_and_no_grad_records_nothing() {
    let gpu = gpu();
    let a = param(&gpu, &[4], 9);
    let mut grads = isomax::Gradients::default();
    for _ in 0..2 {
        let g = a.scale(3.0).unwrap().sum().unwrap().backward().unwrap();
        grads.accumulate(g).unwrap();
    }
    assert_close(
        &grads.get(&a).unwrap().to_vec().unwrap(),
        &[6.0; 4],
        0.0,
        0.0,
    );
    let y = gpu.no_grad(|| a.scale(2.0).unwrap().relu().unwrap());
    assert!(!y.requires_grad(), "no_grad builds no graph node");
    assert!(y.sum().unwrap().backward().is_err());
    // The mode comes back even when the closure panics.
    let caught = std::panic::catch_unwind(|| isomax::no_grad(|| panic!("boom")));
    assert!(caught.is_err());
    assert!(isomax::grad_enabled());
}

#[test]
fn sgd_nesterov_step_matches_pytorch_rule() {
    // Several parameters (updated two per dispatch, an odd one alone, one without a
    // gradient left as it is), with and without Nesterov.
    use isomax::optim::{Sgd, SgdConfig};
    let gpu = gpu();
    for nesterov in [true, false] {
        let sizes = [7, 300, 1, 5, 2, 9];
        let init: Vec<Vec<f32>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| rand_vec(n, 11 + i as u64))
            .collect();
        let params: Vec<Tensor> = init
            .iter()
            .map(|v| Tensor::from_slice(&gpu, v, &[v.len()]).unwrap())
            .collect();
        for p in &params {
            p.set_requires_grad(true);
        }
        let cfg = SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            nesterov,
            weight_decay: 0.01,
            milestones: vec![],
            gamma: 0.1,
        };
        let mut opt = Sgd::new(params.clone(), cfg).unwrap();
        let mut host: Vec<(Vec<f32>, Vec<f32>)> = init
            .iter()
            .map(|v| (v.clone(), vec![0.0f32; v.len()]))
            .collect();
        // Parameter 3 takes no part in the loss: it gets no gradient.
        let trained = [0, 1, 2, 4, 5];
        for _ in 0..3 {
            // loss = Σ sum(p²) / 2 -> grad = p
            let mut loss = params[0].mul(&params[0]).unwrap().sum().unwrap();
            for &i in &trained[1..] {
                let l = params[i].mul(&params[i]).unwrap().sum().unwrap();
                loss = loss.add(&l).unwrap();
            }
            let grads = loss.scale(0.5).unwrap().backward().unwrap();
            opt.step(&grads, 0.1).unwrap();
            for &i in &trained {
                let (p, v) = &mut host[i];
                for k in 0..p.len() {
                    let d = p[k] + 0.01 * p[k];
                    v[k] = 0.9 * v[k] + d;
                    p[k] -= 0.1 * if nesterov { d + 0.9 * v[k] } else { v[k] };
                }
            }
        }
        for (p, (want, _)) in params.iter().zip(&host) {
            assert_close(&p.to_vec().unwrap(), want, 1e-5, 1e-6);
        }
        assert_eq!(params[3].to_vec().unwrap(), init[3]);
    }
}
