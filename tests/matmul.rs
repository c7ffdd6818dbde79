//! Matmul (all transpose combinations) and linear against the CPU reference and finite
//! differences, on shapes that do not divide the register tile.
mod common;
use common::*;
use isomax::Tensor;
use isomax::ops::Tuning;
use isomax::ops::matmul::{MatmulConfig, cpu};

#[test]
fn matmul_all_transposes_match_cpu() {
    let gpu = gpu();
    for (m, k, n) in [
        (1, 1, 1),
        (1, 7, 3),
        (5, 3, 9),
        (17, 33, 13),
        (64, 65, 66),
        (3, 130, 1),
        // Row lengths that are multiples of 4 take the vec4 packing path.
        (12, 8, 20),
        (33, 16, 4),
    ] {
        let a = rand_vec(m * k, 1);
        let b = rand_vec(k * n, 2);
        let want = cpu::matmul(&a, &b, m, k, n);
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let ah = if ta {
                cpu::transpose(&a, m, k)
            } else {
                a.clone()
            };
            let bh = if tb {
                cpu::transpose(&b, k, n)
            } else {
                b.clone()
            };
            let at = Tensor::from_slice(&gpu, &ah, &(if ta { [k, m] } else { [m, k] })).unwrap();
            let bt = Tensor::from_slice(&gpu, &bh, &(if tb { [n, k] } else { [k, n] })).unwrap();
            let got = at.matmul_t(&bt, ta, tb).unwrap();
            assert_eq!(got.shape(), &[m, n]);
            assert_close(&got.to_vec().unwrap(), &want, 1e-4, 1e-5);
        }
    }
}

#[test]
fn matmul_inner_dimension_mismatch_is_an_error() {
    let gpu = gpu();
    let a = Tensor::zeros(&gpu, &[2, 3]).unwrap();
    let b = Tensor::zeros(&gpu, &[4, 5]).unwrap();
    let e = a.matmul(&b).unwrap_err().to_string();
    assert!(e.contains("[2, 3]") && e.contains("[4, 5]"), "{e}");
}

#[test]
fn linear_gradients_match_finite_differences() {
    let gpu = gpu();
    let (bsz, din, dout) = (3, 5, 4);
    let x = rand_vec(bsz * din, 3);
    let w = rand_vec(dout * din, 4);
    let bias = rand_vec(dout, 5);
    let wl = rand_vec(bsz * dout, 6);
    let host = |x: &[f32], w: &[f32], bias: &[f32]| -> f64 {
        let wt = cpu::transpose(w, dout, din);
        let y = cpu::matmul(x, &wt, bsz, din, dout);
        y.iter()
            .enumerate()
            .map(|(i, v)| (v + bias[i % dout]) as f64 * wl[i] as f64)
            .sum()
    };
    let tx = Tensor::from_slice(&gpu, &x, &[bsz, din]).unwrap();
    let tw = Tensor::from_slice(&gpu, &w, &[dout, din]).unwrap();
    let tb = Tensor::from_slice(&gpu, &bias, &[dout]).unwrap();
    for t in [&tx, &tw, &tb] {
        t.set_requires_grad(true);
    }
    let twl = Tensor::from_slice(&gpu, &wl, &[bsz, dout]).unwrap();
    let loss = tx
        .linear(&tw, Some(&tb))
        .unwrap()
        .mul(&twl)
        .unwrap()
        .sum()
        .unwrap();
    assert!((loss.item().unwrap() as f64 - host(&x, &w, &bias)).abs() < 1e-4);
    let grads = loss.backward().unwrap();
    assert_close(
        &grads.get(&tx).cloned().unwrap().to_vec().unwrap(),
        &numeric_grad(&x, 1e-3, |v| host(v, &w, &bias)),
        1e-2,
        1e-3,
    );
    assert_close(
        &grads.get(&tw).cloned().unwrap().to_vec().unwrap(),
        &numeric_grad(&w, 1e-3, |v| host(&x, v, &bias)),
        1e-2,
        1e-3,
    );
    assert_close(
        &grads.get(&tb).cloned().unwrap().to_vec().unwrap(),
        &numeric_grad(&bias, 1e-3, |v| host(&x, &w, v)),
        1e-2,
        1e-3,
    );
}

