//! Log-softmax and cross-entropy against CPU references and finite differences.
mod common;
use common::*;
use isomax::Tensor;
use isomax::ops::loss::cpu;

#[test]
fn log_softmax_matches_cpu_and_gradient() {
    let gpu = gpu();
    for (b, c) in [(1, 1), (1, 10), (7, 3), (65, 17)] {
        let z: Vec<f32> = rand_vec(b * c, 1).iter().map(|v| v * 20.0).collect();
        let tz = Tensor::from_slice(&gpu, &z, &[b, c]).unwrap();
        tz.set_requires_grad(true);
        let y = tz.log_softmax().unwrap();
        assert_close(
            &y.to_vec().unwrap(),
            &cpu::log_softmax(&z, b, c),
            1e-5,
            1e-5,
        );
        let (loss, w) = weighted_sum(&y, 2);
        let grads = loss.backward().unwrap();
        let num = numeric_grad(&z, 1e-2, |v| dot(&cpu::log_softmax(v, b, c), &w));
        assert_close(
            &grads.get(&tz).cloned().unwrap().to_vec().unwrap(),
            &num,
            2e-2,
            2e-3,
        );
    }
}

#[test]
fn cross_entropy_with_scale_matches_cpu_and_gradient() {
    let gpu = gpu();
    for (b, c, scale) in [(1, 2, 1.0), (5, 10, 10.0), (33, 7, 1.0), (4, 1, 10.0)] {
        let z = rand_vec(b * c, 3);
        let labels: Vec<u32> = (0..b).map(|i| (i * 7 % c) as u32).collect();
        let tz = Tensor::from_slice(&gpu, &z, &[b, c]).unwrap();
        tz.set_requires_grad(true);
        let tl = Tensor::from_slice(
            &gpu,
            &labels.iter().map(|v| *v as f32).collect::<Vec<_>>(),
            &[b],
        )
        .unwrap();
        let loss = tz.cross_entropy(&tl, scale).unwrap();
        let want = cpu::cross_entropy(&z, &labels, b, c, scale);
        assert!(
            (loss.item().unwrap() as f64 - want).abs() < 1e-4 * want.abs().max(1.0),
            "b={b} c={c}"
        );
        let grads = loss.backward().unwrap();
        let num = numeric_grad(&z, 1e-3, |v| cpu::cross_entropy(v, &labels, b, c, scale));
        assert_close(
            &grads.get(&tz).cloned().unwrap().to_vec().unwrap(),
            &num,
            2e-2,
            1e-3,
        );
    }
}

#[test]
fn cross_entropy_label_shape_mismatch_is_an_error() {
    let gpu = gpu();
    let z = Tensor::zeros(&gpu, &[4, 3]).unwrap();
    let l = Tensor::zeros(&gpu, &[5]).unwrap();
    let e = z.cross_entropy(&l, 1.0).unwrap_err().to_string();
    assert!(e.contains("[5]") && e.contains("[4, 3]"), "{e}");
}
