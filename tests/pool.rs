//! Max, average and global average pooling against the CPU reference and finite
//! differences, over odd sizes, kernels 2/3 and strides 1/2.
mod common;
use common::*;
use isomax::Tensor;
use isomax::ops::pool::cpu;

const SHAPES: &[[usize; 4]] = &[
    [1, 1, 5, 7],
    [2, 3, 6, 6],
    [1, 5, 9, 4],
    [3, 2, 7, 7],
    [1, 2, 4, 8],
];

#[test]
fn max_pool2d_forward_and_gradient_match_cpu() {
    let gpu = gpu();
    for (si, &s) in SHAPES.iter().enumerate() {
        for (k, st, pad) in [(2, 2, 0), (3, 2, 1), (3, 1, 0), (2, 1, 1), (3, 1, 1)] {
            let seed = (si * 100 + k * 10 + st + pad) as u64;
            let xv = rand_vec(s.iter().product(), seed);
            let x = Tensor::from_slice(&gpu, &xv, &s).unwrap();
            x.set_requires_grad(true);
            let y = x.max_pool2d(k, st, pad).unwrap();
            let (want, arg) = cpu::max_pool2d(&xv, s, k, st, pad);
            let (oh, ow) = ((s[2] + 2 * pad - k) / st + 1, (s[3] + 2 * pad - k) / st + 1);
            assert_eq!(y.shape(), &[s[0], s[1], oh, ow], "{s:?} k{k} s{st} p{pad}");
            assert_close(&y.to_vec().unwrap(), &want, 0.0, 0.0);
            let (loss, dy) = weighted_sum(&y, seed + 1);
            let grads = loss.backward().unwrap();
            let dx = cpu::max_pool2d_backward(&dy, &arg, s, oh * ow);
            assert_close(
                &grads.get(&x).cloned().unwrap().to_vec().unwrap(),
                &dx,
                1e-6,
                1e-6,
            );
        }
    }
}

#[test]
fn avg_pool2d_forward_and_gradient_match_cpu() {
    let gpu = gpu();
    for (si, &s) in SHAPES.iter().enumerate() {
        // (2, 2) and (3, 3) on [2, 3, 6, 6] and (2, 2) on [1, 2, 4, 8] tile the input
        // exactly (the tiled kernels); the rest use the gather kernels.
        for (k, st) in [(2, 2), (3, 2), (3, 1), (2, 1), (3, 3)] {
            let seed = (si * 100 + k * 10 + st) as u64;
            let xv = rand_vec(s.iter().product(), seed);
            let x = Tensor::from_slice(&gpu, &xv, &s).unwrap();
            x.set_requires_grad(true);
            let y = x.avg_pool2d(k, st).unwrap();
            assert_eq!(
                y.shape(),
                &[s[0], s[1], (s[2] - k) / st + 1, (s[3] - k) / st + 1]
            );
            assert_close(
                &y.to_vec().unwrap(),
                &cpu::avg_pool2d(&xv, s, k, st),
                1e-6,
                1e-6,
            );
            let (loss, dy) = weighted_sum(&y, seed + 1);
            let grads = loss.backward().unwrap();
            let dx = cpu::avg_pool2d_backward(&dy, s, k, st);
            assert_close(
                &grads.get(&x).cloned().unwrap().to_vec().unwrap(),
                &dx,
                1e-5,
                1e-6,
            );
        }
    }
}

#[test]
fn pool_gradients_match_finite_differences() {
    let gpu = gpu();
    let s = [2, 2, 5, 7];
    let n: usize = s.iter().product();
    let xv = rand_vec(n, 7);
    for mode in 0..3 {
        let x = Tensor::from_slice(&gpu, &xv, &s).unwrap();
        x.set_requires_grad(true);
        let f = |t: &Tensor| match mode {
            0 => t.max_pool2d(3, 2, 1).unwrap(),
            1 => t.avg_pool2d(3, 2).unwrap(),
            _ => t.global_avg_pool().unwrap(),
        };
        let y = f(&x);
        let r = rand_vec(y.numel(), 8);
        let host = |v: &[f32]| -> f64 {
            let out: Vec<f32> = match mode {
                0 => cpu::max_pool2d(v, s, 3, 2, 1).0,
                1 => cpu::avg_pool2d(v, s, 3, 2),
                _ => v.chunks(35).map(|p| p.iter().sum::<f32>() / 35.0).collect(),
            };
            dot(&out, &r)
        };
        let rt = Tensor::from_slice(&gpu, &r, y.shape()).unwrap();
        let loss = y.mul(&rt).unwrap().sum().unwrap();
        assert!(
            (loss.item().unwrap() as f64 - host(&xv)).abs() < 1e-4,
            "mode {mode}"
        );
        let grads = loss.backward().unwrap();
        // Small eps: random data has no ties closer than this, so max stays differentiable.
        let num = numeric_grad(&xv, 1e-3, host);
        assert_close(
            &grads.get(&x).cloned().unwrap().to_vec().unwrap(),
            &num,
            1e-2,
            2e-3,
        );
    }
}

#[test]
fn global_avg_pool_matches_cpu() {
    let gpu = gpu();
    let s = [3, 5, 7, 5];
    let xv = rand_vec(s.iter().product(), 3);
    let x = Tensor::from_slice(&gpu, &xv, &s).unwrap();
    let y = x.global_avg_pool().unwrap();
    assert_eq!(y.shape(), &[3, 5]);
    let want: Vec<f32> = xv
        .chunks(35)
        .map(|p| p.iter().map(|v| *v as f64).sum::<f64>() as f32 / 35.0)
        .collect();
    assert_close(&y.to_vec().unwrap(), &want, 1e-5, 1e-6);
}

#[test]
fn bad_pool_arguments_are_errors() {
    let gpu = gpu();
    let x = Tensor::zeros(&gpu, &[1, 2, 4, 4]).unwrap();
    let e = x.max_pool2d(5, 1, 0).unwrap_err().to_string();
    assert!(e.contains("[1, 2, 4, 4]") && e.contains("larger"), "{e}");
    assert!(x.max_pool2d(3, 0, 0).is_err());
    assert!(x.max_pool2d(2, 2, 2).is_err());
    assert!(x.avg_pool2d(5, 1).is_err());
    let e = Tensor::zeros(&gpu, &[2, 4, 4])
        .unwrap()
        .global_avg_pool()
        .unwrap_err()
        .to_string();
    assert!(e.contains("[2, 4, 4]"), "{e}");
}