#[test]
fn matmul_gradients_with_transposes_match_cpu() {
    // loss = sum(W ⊙ op(A)·op(B)); dA, dB have closed forms checked against the CPU.
    let gpu = gpu();
    let (m, k, n) = (5, 7, 3);
    for (ta, tb) in [(true, false), (false, true), (true, true)] {
        let a = param(&gpu, &(if ta { [k, m] } else { [m, k] }), 7);
        let b = param(&gpu, &(if tb { [n, k] } else { [k, n] }), 8);
        let c = a.matmul_t(&b, ta, tb).unwrap();
        let (loss, wl) = weighted_sum(&c, 9);
        let grads = loss.backward().unwrap();
        let av = a.to_vec().unwrap();
        let bv = b.to_vec().unwrap();
        let f = |av: &[f32], bv: &[f32]| -> f64 {
            let ah = if ta {
                cpu::transpose(av, k, m)
            } else {
                av.to_vec()
            };
            let bh = if tb {
                cpu::transpose(bv, n, k)
            } else {
                bv.to_vec()
            };
            dot(&cpu::matmul(&ah, &bh, m, k, n), &wl)
        };
        assert_close(
            &grads.get(&a).cloned().unwrap().to_vec().unwrap(),
            &numeric_grad(&av, 1e-3, |v| f(v, &bv)),
            1e-2,
            1e-3,
        );
        assert_close(
            &grads.get(&b).cloned().unwrap().to_vec().unwrap(),
            &numeric_grad(&bv, 1e-3, |v| f(&av, v)),
            1e-2,
            1e-3,
        );
    }
}

