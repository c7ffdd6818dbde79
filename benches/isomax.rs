//! Fused vs unfused IsoMax head, forward + backward: distances → logits → entropic loss →
//! backward, until the feature and prototype gradients are computed on the GPU.
//!
//! `cargo bench --bench isomax` (lavapipe by default on a machine without a GPU; force an
//! adapter with `WGPU_BACKEND`). Throughput is in rows (batch elements) per second.
//! The unfused path materializes `[B, C, D]` tensors; a shape whose intermediate exceeds
//! the device's storage binding limit is skipped (and printed), since only the fused path
//! can run it.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use isomax::ops::isomax::{self as iso, unfused};
use isomax::{Gpu, Tensor};
use std::time::{Duration, Instant};

/// (B, D, C).
const SHAPES: [(usize, usize, usize); 5] = [
    (64, 342, 10),
    (64, 342, 100),
    (128, 512, 10),
    (128, 512, 100),
    (1024, 512, 100),
];

/// One training step of the head; gradients land on `f` and `p`.
fn head_step(f: &Tensor, p: &Tensor, labels: &Tensor, fused: bool) -> isomax::Result<()> {
    let d = if fused {
        iso::prototype_distances(f, p)?
    } else {
        unfused::prototype_distances(f, p)?
    };
    let z = iso::logits_from_distances(&d, false)?;
    let head = iso::softmax_entropy(&z, labels, 10.0)?;
    head.loss.backward().map(drop)
}

fn bench_head(c: &mut Criterion) {
    let gpu = Gpu::new().expect("no adapter: install mesa-vulkan-drivers or set WGPU_BACKEND=gl");
    eprintln!("{}", gpu.report());
    let max_binding = gpu.report().max_storage_buffer_binding_size;
    let mut group = c.benchmark_group("isomax_head");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for (b, d, cl) in SHAPES {
        let f = Tensor::randn(&gpu, &[b, d], 0.0, 1.0, 1).unwrap();
        let p = Tensor::randn(&gpu, &[cl, d], 0.0, 1.0, 2).unwrap();
        f.set_requires_grad(true);
        p.set_requires_grad(true);
        let y: Vec<f32> = (0..b).map(|i| (i % cl) as f32).collect();
        let labels = Tensor::from_slice(&gpu, &y, &[b]).unwrap();
        group.throughput(Throughput::Elements(b as u64));
        for fused in [true, false] {
            let name = if fused { "fused" } else { "unfused" };
            let intermediate = (b * cl * d * 4) as u64;
            if !fused && intermediate > max_binding {
                eprintln!(
                    "isomax_head/{name}/B{b}_D{d}_C{cl}: skipped, its [B, C, D] intermediate of \
                     {intermediate} bytes exceeds the {max_binding}-byte storage binding limit"
                );
                continue;
            }
            let id = BenchmarkId::new(name, format!("B{b}_D{d}_C{cl}"));
            group.bench_function(id, |bench| {
                bench.iter_custom(|iters| {
                    gpu.sync().unwrap();
                    let start = Instant::now();
                    for _ in 0..iters {
                        head_step(&f, &p, &labels, fused).unwrap();
                        // Gradients ready: wait for the GPU every step.
                        gpu.sync().unwrap();
                    }
                    start.elapsed()
                })
            });
        }
    }
    group.finish();
}

// No plots: criterion's plotters backend needs system fonts that headless machines lack.
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = bench_head
}
criterion_main!(benches);
