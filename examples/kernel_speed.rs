//! Quick GFLOP/s probe of the matmul kernel (the criterion benchmark is the reference).
use isomax::{Gpu, Tensor};
use std::time::Instant;

fn main() -> isomax::Result<()> {
    let gpu = Gpu::new()?;
    println!("{}", gpu.report().name);
    for n in [512usize, 1024] {
        let a = Tensor::randn(&gpu, &[n, n], 0.0, 1.0, 1)?;
        let b = Tensor::randn(&gpu, &[n, n], 0.0, 1.0, 2)?;
        gpu.no_grad(|| a.matmul(&b))?;
        gpu.sync()?;
        let reps = 5;
        let t = Instant::now();
        for _ in 0..reps {
            gpu.no_grad(|| a.matmul(&b))?;
        }
        gpu.sync()?;
        let s = t.elapsed().as_secs_f64() / reps as f64;
        println!(
            "matmul {n}: {:.2} GFLOP/s",
            2.0 * (n * n * n) as f64 / s / 1e9
        );
    }
    Ok(())
}
