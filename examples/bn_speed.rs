//! Per-kernel GPU times of batch norm + ReLU, forward and backward, on DenseNet-BC-100 and
//! resnet-tiny shapes (a prefix of a wider buffer, as a dense block reads it).
//!
//! `cargo run --release --example bn_speed [REPS]`
use isomax::ops::batchnorm::BatchNormStats;
use isomax::{Gpu, Tensor};

fn main() -> isomax::Result<()> {
    let gpu = Gpu::new()?;
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    println!("{} ({})", gpu.report().name, gpu.report().backend);
    // (batch, channels of the buffer, channels normalised, side)
    for (n, cs, c, side) in [
        (64, 216, 120, 32),
        (64, 48, 48, 32),
        (64, 300, 200, 16),
        (64, 342, 250, 8),
        (64, 64, 64, 7),
        (64, 32, 32, 14),
    ] {
        let x = Tensor::randn(&gpu, &[n, cs, side, side], 0.0, 1.0, 1)?;
        x.set_requires_grad(true);
        let gamma = Tensor::randn(&gpu, &[c], 1.0, 0.2, 2)?;
        let beta = Tensor::randn(&gpu, &[c], 0.0, 0.2, 3)?;
        let (rm, rv) = (Tensor::zeros(&gpu, &[c])?, Tensor::ones(&gpu, &[c])?);
        let dy = Tensor::randn(&gpu, &[n, c, side, side], 0.0, 1.0, 4)?;
        let st = BatchNormStats {
            running_mean: &rm,
            running_var: &rv,
            momentum: 0.1,
            eps: 1e-5,
        };
        let step = || -> isomax::Result<()> {
            let y = x.batch_norm_relu(c, &gamma, &beta, &st, true)?;
            drop(y.backward_with(dy.clone())?);
            Ok(())
        };
        step()?;
        gpu.sync()?;
        gpu.start_profiling()?;
        for _ in 0..reps {
            step()?;
        }
        let times = gpu.stop_profiling()?;
        println!("\n[{n}, {c} of {cs}, {side}x{side}] ×{reps}\n{times}");
    }
    Ok(())
}
