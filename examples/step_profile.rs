//! Where the time goes: per-kernel GPU times of one training step (timestamp queries), plus
//! whole-step throughput and peak buffer memory.
//!
//! `cargo run --release --example step_profile -- [resnet-tiny|densenet-tiny|resnet34|densenet100] [softmax|isomax] [batch] [repetitions]`
use isomax::nn::{Arch, HeadKind, Model, ModelConfig};
use isomax::optim::{Sgd, SgdConfig};
use isomax::{Gpu, Tensor};
use std::time::Instant;

fn main() -> isomax::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arch = Arch::parse(args.get(1).map(String::as_str).unwrap_or("resnet-tiny"))?;
    let head = if args.get(2).map(String::as_str) == Some("softmax") {
        HeadKind::SoftMax
    } else {
        HeadKind::IsoMax
    };
    let batch: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(64);
    let reps: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(3);
    let (c, hw) = match arch {
        Arch::ResnetTiny | Arch::DensenetTiny => (1, 28),
        _ => (3, 32),
    };
    let t_start = Instant::now();
    let gpu = Gpu::new()?;
    println!(
        "{} ({}), {arch:?} + {head:?}, batch {batch}",
        gpu.report().name,
        gpu.report().backend
    );
    let config = ModelConfig {
        arch,
        head,
        in_channels: c,
        height: hw,
        width: hw,
        num_classes: 10,
        mean: vec![0.0; c],
        std: vec![1.0; c],
    };
    let model = Model::new(&gpu, config, 0)?;
    println!("parameters: {}", model.num_params());
    let mut opt = Sgd::new(model.params(), SgdConfig::default())?;
    let x = Tensor::randn(&gpu, &[batch, c, hw, hw], 0.0, 1.0, 1)?;
    let labels: Vec<f32> = (0..batch).map(|i| (i % 10) as f32).collect();
    let y = Tensor::from_slice(&gpu, &labels, &[batch])?;
    let step = |opt: &mut Sgd| -> isomax::Result<f32> {
        let loss = model
            .forward(&x, true)?
            .cross_entropy(&y, head.train_scale())?;
        let grads = loss.backward()?;
        opt.step(&grads, 0.01)?;
        loss.item()
    };
    step(&mut opt)?;
    println!(
        "first step done {:.2} s after start",
        t_start.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    for _ in 0..reps {
        step(&mut opt)?;
    }
    let s = t.elapsed().as_secs_f64() / reps as f64;
    println!(
        "training step: {:.3} s, {:.1} images/s",
        s,
        batch as f64 / s
    );
    let t = Instant::now();
    for _ in 0..reps {
        gpu.no_grad(|| model.forward(&x, false))?.to_vec()?;
    }
    let s = t.elapsed().as_secs_f64() / reps as f64;
    println!(
        "inference batch: {:.3} s, {:.1} images/s",
        s,
        batch as f64 / s
    );
    let m = gpu.memory();
    println!(
        "peak buffer memory: {:.1} MiB allocated, {:.1} MiB in use",
        m.peak_allocated as f64 / 1048576.0,
        m.peak_in_use as f64 / 1048576.0
    );
    if reps > 0 && gpu.start_profiling().is_ok() {
        step(&mut opt)?;
        println!(
            "\none training step, GPU time per kernel:\n{}",
            gpu.stop_profiling()?
        );
    }
    Ok(())
}
