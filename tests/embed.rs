//! Embedding: a host application's device and RGBA8 buffer classified in place, checked
//! against the CPU image path that `isomax score` uses; and the errors a host can hit.
mod common;
use isomax::data::Dataset;
use isomax::nn::{Arch, HeadKind, Model, ModelConfig};
use isomax::ops::preprocess::cpu;
use isomax::train::train;
use isomax::{Classifier, Gpu, ImageResult, Tensor, eval};
use std::path::PathBuf;
use std::sync::OnceLock;

use common::{MNIST_SIZE as SIZE, mnist};

/// One tiny IsoMax model for every test in this file (trained once, 1 epoch).
fn checkpoint() -> &'static PathBuf {
    static CK: OnceLock<PathBuf> = OnceLock::new();
    CK.get_or_init(|| {
        let cfg = common::train_config(HeadKind::IsoMax, 1, "embed");
        train(
            &common::gpu(),
            &cfg,
            mnist("train-images-idx3-ubyte.gz", 320),
            None,
        )
        .unwrap()
        .checkpoint
    })
}

/// What a host application does: its own instance, adapter and device (WebGPU limits).
fn host_device() -> (wgpu::Device, wgpu::Queue) {
    let adapter = common::host_adapter();
    pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap()
}

fn pack(r: u8, g: u8, b: u8) -> u32 {
    u32::from(r) | u32::from(g) << 8 | u32::from(b) << 16 | 0xff << 24
}

/// Test digits (gray) then colour noise, as RGBA8 texels and as the RGB CHW u8 images that
/// the PNG loader would give for them.
fn images(n_digits: usize, n_noise: usize) -> (Vec<u32>, Dataset) {
    let digits = mnist("t10k-images-idx3-ubyte.gz", n_digits);
    let hw = SIZE * SIZE;
    let mut texels = Vec::new();
    let mut rgb = Vec::new();
    for i in 0..n_digits {
        let img = digits.image(i);
        texels.extend(img.iter().map(|&v| pack(v, v, v)));
        for _ in 0..3 {
            rgb.extend_from_slice(img);
        }
    }
    let noise = common::rand_vec(n_noise * hw * 3, 11);
    let byte = |v: f32| ((v + 1.0) * 127.5) as u8;
    for img in noise.chunks_exact(3 * hw) {
        texels.extend(
            (0..hw).map(|p| pack(byte(img[3 * p]), byte(img[3 * p + 1]), byte(img[3 * p + 2]))),
        );
        for ch in 0..3 {
            rgb.extend((0..hw).map(|p| byte(img[3 * p + ch])));
        }
    }
    let n = n_digits + n_noise;
    let data = Dataset {
        name: "host images".into(),
        images: rgb,
        labels: vec![0; n],
        channels: 3,
        height: SIZE,
        width: SIZE,
        num_classes: 10,
    };
    (texels, data)
}

#[track_caller]
fn assert_agree(got: &[ImageResult], want: &eval::Scored, threshold: Option<f32>, es_tol: f32) {
    assert_eq!(got.len(), want.scores.len());
    for (i, (g, w)) in got.iter().zip(&want.scores).enumerate() {
        assert_eq!(g.class, w.prediction, "image {i}: class");
        assert!(
            (g.es - w.es).abs() <= es_tol,
            "image {i}: ES {} vs CPU path {}",
            g.es,
            w.es
        );
        assert!(
            (g.probability - w.mps).abs() <= es_tol,
            "image {i}: probability {} vs {}",
            g.probability,
            w.mps
        );
        assert_eq!(
            g.in_distribution,
            threshold.is_none_or(|t| g.es >= t),
            "image {i}: flag"
        );
    }
}

