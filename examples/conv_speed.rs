//! conv2d throughput: forward, backward data and backward weight, in GFLOP/s.
//!
//! `cargo run --release --example conv_speed [RxC ...]` — with tile arguments (e.g. `4x4 8x4`)
//! every kernel is timed with each of those tiles (`sg32x4`: a subgroup tile, for all but
//! the strided backward-data kernel) and the direct kernel off; a `d` prefix (`dsg32x1`,
//! `d8x1@16`) times the direct kernel with that tile instead (forward and backward data,
//! where the shape allows). Without arguments, the adapter's default config.
//! `CONV_SHAPE=i` times only the i-th built-in shape; `CONV_CUSTOM=N,C,H,W,OC,K,STRIDE,PAD`
//! times that shape instead.

use isomax::ops::conv::{ConvConfig, DirectTiles, Tile};
use isomax::{Gpu, Result, Tensor};
use std::time::Instant;

const REPS: usize = 5;

/// Mean and best seconds per call over `REPS` calls after a warm-up. The best is shown
/// too because the development machine's 2 cores are shared.
fn time(gpu: &Gpu, mut f: impl FnMut() -> Result<Tensor>) -> Result<(f64, f64)> {
    drop(f()?); // warm-up: pipeline compile, buffer pool
    gpu.sync()?;
    let (mut total, mut best) = (0.0, f64::INFINITY);
    for _ in 0..REPS {
        let t = Instant::now();
        let out = f()?;
        gpu.sync()?;
        let dt = t.elapsed().as_secs_f64();
        drop(out);
        total += dt;
        best = best.min(dt);
    }
    Ok((total / REPS as f64, best))
}

fn main() -> Result<()> {
    let gpu = Gpu::new()?;
    println!("{}\n", gpu.report());
    let tiles: Vec<Option<(bool, Tile)>> = {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if args.is_empty() {
            vec![None]
        } else {
            args.iter()
                .map(|a| {
                    let (direct, a) = match a.strip_prefix('d') {
                        Some(rest) => (true, rest),
                        None => (false, a.as_str()),
                    };
                    if let Some(sg) = a.strip_prefix("sg") {
                        let (r, c) = sg.split_once('x').expect("subgroup tile as sgRxC");
                        return Some((
                            direct,
                            Tile::subgroup(r.parse().unwrap(), c.parse().unwrap()),
                        ));
                    }
                    let (r, c) = a.split_once('x').expect("tile as RxC, RxC@WG or sgRxC");
                    let (c, wg) = c.split_once('@').unwrap_or((c, "64"));
                    Some((
                        direct,
                        Tile::new(r.parse().unwrap(), c.parse().unwrap(), wg.parse().unwrap()),
                    ))
                })
                .collect()
        }
    };
    println!("GFLOP/s, mean (best) of {REPS} after a warm-up; flops = 2·N·OC·OH·OW·C·KH·KW");
    println!(
        "{:<34} {:<10} {:>14} {:>14} {:>14}",
        "shape", "tile", "forward", "backward-data", "backward-wt"
    );
    // A wide 3×3, resnet-tiny's 16-channel stage, DenseNet-BC's bottleneck 1×1 and 3×3;
    // then stride 2: resnet-tiny's 3×3 and 1×1 shortcut (28 → 14, 14 → 7), ResNet-34's.
    let shapes = [
        ([64, 64, 32, 32], [64, 64, 3, 3], 1, 1),
        ([64, 16, 28, 28], [16, 16, 3, 3], 1, 1),
        ([64, 120, 32, 32], [48, 120, 1, 1], 1, 0),
        ([64, 48, 32, 32], [12, 48, 3, 3], 1, 1),
        ([64, 16, 28, 28], [32, 16, 3, 3], 2, 1),
        ([64, 16, 28, 28], [32, 16, 1, 1], 2, 0),
        ([64, 32, 14, 14], [64, 32, 3, 3], 2, 1),
        ([64, 64, 32, 32], [128, 64, 3, 3], 2, 1),
    ];
    // CONV_CUSTOM="N,C,H,W,OC,K,STRIDE,PAD": time that shape instead.
    let custom = match std::env::var("CONV_CUSTOM") {
        Ok(v) => {
            let d: Vec<usize> = v.split(',').filter_map(|s| s.trim().parse().ok()).collect();
            if d.len() != 8 {
                return Err(isomax::Error::Config(format!(
                    "CONV_CUSTOM={v:?}: expected 8 numbers N,C,H,W,OC,K,STRIDE,PAD"
                )));
            }
            Some((
                [d[0], d[1], d[2], d[3]],
                [d[4], d[1], d[5], d[5]],
                d[6],
                d[7],
            ))
        }
        Err(_) => None,
    };
    let shapes: Vec<_> = match custom {
        Some(s) => vec![s],
        None => shapes.to_vec(),
    };
    let only: Option<usize> = std::env::var("CONV_SHAPE")
        .ok()
        .and_then(|v| v.parse().ok());
    for (si, (xs, ws, stride, pad)) in shapes.into_iter().enumerate() {
        if only.is_some_and(|o| o != si) {
            continue;
        }
        let x = Tensor::uniform(&gpu, &xs, -1.0, 1.0, 1)?;
        let w = Tensor::uniform(&gpu, &ws, -1.0, 1.0, 2)?;
        let (oh, ow) = (
            (xs[2] + 2 * pad - ws[2]) / stride + 1,
            (xs[3] + 2 * pad - ws[3]) / stride + 1,
        );
        let dy = Tensor::uniform(&gpu, &[xs[0], ws[0], oh, ow], -1.0, 1.0, 3)?;
        let flops = 2.0 * (xs[0] * ws[0] * oh * ow * ws[1] * ws[2] * ws[3]) as f64;
        for tile in &tiles {
            let cfg = match *tile {
                Some((true, t)) => ConvConfig {
                    direct: Some(DirectTiles::all(t)),
                    ..ConvConfig::for_gpu(&gpu)
                },
                // The strided backward-data kernel has no subgroup variant.
                Some((false, t)) if t.subgroup => ConvConfig {
                    forward: t,
                    backward_weight: t,
                    direct: None,
                    ..ConvConfig::for_gpu(&gpu)
                },
                Some((false, t)) => ConvConfig {
                    forward: t,
                    backward_data: t,
                    backward_weight: t,
                    direct: None,
                    ..ConvConfig::for_gpu(&gpu)
                },
                None => ConvConfig::for_gpu(&gpu),
            };
            let f = gpu.no_grad(|| time(&gpu, || x.conv2d_with(&w, None, stride, pad, cfg)))?;
            let gf = |(mean, best): (f64, f64)| {
                format!("{:.2} ({:.2})", flops / mean / 1e9, flops / best / 1e9)
            };
            if std::env::var("CONV_FWD_ONLY").is_ok() {
                println!("fwd {}", gf(f));
                continue;
            }
            let d = time(&gpu, || dy.conv2d_backward_data(&w, &xs, stride, pad, cfg))?;
            let g = time(&gpu, || {
                dy.conv2d_backward_weight(&x, &ws, stride, pad, cfg)
            })?;
            let name = match tile {
                Some((d, t)) => format!(
                    "{}{}x{}@{}",
                    if *d { "d" } else { "" },
                    t.rows,
                    t.cols,
                    t.workgroup
                ),
                None => "default".into(),
            };
            println!(
                "{:<34} {:<10} {:>14} {:>14} {:>14}",
                format!("x{xs:?} w{ws:?} s{stride}"),
                name,
                gf(f),
                gf(d),
                gf(g)
            );
        }
    }
    Ok(())
}
