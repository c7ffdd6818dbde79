//! Kernel throughput with criterion. Each measurement records `iters` dispatches and then
//! waits for the device (`Gpu::sync`), so GPU time is really measured; throughput is set to
//! the op's FLOPs, so criterion's "elem/s" reads as FLOP/s.
//!
//! `cargo bench --bench kernels` (add `-- matmul` etc. to filter).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use isomax::ops::batchnorm::BatchNormStats;
use isomax::ops::conv::ConvConfig;
use isomax::{Gpu, Tensor};
use std::time::{Duration, Instant};

fn timed(gpu: &Gpu, iters: u64, mut f: impl FnMut()) -> Duration {
    gpu.sync().unwrap();
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    gpu.sync().unwrap();
    t.elapsed()
}

fn bench(c: &mut Criterion) {
    let gpu = Gpu::new().expect("adapter");
    eprintln!("adapter: {} ({})", gpu.report().name, gpu.report().backend);
    let mut g = c.benchmark_group("kernels");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));

    for n in [512usize, 1024] {
        let a = Tensor::randn(&gpu, &[n, n], 0.0, 1.0, 1).unwrap();
        let b = Tensor::randn(&gpu, &[n, n], 0.0, 1.0, 2).unwrap();
        g.throughput(Throughput::Elements(2 * (n * n * n) as u64));
        g.bench_function(format!("matmul_{n}"), |bch| {
            bch.iter_custom(|iters| {
                timed(&gpu, iters, || drop(gpu.no_grad(|| a.matmul(&b)).unwrap()))
            })
        });
    }

    for (name, n, c_, hw) in [("64x64x32x32", 64, 64, 32), ("16x16x28x28", 64, 16, 28)] {
        let x = Tensor::randn(&gpu, &[n, c_, hw, hw], 0.0, 1.0, 3).unwrap();
        let w = Tensor::randn(&gpu, &[c_, c_, 3, 3], 0.0, 0.1, 4).unwrap();
        let dy = Tensor::randn(&gpu, &[n, c_, hw, hw], 0.0, 1.0, 5).unwrap();
        let cfg = ConvConfig::for_gpu(&gpu);
        g.throughput(Throughput::Elements(2 * (n * c_ * hw * hw * c_ * 9) as u64));
        g.bench_function(format!("conv3x3_forward_{name}"), |bch| {
            bch.iter_custom(|iters| {
                timed(&gpu, iters, || {
                    drop(gpu.no_grad(|| x.conv2d(&w, None, 1, 1)).unwrap())
                })
            })
        });
        g.bench_function(format!("conv3x3_backward_data_{name}"), |bch| {
            bch.iter_custom(|iters| {
                timed(&gpu, iters, || {
                    drop(dy.conv2d_backward_data(&w, x.shape(), 1, 1, cfg).unwrap())
                })
            })
        });
        g.bench_function(format!("conv3x3_backward_weight_{name}"), |bch| {
            bch.iter_custom(|iters| {
                timed(&gpu, iters, || {
                    drop(dy.conv2d_backward_weight(&x, w.shape(), 1, 1, cfg).unwrap())
                })
            })
        });
    }

    // Batch norm forward + backward on [64, 64, 32, 32]; throughput counted as elements.
    let (n, c_, hw) = (64, 64, 32);
    let x = Tensor::randn(&gpu, &[n, c_, hw, hw], 0.0, 1.0, 6).unwrap();
    x.set_requires_grad(true);
    let gamma = Tensor::ones(&gpu, &[c_]).unwrap();
    gamma.set_requires_grad(true);
    let beta = Tensor::zeros(&gpu, &[c_]).unwrap();
    let (rm, rv) = (
        Tensor::zeros(&gpu, &[c_]).unwrap(),
        Tensor::ones(&gpu, &[c_]).unwrap(),
    );
    let dy = Tensor::randn(&gpu, &[n, c_, hw, hw], 0.0, 1.0, 7).unwrap();
    g.throughput(Throughput::Elements((n * c_ * hw * hw) as u64));
    g.bench_function("batchnorm_forward_backward_64x64x32x32", |bch| {
        bch.iter_custom(|iters| {
            timed(&gpu, iters, || {
                let st = BatchNormStats {
                    running_mean: &rm,
                    running_var: &rv,
                    momentum: 0.1,
                    eps: 1e-5,
                };
                let y = x.batch_norm(&gamma, &beta, &st, true).unwrap();
                drop(y.backward_with(dy.clone()).unwrap());
            })
        })
    });
    g.finish();
}

// No plots: criterion's plotters backend needs system fonts that headless machines lack.
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = bench
}
criterion_main!(benches);