#[test]
fn host_rgba8_buffer_agrees_with_the_cli_image_path() {
    let ck = checkpoint();
    let (device, queue) = host_device();
    let gpu = Gpu::from_device(device.clone(), queue.clone()).unwrap();
    let classifier = Classifier::load(&gpu, ck).unwrap();
    assert_eq!(classifier.input_shape(), [1, SIZE, SIZE]);
    assert_eq!(classifier.num_classes(), 10);
    let threshold = classifier.threshold();
    assert!(threshold.is_some(), "training stores an ES threshold");

    let (texels, data) = images(12, 4);
    let offset = 256; // any multiple of min_storage_buffer_offset_alignment
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("host frames"),
        size: offset + 4 * texels.len() as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    queue.write_buffer(&buffer, offset, bytemuck::cast_slice(&texels));
    let out = classifier
        .classify_rgba8(&buffer, offset, data.len(), SIZE, SIZE)
        .unwrap();
    assert_eq!(out.results.shape(), [16, 4]);
    assert_eq!(out.probs.shape(), [16, 10]);
    assert_eq!(out.scores.shape(), [16, 8]);
    // The results are a buffer the host can bind in its own passes.
    assert!(
        out.results
            .buffer()
            .usage()
            .contains(wgpu::BufferUsages::STORAGE)
    );

    // Non-blocking readback, polled from the host's loop.
    let mut pending = out.read_async();
    let got = loop {
        if let Some(r) = pending.try_take() {
            break r.unwrap();
        }
        std::thread::yield_now();
    };
    assert_eq!(got, out.read().unwrap());

    // The CLI path: u8 RGB images (what the PNG loader gives), converted and scored on the CPU side.
    let want = eval::score_dataset(&gpu, classifier.model(), &data, 5).unwrap();
    assert_agree(&got, &want, threshold, 1e-4);
}

#[test]
fn f32_tensor_input_agrees_with_the_cli_image_path() {
    let gpu = common::gpu();
    let classifier = Classifier::load(&gpu, checkpoint()).unwrap();
    let digits = mnist("t10k-images-idx3-ubyte.gz", 8);
    let x: Vec<f32> = digits
        .images
        .iter()
        .map(|&v| f32::from(v) / 255.0)
        .collect();
    let t = Tensor::from_slice(&gpu, &x, &[8, 1, SIZE, SIZE]).unwrap();
    let got = classifier.classify(&t).unwrap().read().unwrap();
    let want = eval::score_dataset(&gpu, classifier.model(), &digits, 8).unwrap();
    assert_agree(&got, &want, classifier.threshold(), 1e-4);
}

#[test]
fn resized_rgba8_input_matches_the_cpu_reference() {
    let gpu = common::gpu();
    let classifier = Classifier::load(&gpu, checkpoint()).unwrap();
    let (w, h, n) = (20, 17, 3);
    let texels: Vec<u32> = common::rand_vec(n * w * h, 5)
        .iter()
        .map(|v| pack((v.abs() * 255.0) as u8, 128, (v.abs() * 99.0) as u8))
        .collect();
    let buffer = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 4 * texels.len() as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    gpu.queue()
        .write_buffer(&buffer, 0, bytemuck::cast_slice(&texels));
    let got = classifier
        .classify_rgba8(&buffer, 0, n, w, h)
        .unwrap()
        .read()
        .unwrap();
    let c = &classifier.model().config;
    let x = cpu::rgba8_to_nchw(&texels, (n, w, h), (SIZE, SIZE), &c.mean, &c.std);
    let scores = eval::score_normalized(&gpu, classifier.model(), &x, n).unwrap();
    let want = eval::Scored {
        labels: vec![0; n],
        scores,
    };
    assert_agree(&got, &want, classifier.threshold(), 1e-4);
}

fn small_classifier(gpu: &Gpu) -> Classifier {
    let cfg = ModelConfig {
        arch: Arch::ResnetTiny,
        head: HeadKind::IsoMax,
        in_channels: 1,
        height: 8,
        width: 8,
        num_classes: 3,
        mean: vec![0.1],
        std: vec![0.3],
    };
    Classifier::new(gpu, Model::new(gpu, cfg, 1).unwrap(), Some(-1.0)).unwrap()
}

