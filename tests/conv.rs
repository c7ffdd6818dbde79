//! conv2d forward, backward data and backward weight against the CPU reference and finite
//! differences, over awkward shapes and every tile variant.
mod common;
use common::*;
use isomax::ops::Tuning;
use isomax::ops::conv::{ConvConfig, DirectTiles, Tile, cpu};
use isomax::{Gpu, Tensor};

struct Case {
    x: [usize; 4],
    w: [usize; 4],
    stride: usize,
    pad: usize,
    bias: bool,
}

const fn case(x: [usize; 4], w: [usize; 4], stride: usize, pad: usize, bias: bool) -> Case {
    Case {
        x,
        w,
        stride,
        pad,
        bias,
    }
}

/// Shapes chosen to hit tile edges: odd channel counts, OC not divisible by the row tile,
/// widths not divisible by the column tile, strides 1/2, paddings 0/1/2, kernels 1/3/7.
const CASES: &[Case] = &[
    case([1, 3, 5, 7], [5, 3, 3, 3], 1, 1, true),
    case([2, 4, 8, 8], [3, 4, 3, 3], 2, 1, false),
    case([1, 5, 9, 6], [17, 5, 1, 1], 1, 0, true),
    case([2, 3, 11, 9], [4, 3, 7, 7], 2, 2, true),
    case([1, 2, 7, 5], [6, 2, 3, 3], 1, 2, false),
    case([3, 6, 6, 10], [9, 6, 3, 3], 2, 0, true),
    case([1, 1, 4, 4], [1, 1, 3, 3], 1, 0, false),
    case([2, 3, 9, 9], [5, 3, 7, 7], 1, 2, false),
    case([1, 4, 13, 13], [8, 4, 3, 3], 3, 1, true),
    // resnet-tiny's shapes: stride-2 3×3 and 1×1 shortcuts on even sizes, 16 channels.
    case([4, 16, 6, 6], [32, 16, 3, 3], 2, 1, false),
    case([4, 16, 6, 6], [32, 16, 1, 1], 2, 0, false),
    case([4, 16, 6, 6], [16, 16, 3, 3], 1, 1, false),
    case([4, 1, 6, 6], [16, 1, 3, 3], 1, 1, false),
    // More output channels than one 32-row subgroup tile, the last block partial.
    case([2, 3, 5, 5], [37, 3, 3, 3], 1, 1, true),
    // The direct kernel's shapes (stride 1, 3×3 padding 1 with W % 4 == 0, 1×1 with
    // H·W % 4 == 0): one quad per row, odd heights and channels, rows past a tile.
    case([2, 5, 6, 8], [9, 5, 3, 3], 1, 1, true),
    case([3, 3, 5, 4], [4, 3, 3, 3], 1, 1, false),
    case([1, 33, 4, 4], [5, 33, 3, 3], 1, 1, false),
    case([1, 7, 3, 4], [10, 7, 1, 1], 1, 0, false),
    case([2, 6, 4, 12], [37, 6, 1, 1], 1, 0, true),
    // ... and on zero-padded copies: widths 7, 14, 5 and 1 (3×3), H·W = 21 (1×1).
    case([2, 4, 7, 7], [6, 4, 3, 3], 1, 1, false),
    case([1, 3, 3, 14], [9, 3, 3, 3], 1, 1, true),
    case([3, 2, 1, 5], [3, 2, 3, 3], 1, 1, false),
    case([2, 3, 6, 1], [4, 3, 3, 3], 1, 1, false),
    case([2, 5, 3, 7], [7, 5, 1, 1], 1, 0, false),
    // The direct stride-2 kernels (3×3 padding 1, 1×1): odd sizes (the last dX row and
    // column have no odd phase), width 1, no widening (W = 16), channels past a tile.
    case([1, 3, 7, 7], [5, 3, 3, 3], 2, 1, true),
    case([2, 5, 5, 9], [7, 5, 3, 3], 2, 1, false),
    case([2, 4, 16, 16], [6, 4, 3, 3], 2, 1, false),
    case([1, 3, 2, 1], [4, 3, 3, 3], 2, 1, false),
    case([2, 37, 6, 8], [3, 37, 3, 3], 2, 1, false),
    case([2, 3, 6, 6], [37, 3, 3, 3], 2, 1, true),
    case([3, 2, 7, 5], [9, 2, 1, 1], 2, 0, false),
    case([2, 33, 8, 8], [5, 33, 1, 1], 2, 0, true),
    // Rows of 3 quads (runs of 2 quads per lane end past the row): stride 1 and 2.
    case([1, 3, 5, 12], [4, 3, 3, 3], 1, 1, false),
    case([2, 3, 4, 24], [5, 3, 3, 3], 2, 1, true),
    case([2, 5, 3, 3], [4, 5, 3, 3], 1, 1, true),
    case([2, 16, 3, 3], [4, 16, 3, 3], 1, 1, false),
    // 1×1 over a plane whose rows do not hold whole quads (H·W % 4 == 0, W % 4 != 0).
    case([2, 26, 6, 6], [16, 26, 1, 1], 1, 0, false),
    case([2, 16, 6, 6], [4, 16, 3, 3], 1, 1, false),
];

