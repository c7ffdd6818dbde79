//! Quick GFLOP/s probe of the matmul kernel (the criterion benchmark is the reference).
//!
//! `cargo run --release --example kernel_speed [plain ROWS COLS WORKGROUP | subgroup ROWS COLS]`
//! tries one tiling; without arguments the adapter's default. `REPS` sets the repetitions;
//! `PROFILE=1` adds a per-kernel time breakdown.
use isomax::ops::matmul::MatmulConfig;
use isomax::{Gpu, Tensor};
use std::time::Instant;

fn main() -> isomax::Result<()> {
    let gpu = Gpu::new()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| -> u32 { args.get(i).and_then(|a| a.parse().ok()).unwrap_or(1) };
    let cfg = match args.first().map(String::as_str) {
        Some("plain") => MatmulConfig::Plain {
            rows: num(1),
            cols: num(2),
            workgroup: num(3),
        },
        Some("subgroup") => MatmulConfig::Subgroup {
            rows: num(1),
            cols: num(2),
        },
        _ => MatmulConfig::for_gpu(&gpu),
    };
    let reps: usize = std::env::var("REPS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    println!("{} — {cfg:?}", gpu.report().name);
    for n in [512usize, 1024] {
        let a = Tensor::randn(&gpu, &[n, n], 0.0, 1.0, 1)?;
        let b = Tensor::randn(&gpu, &[n, n], 0.0, 1.0, 2)?;
        gpu.no_grad(|| a.matmul_with(&b, false, false, cfg))?;
        gpu.sync()?;
        let t = Instant::now();
        for _ in 0..reps {
            gpu.no_grad(|| a.matmul_with(&b, false, false, cfg))?;
        }
        gpu.sync()?;
        let s = t.elapsed().as_secs_f64() / reps as f64;
        println!(
            "matmul {n}: {:.2} GFLOP/s",
            2.0 * (n * n * n) as f64 / s / 1e9
        );
        if std::env::var_os("PROFILE").is_some() {
            gpu.start_profiling()?;
            gpu.no_grad(|| a.matmul_with(&b, false, false, cfg))?;
            print!("{}", gpu.stop_profiling()?);
        }
    }
    Ok(())
}