#[test]
fn every_matmul_tile_variant_matches_cpu() {
    // Tile shapes are generated per adapter; each must be exact on awkward sizes, forward
    // and backward, including the subgroup variant where the adapter has subgroups.
    let gpu = gpu();
    let mut configs = vec![
        MatmulConfig::Plain {
            rows: 1,
            cols: 1,
            workgroup: 1,
        },
        MatmulConfig::CPU,
        MatmulConfig::GPU,
        MatmulConfig::Plain {
            rows: 3,
            cols: 2,
            workgroup: 5,
        },
        MatmulConfig::Plain {
            rows: 16,
            cols: 1,
            workgroup: 16,
        },
    ];
    if let Some(sg) = gpu.subgroup_size() {
        configs.extend([
            MatmulConfig::CPU_SUBGROUP,
            MatmulConfig::Subgroup { rows: sg, cols: 1 },
            MatmulConfig::Subgroup {
                rows: 2 * sg,
                cols: 3,
            },
        ]);
    }
    for (m, k, n) in [(13, 9, 37), (1, 5, 1), (41, 70, 9), (9, 12, 40)] {
        let a = rand_vec(m * k, 21);
        let b = rand_vec(k * n, 22);
        let g = rand_vec(m * n, 23);
        let want = cpu::matmul(&a, &b, m, k, n);
        // d/dA sum(g ∘ AB) = g Bᵀ, d/dB = Aᵀ g
        let want_da = cpu::matmul(&g, &cpu::transpose(&b, k, n), m, n, k);
        let want_db = cpu::matmul(&cpu::transpose(&a, m, k), &g, k, m, n);
        for cfg in &configs {
            let at = Tensor::from_slice(&gpu, &a, &[m, k]).unwrap();
            let bt = Tensor::from_slice(&gpu, &b, &[k, n]).unwrap();
            at.set_requires_grad(true);
            bt.set_requires_grad(true);
            let c = at.matmul_with(&bt, false, false, *cfg).unwrap();
            let gt = Tensor::from_slice(&gpu, &g, &[m, n]).unwrap();
            let grads = c.mul(&gt).unwrap().sum().unwrap().backward().unwrap();
            let what = format!("{cfg:?} at ({m},{k},{n})");
            let close = |got: Vec<f32>, want: &[f32], part: &str| {
                for (i, (x, y)) in got.iter().zip(want).enumerate() {
                    assert!(
                        (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                        "{what} {part}[{i}]: {x} vs {y}"
                    );
                }
            };
            close(c.to_vec().unwrap(), &want, "C");
            close(
                grads.get(&at).cloned().unwrap().to_vec().unwrap(),
                &want_da,
                "dA",
            );
            close(
                grads.get(&bt).cloned().unwrap().to_vec().unwrap(),
                &want_db,
                "dB",
            );
        }
    }
}

#[test]
fn a_subgroup_tile_without_subgroups_is_an_error() {
    let gpu = isomax::Gpu::with_options(&isomax::GpuOptions {
        portable_limits: true,
        no_subgroups: true,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(gpu.subgroup_size(), None);
    assert_eq!(
        MatmulConfig::for_gpu(&gpu),
        if gpu.is_cpu() {
            MatmulConfig::CPU
        } else {
            MatmulConfig::GPU
        }
    );
    let a = Tensor::from_slice(&gpu, &[1.0; 4], &[2, 2]).unwrap();
    let e = a
        .matmul_with(&a, false, false, MatmulConfig::CPU_SUBGROUP)
        .unwrap_err()
        .to_string();
    assert!(e.contains("subgroup"), "{e}");
}

/// The presets a device can run: subgroup ones only with subgroups dividing the tile.
fn runnable(gpu: &isomax::Gpu) -> Vec<(Tuning, MatmulConfig)> {
    MatmulConfig::PRESETS
        .into_iter()
        .filter(|(t, _)| {
            *t != Tuning::CpuSubgroup || gpu.subgroup_size().is_some_and(|s| 32 % s == 0)
        })
        .collect()
}

#[test]
fn every_preset_matches_cpu_with_transposes() {
    // Every configuration `MatmulConfig::for_gpu` can pick on any adapter (the real-GPU one
    // included), forced through the config: forward and both gradients, all transposes,
    // sizes that are not multiples of any tile (and a K longer than one shared-memory step).
    let gpu = gpu();
    let presets = runnable(&gpu);
    assert!(presets.iter().any(|p| p.0 == Tuning::Gpu));
    for (m, k, n) in [(1, 1, 1), (13, 9, 37), (1, 5, 1), (67, 35, 71), (5, 130, 3)] {
        let (a, b, g) = (
            rand_vec(m * k, 31),
            rand_vec(k * n, 32),
            rand_vec(m * n, 33),
        );
        let want = cpu::matmul(&a, &b, m, k, n);
        let want_da = cpu::matmul(&g, &cpu::transpose(&b, k, n), m, n, k);
        let want_db = cpu::matmul(&cpu::transpose(&a, m, k), &g, k, m, n);
        for (tuning, cfg) in &presets {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let what = format!("{tuning:?} {cfg:?} ({m},{k},{n}) trans {ta} {tb}");
                let (av, ash) = if ta {
                    (cpu::transpose(&a, m, k), [k, m])
                } else {
                    (a.clone(), [m, k])
                };
                let (bv, bsh) = if tb {
                    (cpu::transpose(&b, k, n), [n, k])
                } else {
                    (b.clone(), [k, n])
                };
                let at = Tensor::from_slice(&gpu, &av, &ash).unwrap();
                let bt = Tensor::from_slice(&gpu, &bv, &bsh).unwrap();
                at.set_requires_grad(true);
                bt.set_requires_grad(true);
                let c = at.matmul_with(&bt, ta, tb, *cfg).unwrap();
                let gt = Tensor::from_slice(&gpu, &g, &[m, n]).unwrap();
                let grads = c.mul(&gt).unwrap().sum().unwrap().backward().unwrap();
                let close = |got: Vec<f32>, want: &[f32], part: &str| {
                    assert_eq!(got.len(), want.len(), "{what} {part}");
                    for (i, (x, y)) in got.iter().zip(want).enumerate() {
                        assert!(
                            (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                            "{what} {part}[{i}]: {x} vs {y}"
                        );
                    }
                };
                close(c.to_vec().unwrap(), &want, "C");
                let da = grads.get(&at).unwrap().to_vec().unwrap();
                let db = grads.get(&bt).unwrap().to_vec().unwrap();
                close(
                    if ta { cpu::transpose(&da, k, m) } else { da },
                    &want_da,
                    "dA",
                );
                close(
                    if tb { cpu::transpose(&db, n, k) } else { db },
                    &want_db,
                    "dB",
                );
            }
        }
    }
}