/// Runs one case with `cfg`; checks forward, dX, dW and the bias gradient against the CPU.
fn check(gpu: &Gpu, c: &Case, cfg: ConvConfig, seed: u64) {
    let (xn, wn): (usize, usize) = (c.x.iter().product(), c.w.iter().product());
    let (xv, wv, bv) = (
        rand_vec(xn, seed),
        rand_vec(wn, seed + 1),
        rand_vec(c.w[0], seed + 2),
    );
    let x = Tensor::from_slice(gpu, &xv, &c.x).unwrap();
    let w = Tensor::from_slice(gpu, &wv, &c.w).unwrap();
    let b = Tensor::from_slice(gpu, &bv, &[c.w[0]]).unwrap();
    for t in [&x, &w, &b] {
        t.set_requires_grad(true);
    }
    let y = x
        .conv2d_with(&w, c.bias.then_some(&b), c.stride, c.pad, cfg)
        .unwrap();
    let (oh, ow) = (
        cpu::out_size(c.x[2], c.w[2], c.stride, c.pad),
        cpu::out_size(c.x[3], c.w[3], c.stride, c.pad),
    );
    assert_eq!(y.shape(), &[c.x[0], c.w[0], oh, ow]);
    let mut want = cpu::conv2d(&xv, c.x, &wv, c.w, c.stride, c.pad);
    if c.bias {
        want = isomax::ops::elementwise::cpu::add_along(&want, &bv, oh * ow, c.w[0]);
    }
    let tol = (c.w[1] * c.w[2] * c.w[3]) as f32 * 2e-7;
    assert_close(&y.to_vec().unwrap(), &want, 1e-4, tol.max(1e-5));

    let (loss, dy) = weighted_sum(&y, seed + 3);
    let grads = loss.backward().unwrap();
    let dx = cpu::backward_data(&dy, &wv, c.x, c.w, c.stride, c.pad);
    let dw = cpu::backward_weight(&dy, &xv, c.x, c.w, c.stride, c.pad);
    assert_close(
        &grads.get(&x).cloned().unwrap().to_vec().unwrap(),
        &dx,
        1e-4,
        1e-4,
    );
    assert_close(
        &grads.get(&w).cloned().unwrap().to_vec().unwrap(),
        &dw,
        1e-4,
        1e-4,
    );
    if c.bias {
        let db = isomax::ops::reduce::cpu::sum_keep_mid(&dy, c.x[0], c.w[0], oh * ow);
        assert_close(
            &grads.get(&b).cloned().unwrap().to_vec().unwrap(),
            &db,
            1e-4,
            1e-4,
        );
    } else {
        assert!(grads.get(&b).cloned().is_none());
    }
}

#[test]
fn conv2d_forward_and_gradients_match_cpu() {
    let gpu = gpu();
    for (i, c) in CASES.iter().enumerate() {
        check(&gpu, c, ConvConfig::for_gpu(&gpu), 10 * i as u64);
    }
}

