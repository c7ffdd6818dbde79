//! Training-step and inference throughput of one model as one JSON line, the isomax side of
//! `scripts/bench_vs_pytorch.sh` and `scripts/gpu_check.sh` (the PyTorch side is
//! `scripts/torch_reference.py bench` with the same arguments and inputs of the same shape).
//!
//! `cargo run --release --example bench_step -- MODEL HEAD BATCH INFER_BATCH REPS`
//! (defaults: resnet-tiny isomax 64 256 3). Tiny models take 1×28×28 inputs, the paper's
//! models 3×32×32; 10 classes; SGD-Nesterov lr 0.01. One warm-up step and one warm-up
//! inference are not timed; every timed step ends with the loss read back, every inference
//! with the logits read back.
use isomax::nn::{Arch, HeadKind, Model, ModelConfig};
use isomax::optim::{Sgd, SgdConfig};
use isomax::{Gpu, Tensor};
use std::time::Instant;

fn head(s: &str) -> isomax::Result<HeadKind> {
    Ok(match s {
        "softmax" => HeadKind::SoftMax,
        "isomax" => HeadKind::IsoMax,
        "isomaxplus" => HeadKind::IsoMaxPlus,
        "dismax" => HeadKind::DisMax,
        _ => return Err(isomax::Error::Config(format!("unknown head '{s}'"))),
    })
}

fn main() -> isomax::Result<()> {
    let t_start = Instant::now();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let num = |i: usize, d: usize| -> isomax::Result<usize> {
        arg(i, &d.to_string())
            .parse()
            .map_err(|_| isomax::Error::Config(format!("argument {} is not a number", i + 1)))
    };
    let model_name = arg(0, "resnet-tiny");
    let arch = Arch::parse(&model_name)?;
    let head_name = arg(1, "isomax");
    let head = head(&head_name)?;
    let (batch, infer_batch, reps) = (num(2, 64)?, num(3, 256)?, num(4, 3)?.max(1));
    let (c, hw) = match arch {
        Arch::ResnetTiny | Arch::DensenetTiny => (1, 28),
        _ => (3, 32),
    };
    let gpu = Gpu::new()?;
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
    let mut opt = Sgd::new(
        model.params(),
        SgdConfig {
            lr: 0.01,
            ..SgdConfig::default()
        },
    )?;
    let x = Tensor::randn(&gpu, &[batch, c, hw, hw], 0.0, 1.0, 1)?;
    let labels: Vec<f32> = (0..batch).map(|i| (i % 10) as f32).collect();
    let y = Tensor::from_slice(&gpu, &labels, &[batch])?;
    let mut step = || -> isomax::Result<f32> {
        let loss = model
            .forward(&x, true)?
            .cross_entropy(&y, head.train_scale())?;
        let grads = loss.backward()?;
        opt.step(&grads, 0.01)?;
        loss.item()
    };
    step()?;
    let first_step_s = t_start.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..reps {
        step()?;
    }
    let train_s = t.elapsed().as_secs_f64() / reps as f64;
    let mut out = serde_json::json!({
        "engine": "isomax",
        "adapter": gpu.report().name,
        "backend": gpu.report().backend,
        "model": model_name,
        "head": head_name,
        "batch": batch,
        "train_step_s": train_s,
        "train_img_s": batch as f64 / train_s,
        "first_step_s": first_step_s,
    });
    if infer_batch > 0 {
        let xi = Tensor::randn(&gpu, &[infer_batch, c, hw, hw], 0.0, 1.0, 2)?;
        gpu.no_grad(|| model.forward(&xi, false))?.to_vec()?;
        let t = Instant::now();
        for _ in 0..reps {
            gpu.no_grad(|| model.forward(&xi, false))?.to_vec()?;
        }
        let infer_s = t.elapsed().as_secs_f64() / reps as f64;
        out["infer_batch"] = infer_batch.into();
        out["infer_s"] = infer_s.into();
        out["infer_img_s"] = (infer_batch as f64 / infer_s).into();
    }
    let m = gpu.memory();
    out["peak_buffer_mib"] = (m.peak_allocated as f64 / 1048576.0).into();
    println!("{out}");
    Ok(())
}