#[test]
fn bad_host_input_is_rejected_before_gpu_work() {
    let gpu = common::gpu();
    let classifier = small_classifier(&gpu);
    let buffer = |size, usage| {
        gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage,
            mapped_at_creation: false,
        })
    };
    let (dispatches, submits) = (gpu.dispatch_count(), gpu.submit_count());
    let err = |r: isomax::Result<isomax::Classification>| r.unwrap_err().to_string();

    // Too small: 2 images of 8×8 texels need 512 bytes.
    let b = buffer(500, wgpu::BufferUsages::STORAGE);
    let e = err(classifier.classify_rgba8(&b, 0, 2, 8, 8));
    assert!(e.contains("512 bytes") && e.contains("500 bytes"), "{e}");
    let b = buffer(1024, wgpu::BufferUsages::STORAGE);
    let e = err(classifier.classify_rgba8(&b, 768, 2, 8, 8));
    assert!(
        e.contains("512 bytes") && e.contains("offset 768") && e.contains("1024 bytes"),
        "{e}"
    );
    // Missing STORAGE usage.
    let b = buffer(
        1024,
        wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::VERTEX,
    );
    let e = err(classifier.classify_rgba8(&b, 0, 2, 8, 8));
    assert!(e.contains("STORAGE") && e.contains("VERTEX"), "{e}");
    // Misaligned offset, zero images.
    let b = buffer(4096, wgpu::BufferUsages::STORAGE);
    let e = err(classifier.classify_rgba8(&b, 4, 1, 8, 8));
    assert!(e.contains("offset 4") && e.contains("alignment 256"), "{e}");
    let e = err(classifier.classify_rgba8(&b, 0, 0, 8, 8));
    assert!(e.contains("0 images"), "{e}");
    // A tensor of the wrong shape names both shapes; an empty batch is refused.
    let t = Tensor::zeros(&gpu, &[2, 3, 8, 8]).unwrap();
    let e = err(classifier.classify(&t));
    assert!(
        e.contains("[2, 3, 8, 8]") && e.contains("[B, 1, 8, 8]"),
        "{e}"
    );
    let e = err(classifier.classify(&Tensor::zeros(&gpu, &[0, 1, 8, 8]).unwrap()));
    assert!(e.contains("zero images"), "{e}");
    // A tensor from another context.
    let other = common::gpu();
    let e = err(classifier.classify(&Tensor::zeros(&other, &[1, 1, 8, 8]).unwrap()));
    assert!(e.contains("another Gpu context"), "{e}");
    assert_eq!(
        gpu.dispatch_count(),
        dispatches,
        "a rejected call recorded kernels"
    );
    assert_eq!(
        gpu.submit_count(),
        submits,
        "a rejected call submitted work"
    );

    // The same classifier still works afterwards.
    let b = buffer(
        4096,
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
    );
    let r = classifier
        .classify_rgba8(&b, 256, 2, 8, 8)
        .unwrap()
        .read()
        .unwrap();
    assert_eq!(r.len(), 2);
}

#[test]
fn host_device_with_too_small_limits_is_refused() {
    let adapter = common::host_adapter();
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: wgpu::Limits::downlevel_webgl2_defaults(),
        ..Default::default()
    }))
    .unwrap();
    let e = Gpu::from_device(device, queue)
        .err()
        .expect("limits too small")
        .to_string();
    assert!(e.contains("max_storage_buffers_per_shader_stage"), "{e}");
}

#[test]
fn a_worker_thread_classifies_while_the_host_thread_submits_its_own_work() {
    // Hosts such as game engines are multi-threaded: the classifier moves to a worker
    // thread and shares the host's device while the host keeps submitting.
    let (device, queue) = host_device();
    let gpu = Gpu::from_device(device.clone(), queue.clone()).unwrap();
    let cfg = ModelConfig {
        arch: Arch::ResnetTiny,
        head: HeadKind::IsoMax,
        in_channels: 1,
        height: 12,
        width: 12,
        num_classes: 5,
        mean: vec![0.5],
        std: vec![0.25],
    };
    let classifier = Classifier::new(&gpu, Model::new(&gpu, cfg, 7).unwrap(), Some(-1.5)).unwrap();
    let pixels: Vec<f32> = common::rand_vec(3 * 144, 5)
        .iter()
        .map(|v| (v + 1.0) / 2.0)
        .collect();
    let x = Tensor::from_slice(&gpu, &pixels, &[3, 1, 12, 12]).unwrap();
    let want = classifier.classify(&x).unwrap().read().unwrap();

    // The host's own buffer, rewritten and copied every "frame".
    let host_buf = |usage| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("host"),
            size: 1 << 16,
            usage,
            mapped_at_creation: false,
        })
    };
    let src = host_buf(wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST);
    let dst = host_buf(wgpu::BufferUsages::COPY_DST);
    let got = std::thread::scope(|s| {
        let worker = s.spawn(|| {
            (0..4)
                .map(|_| classifier.classify(&x).unwrap().read().unwrap())
                .collect::<Vec<_>>()
        });
        let mut frames = 0u32;
        while !worker.is_finished() || frames < 4 {
            queue.write_buffer(&src, 0, &[frames as u8; 256]);
            let mut enc = device.create_command_encoder(&Default::default());
            enc.copy_buffer_to_buffer(&src, 0, &dst, 0, 1 << 16);
            queue.submit(Some(enc.finish()));
            frames += 1;
        }
        worker.join().unwrap()
    });
    device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    for results in got {
        assert_eq!(results.len(), want.len());
        for (a, b) in results.iter().zip(&want) {
            assert_eq!(a.class, b.class);
            assert_eq!(
                a.es.to_bits(),
                b.es.to_bits(),
                "same work gives the same bits"
            );
            assert_eq!(a.in_distribution, b.in_distribution);
        }
    }
}