#[test]
fn every_tile_variant_and_split_weight_gradient_match_cpu() {
    let gpu = gpu();
    let tiles = [
        Tile::new(4, 4, 64),
        Tile::new(8, 4, 64),
        Tile::new(4, 8, 32),
        Tile::new(8, 8, 16),
        Tile::new(3, 4, 256),
        Tile::new(1, 8, 1),
    ];
    for (i, &t) in tiles.iter().enumerate() {
        let cfg = ConvConfig {
            forward: t,
            backward_data: t,
            backward_weight: t,
            weight_parallelism: if i % 2 == 0 { 0 } else { 4096 },
            direct: None,
        };
        for (j, c) in [&CASES[0], &CASES[1], &CASES[3], &CASES[8]]
            .into_iter()
            .enumerate()
        {
            check(&gpu, c, cfg, 100 + 10 * (i * 4 + j) as u64);
        }
    }
    // The subgroup kernels, where there are subgroups.
    if let Some(sg) = gpu.subgroup_size() {
        for (i, t) in [
            Tile::subgroup(32, 4),
            Tile::subgroup(sg, 3),
            Tile::subgroup(2 * sg, 1),
        ]
        .into_iter()
        .enumerate()
        {
            let cfg = ConvConfig {
                forward: t,
                backward_data: t,
                backward_weight: t,
                weight_parallelism: if i == 1 { 4096 } else { 0 },
                direct: None,
            };
            for (j, c) in CASES.iter().enumerate() {
                check(&gpu, c, cfg, 500 + 10 * (i * CASES.len() + j) as u64);
            }
        }
        let bad = ConvConfig {
            backward_data: Tile::subgroup(sg + 1, 1),
            ..ConvConfig::CPU
        };
        let w = Tensor::zeros(&gpu, &[1, 1, 3, 3]).unwrap();
        let dy = Tensor::zeros(&gpu, &[1, 1, 2, 2]).unwrap();
        let e = dy
            .conv2d_backward_data(&w, &[1, 1, 5, 5], 2, 0, bad)
            .unwrap_err();
        assert!(
            e.to_string().contains("multiple of the subgroup size"),
            "{e}"
        );
    }
    assert!(
        Tensor::zeros(&gpu, &[1, 1, 3, 3])
            .unwrap()
            .conv2d_with(
                &Tensor::zeros(&gpu, &[1, 1, 1, 1]).unwrap(),
                None,
                1,
                0,
                ConvConfig {
                    forward: Tile::new(17, 4, 64),
                    direct: None,
                    ..ConvConfig::CPU
                }
            )
            .is_err()
    );
}

#[test]
fn conv2d_gradients_match_finite_differences() {
    let gpu = gpu();
    let (xs, ws, s, p) = ([2, 2, 5, 4], [3, 2, 3, 3], 2, 1);
    let (xv, wv, bv) = (rand_vec(80, 1), rand_vec(54, 2), rand_vec(3, 3));
    let (oh, ow) = (cpu::out_size(5, 3, s, p), cpu::out_size(4, 3, s, p));
    let r = rand_vec(2 * 3 * oh * ow, 4);
    let host = |x: &[f32], w: &[f32], b: &[f32]| -> f64 {
        let y = cpu::conv2d(x, xs, w, ws, s, p);
        y.iter()
            .enumerate()
            .map(|(i, v)| (v + b[(i / (oh * ow)) % 3]) as f64 * r[i] as f64)
            .sum()
    };
    let x = param_from(&gpu, &xv, &xs);
    let w = param_from(&gpu, &wv, &ws);
    let b = param_from(&gpu, &bv, &[3]);
    let y = x.conv2d(&w, Some(&b), s, p).unwrap();
    let rt = Tensor::from_slice(&gpu, &r, y.shape()).unwrap();
    let loss = y.mul(&rt).unwrap().sum().unwrap();
    assert!((loss.item().unwrap() as f64 - host(&xv, &wv, &bv)).abs() < 1e-4);
    let grads = loss.backward().unwrap();
    let gx = numeric_grad(&xv, 1e-2, |v| host(v, &wv, &bv));
    let gw = numeric_grad(&wv, 1e-2, |v| host(&xv, v, &bv));
    let gb = numeric_grad(&bv, 1e-2, |v| host(&xv, &wv, v));
    assert_close(
        &grads.get(&x).cloned().unwrap().to_vec().unwrap(),
        &gx,
        1e-3,
        1e-3,
    );
    assert_close(
        &grads.get(&w).cloned().unwrap().to_vec().unwrap(),
        &gw,
        1e-3,
        1e-3,
    );
    assert_close(
        &grads.get(&b).cloned().unwrap().to_vec().unwrap(),
        &gb,
        1e-3,
        1e-3,
    );
}

fn param_from(gpu: &Gpu, v: &[f32], shape: &[usize]) -> Tensor {
    let t = Tensor::from_slice(gpu, v, shape).unwrap();
    t.set_requires_grad(true);
    t
}

