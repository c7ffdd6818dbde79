//! Whole-step throughput with criterion (device-synced): a training step (forward, loss,
//! backward, SGD-Nesterov) and an inference batch, for `resnet-tiny` on 1×28×28 with the
//! SoftMax and the IsoMax head. Throughput is in images, so criterion reports images/s.
//!
//! `cargo bench --bench train_step`; set `ISOMAX_BENCH_PAPER=1` to add DenseNet-BC-100 and
//! ResNet-34 on 3×32×32 (about a minute per step on a 2-core software adapter).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use isomax::nn::{Arch, HeadKind, Model, ModelConfig};
use isomax::optim::{Sgd, SgdConfig};
use isomax::{Gpu, Tensor};
use std::time::{Duration, Instant};

fn model(gpu: &Gpu, arch: Arch, head: HeadKind, c: usize, hw: usize) -> Model {
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
    Model::new(gpu, cfg, 0).unwrap()
}

#[allow(clippy::too_many_arguments)]
fn bench_train(
    c: &mut Criterion,
    gpu: &Gpu,
    name: &str,
    arch: Arch,
    head: HeadKind,
    ch: usize,
    hw: usize,
    batch: usize,
) {
    let m = model(gpu, arch, head, ch, hw);
    let mut opt = Sgd::new(m.params(), SgdConfig::default()).unwrap();
    let x = Tensor::randn(gpu, &[batch, ch, hw, hw], 0.0, 1.0, 1).unwrap();
    let labels: Vec<f32> = (0..batch).map(|i| (i % 10) as f32).collect();
    let y = Tensor::from_slice(gpu, &labels, &[batch]).unwrap();
    let mut g = c.benchmark_group("train_step");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(batch as u64));
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            gpu.sync().unwrap();
            let t = Instant::now();
            for _ in 0..iters {
                let loss = m
                    .forward(&x, true)
                    .unwrap()
                    .cross_entropy(&y, head.train_scale())
                    .unwrap();
                let grads = loss.backward().unwrap();
                opt.step(&grads, 0.01).unwrap();
                gpu.flush();
            }
            gpu.sync().unwrap();
            t.elapsed()
        })
    });
    g.finish();
}

fn bench_infer(c: &mut Criterion, gpu: &Gpu, name: &str, head: HeadKind, batch: usize) {
    let m = model(gpu, Arch::ResnetTiny, head, 1, 28);
    let x = Tensor::randn(gpu, &[batch, 1, 28, 28], 0.0, 1.0, 2).unwrap();
    let mut g = c.benchmark_group("inference");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(batch as u64));
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            gpu.sync().unwrap();
            let t = Instant::now();
            for _ in 0..iters {
                drop(gpu.no_grad(|| m.forward(&x, false)).unwrap());
                gpu.flush();
            }
            gpu.sync().unwrap();
            t.elapsed()
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let gpu = Gpu::new().expect("adapter");
    eprintln!("adapter: {} ({})", gpu.report().name, gpu.report().backend);
    for (head, tag) in [(HeadKind::SoftMax, "softmax"), (HeadKind::IsoMax, "isomax")] {
        bench_train(
            c,
            &gpu,
            &format!("resnet_tiny_{tag}_b64"),
            Arch::ResnetTiny,
            head,
            1,
            28,
            64,
        );
        bench_infer(c, &gpu, &format!("resnet_tiny_{tag}_b256"), head, 256);
    }
    if std::env::var("ISOMAX_BENCH_PAPER").is_ok() {
        bench_train(
            c,
            &gpu,
            "densenet100_isomax_b64",
            Arch::Densenet100,
            HeadKind::IsoMax,
            3,
            32,
            64,
        );
        bench_train(
            c,
            &gpu,
            "resnet34_isomax_b64",
            Arch::Resnet34,
            HeadKind::IsoMax,
            3,
            32,
            64,
        );
    }
    let m = gpu.memory();
    eprintln!(
        "peak GPU buffer memory: {:.1} MiB",
        m.peak_allocated as f64 / 1048576.0
    );
}

// No plots: criterion's plotters backend needs system fonts that headless machines lack.
criterion_group! {
    name = train;
    config = Criterion::default().without_plots();
    targets = benches
}
criterion_main!(train);
