//! The embedding path's kernels against their CPU references: RGBA8 texels to the model's
//! normalised NCHW input (gray and RGB, same size and bilinear resize, at an offset),
//! NCHW f32 normalisation, and the per-image decision rows.
mod common;
use common::assert_close;
use isomax::ops::preprocess::{self, ChannelNorm, cpu};
use isomax::{Gpu, Tensor};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn texels(n: usize, seed: u64) -> Vec<u32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random::<u32>()).collect()
}

fn host_buffer(gpu: &Gpu, offset: u64, data: &[u32]) -> wgpu::Buffer {
    let b = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("texels"),
        size: offset + 4 * data.len() as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    gpu.queue()
        .write_buffer(&b, offset, bytemuck::cast_slice(data));
    b
}

#[test]
fn rgba8_conversion_matches_the_cpu_reference() {
    let gpu = common::gpu();
    // (mean, std, (images, width, height) in, (height, width) out)
    type Case = (
        &'static [f32],
        &'static [f32],
        (usize, usize, usize),
        (usize, usize),
    );
    let cases: [Case; 5] = [
        (&[0.13], &[0.31], (3, 7, 5), (5, 7)),     // gray, same size
        (&[0.13], &[0.31], (2, 28, 28), (12, 12)), // gray, downscale
        (&[0.5], &[0.25], (2, 5, 4), (9, 11)),     // gray, upscale, non-square
        (&[0.4, 0.5, 0.6], &[0.2, 0.25, 0.3], (2, 6, 6), (6, 6)), // RGB, same size
        (&[0.4, 0.5, 0.6], &[0.2, 0.25, 0.3], (2, 10, 8), (4, 5)), // RGB, resize
    ];
    for (i, (mean, std, (n, w, h), (oh, ow))) in cases.into_iter().enumerate() {
        let data = texels(n * w * h, i as u64);
        let offset = 256;
        let buf = host_buffer(&gpu, offset, &data);
        let norm = ChannelNorm::new(&gpu, mean, std).unwrap();
        let got = preprocess::rgba8_to_nchw(&gpu, &buf, offset, n, w, h, (oh, ow), &norm).unwrap();
        assert_eq!(got.shape(), [n, mean.len(), oh, ow]);
        let want = cpu::rgba8_to_nchw(&data, (n, w, h), (oh, ow), mean, std);
        assert_close(&got.to_vec().unwrap(), &want, 1e-5, 1e-5);
    }
}

#[test]
fn gray_conversion_rounds_luma_like_the_cpu_image_path() {
    // R = G = B = v must give v exactly; a colour gives the rounded ITU-R 601 luma.
    let gpu = common::gpu();
    let px = |r: u32, g: u32, b: u32| r | (g << 8) | (b << 16) | (255 << 24);
    let data = [
        px(0, 0, 0),
        px(255, 255, 255),
        px(77, 77, 77),
        px(255, 0, 0),
        px(0, 255, 0),
        px(10, 20, 200),
    ];
    let buf = host_buffer(&gpu, 0, &data);
    let norm = ChannelNorm::new(&gpu, &[0.0], &[1.0]).unwrap();
    let got = preprocess::rgba8_to_nchw(&gpu, &buf, 0, 1, 6, 1, (1, 6), &norm)
        .unwrap()
        .to_vec()
        .unwrap();
    let want: Vec<f32> = [0.0f32, 255.0, 77.0, 76.0, 150.0, 38.0]
        .iter()
        .map(|v| v / 255.0)
        .collect();
    assert_close(&got, &want, 1e-6, 1e-7);
}

#[test]
fn nchw_normalisation_matches_the_cpu_reference() {
    let gpu = common::gpu();
    let (mean, std) = ([0.49f32, 0.48, 0.45], [0.25f32, 0.24, 0.26]);
    let norm = ChannelNorm::new(&gpu, &mean, &std).unwrap();
    let x: Vec<f32> = common::rand_vec(2 * 3 * 5 * 4, 3)
        .iter()
        .map(|v| 0.5 + 0.5 * v)
        .collect();
    let t = Tensor::from_slice(&gpu, &x, &[2, 3, 5, 4]).unwrap();
    let got = preprocess::normalize_nchw(&t, &norm)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_close(&got, &cpu::normalize_nchw(&x, 20, &mean, &std), 1e-6, 1e-6);
    let e = preprocess::normalize_nchw(&Tensor::zeros(&gpu, &[2, 1, 5, 4]).unwrap(), &norm)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("[2, 1, 5, 4]") && e.contains("[B, 3, H, W]"),
        "{e}"
    );
}

#[test]
fn decide_matches_the_cpu_reference() {
    let gpu = common::gpu();
    // [mps, es, mds, energy, max_logit, mmls, mmles, prediction]
    let rows: Vec<f32> = (0..6)
        .flat_map(|i| {
            let es = -0.4 * i as f32;
            [
                0.9 - 0.1 * i as f32,
                es,
                -1.0,
                0.0,
                -1.0,
                0.0,
                0.0,
                (i % 3) as f32,
            ]
        })
        .collect();
    let scores = Tensor::from_slice(&gpu, &rows, &[6, 8]).unwrap();
    for threshold in [Some(-0.8), Some(-5.0), None] {
        let got = preprocess::decide(&scores, threshold)
            .unwrap()
            .to_vec()
            .unwrap();
        assert_eq!(
            got,
            cpu::decide(&rows, threshold),
            "threshold {threshold:?}"
        );
    }
    // ES exactly at the threshold counts as in-distribution.
    let got = preprocess::decide(&scores, Some(-0.8))
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(got[2 * 4 + 3], 1.0);
    assert_eq!(got[3 * 4 + 3], 0.0);
}