#[test]
fn conv2d_runs_deterministically() {
    let gpu = gpu();
    let x = tensor(&gpu, &[2, 5, 9, 9], 1);
    let w = param(&gpu, &[7, 5, 3, 3], 2);
    let run = || {
        let y = x.conv2d(&w, None, 1, 1).unwrap();
        let (loss, _) = weighted_sum(&y, 3);
        let grads = loss.backward().unwrap();
        let g = grads.get(&w).cloned().unwrap().to_vec().unwrap();
        (y.to_vec().unwrap(), g)
    };
    let a = run();
    let b = run();
    assert_eq!(
        a.0.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.0.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    assert_eq!(
        a.1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.1.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
}

#[test]
fn bad_shapes_are_errors_naming_both_shapes() {
    let gpu = gpu();
    let x = Tensor::zeros(&gpu, &[1, 3, 5, 5]).unwrap();
    let err = |w: &[usize], s: usize, p: usize| {
        x.conv2d(&Tensor::zeros(&gpu, w).unwrap(), None, s, p)
            .unwrap_err()
            .to_string()
    };
    let e = err(&[4, 2, 3, 3], 1, 0);
    assert!(
        e.contains("[1, 3, 5, 5]") && e.contains("[4, 2, 3, 3]") && e.contains("channels"),
        "{e}"
    );
    let e = err(&[4, 3, 7, 7], 1, 0);
    assert!(
        e.contains("[1, 3, 5, 5]") && e.contains("[4, 3, 7, 7]") && e.contains("larger"),
        "{e}"
    );
    assert!(
        x.conv2d(&Tensor::zeros(&gpu, &[4, 3, 7, 7]).unwrap(), None, 1, 1)
            .is_ok()
    );
    let e = err(&[4, 3, 3, 3], 0, 0);
    assert!(e.contains("stride") && e.contains("[4, 3, 3, 3]"), "{e}");
    let e = x
        .conv2d(
            &Tensor::zeros(&gpu, &[4, 3, 3, 3]).unwrap(),
            Some(&Tensor::zeros(&gpu, &[3]).unwrap()),
            1,
            0,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("[3]") && e.contains("[4, 3, 3, 3]"), "{e}");
    let e = Tensor::zeros(&gpu, &[3, 5, 5])
        .unwrap()
        .conv2d(&Tensor::zeros(&gpu, &[4, 3, 3, 3]).unwrap(), None, 1, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[3, 5, 5]"), "{e}");
}

#[test]
fn every_direct_tile_matches_cpu() {
    // The direct kernels (forward, backward data, backward weight; stride 1 and 2) with
    // plain tiles, and subgroup tiles where there are subgroups, on every case (the
    // ineligible ones fall back).
    let gpu = gpu();
    let mut tiles = vec![Tile::new(8, 1, 16), Tile::new(3, 2, 5), Tile::new(1, 3, 64)];
    if let Some(sg) = gpu.subgroup_size() {
        tiles.extend([Tile::subgroup(sg, 1), Tile::subgroup(2 * sg, 2)]);
    }
    for (i, t) in tiles.into_iter().enumerate() {
        let cfg = ConvConfig {
            direct: Some(DirectTiles::all(t)),
            ..ConvConfig::for_gpu(&gpu)
        };
        for (j, c) in CASES.iter().enumerate() {
            check(&gpu, c, cfg, 7000 + 10 * (i * CASES.len() + j) as u64);
        }
    }
}

#[test]
fn every_preset_matches_cpu() {
    // Every configuration `ConvConfig::for_gpu` can pick on any adapter (the real-GPU one
    // included), forced through the config, on every awkward case: forward, both backward
    // kernels (stride 1 and strided), split and unsplit weight gradients.
    let gpu = gpu();
    let mut ran = Vec::new();
    for (k, (tuning, cfg)) in ConvConfig::PRESETS.into_iter().enumerate() {
        if tuning == Tuning::CpuSubgroup && gpu.subgroup_size().is_none_or(|s| 32 % s != 0) {
            continue;
        }
        for split in [cfg.weight_parallelism, 4096] {
            let cfg = ConvConfig {
                weight_parallelism: split,
                ..cfg
            };
            for (i, c) in CASES.iter().enumerate() {
                check(&gpu, c, cfg, 3000 + 100 * k as u64 + 10 * i as u64);
            }
        }
        ran.push(tuning);
    }
    assert!(
        ran.contains(&Tuning::Gpu) && ran.contains(&Tuning::Cpu),
        "{ran:?}"
    );
}

#[test]
fn conv_through_batch_norm_relu_matches_cpu() {
    // conv2d(relu(bn(x[:, ..c]))) with the normalisation inside the direct kernels' loads,
    // forward and weight gradient, against the CPU on explicitly normalised inputs: channel
    // prefixes, widened widths, 1×1 and 3×3, batch 1; every tuning (None where a tuning
    // has no direct kernel).
    let gpu = gpu();
    let cases: [([usize; 4], usize, [usize; 4], usize); 7] = [
        ([2, 26, 6, 6], 18, [4, 18, 3, 3], 1),
        ([2, 10, 3, 3], 6, [4, 6, 3, 3], 1),
        ([2, 7, 6, 8], 5, [9, 5, 3, 3], 1),
        ([1, 4, 5, 7], 4, [6, 4, 3, 3], 1),
        ([3, 9, 3, 4], 6, [10, 6, 1, 1], 0),
        ([2, 5, 3, 5], 3, [4, 3, 1, 1], 0),
        ([1, 3, 2, 4], 3, [37, 3, 3, 3], 1),
    ];
    for tuning in tunings(&gpu) {
        for (i, &(xs, c, ws, pad)) in cases.iter().enumerate() {
            let seed = 9000 + 10 * i as u64;
            let [n, xc, h, w] = xs;
            let xv = rand_vec(xs.iter().product(), seed);
            let wv = rand_vec(ws.iter().product(), seed + 1);
            let mean = rand_vec(c, seed + 2);
            let inv: Vec<f32> = rand_vec(c, seed + 3).iter().map(|v| 1.5 + v).collect();
            let gamma = rand_vec(c, seed + 4);
            let beta = rand_vec(c, seed + 5);
            // relu(bn(x)) of the prefix, [n, c, h, w].
            let hw = h * w;
            let mut y = vec![0f32; n * c * hw];
            for b in 0..n {
                for ch in 0..c {
                    for p in 0..hw {
                        let v = xv[(b * xc + ch) * hw + p];
                        y[(b * c + ch) * hw + p] =
                            ((v - mean[ch]) * (inv[ch] * gamma[ch]) + beta[ch]).max(0.0);
                    }
                }
            }
            let ys = [n, c, h, w];
            let want = cpu::conv2d(&y, ys, &wv, ws, 1, pad);
            let dyv = rand_vec(want.len(), seed + 6);
            let want_dw = cpu::backward_weight(&dyv, &y, ys, ws, 1, pad);
            let stats: Vec<f32> = mean.iter().chain(&inv).copied().collect();
            let t = |v: &[f32], s: &[usize]| Tensor::from_slice(&gpu, v, s).unwrap();
            let (x, wt) = (t(&xv, &xs), t(&wv, &ws));
            let (st, g, be) = (t(&stats, &[2 * c]), t(&gamma, &[c]), t(&beta, &[c]));
            let dy = t(&dyv, &[n, ws[0], h, w]);
            let (out, dw) = isomax::ops::with_tuning(tuning, || {
                let out = x.conv2d_bn_relu(c, &st, &g, &be, &wt, 1, pad).unwrap();
                let dw = dy
                    .conv2d_bn_relu_backward_weight(&x, c, &st, &g, &be, &ws, 1, pad)
                    .unwrap();
                (out, dw)
            });
            let has_direct =
                isomax::ops::with_tuning(tuning, || ConvConfig::for_gpu(&gpu).direct.is_some());
            assert_eq!(out.is_some(), has_direct, "{tuning:?} case {i}");
            assert_eq!(dw.is_some(), has_direct, "{tuning:?} case {i}");
            if let (Some(out), Some(dw)) = (out, dw) {
                let tol = (c * ws[2] * ws[3]) as f32 * 4e-7;
                assert_close(&out.to_vec().unwrap(), &want, tol, tol);
                let tol = (n * h * w) as f32 * 4e-7;
                assert_close(&dw.to_vec().unwrap(), &want_dw, tol, tol);
            }
        }
    }
    // Bad statistics or a prefix past the input are errors naming the shapes.
    let x = Tensor::zeros(&gpu, &[1, 3, 4, 4]).unwrap();
    let w = Tensor::zeros(&gpu, &[2, 3, 1, 1]).unwrap();
    let v = |n| Tensor::zeros(&gpu, &[n]).unwrap();
    let e = x
        .conv2d_bn_relu(3, &v(5), &v(3), &v(3), &w, 1, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[6]") && e.contains("[5]"), "{e}");
    let e = x
        .conv2d_bn_relu(4, &v(8), &v(4), &v(4), &w, 1, 0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("4 channels") && e.contains("[1, 3, 4, 4]"),
        "{e}"
    );
}
