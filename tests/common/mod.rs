//! Shared test helpers: the device, seeded random data, comparisons and finite differences.
#![allow(dead_code)]

use isomax::data::Dataset;
use isomax::nn::{Arch, HeadKind};
use isomax::optim::SgdConfig;
use isomax::train::TrainConfig;
use isomax::{Gpu, Tensor};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::path::PathBuf;

/// A device with WebGPU's portable limits on whatever adapter `WGPU_BACKEND` selects.
pub fn gpu() -> Gpu {
    Gpu::portable().expect("no adapter: install mesa-vulkan-drivers or set WGPU_BACKEND=gl")
}

/// The kernel tunings this device can run (`isomax::ops::with_tuning`): the real-GPU and
/// the portable CPU ones everywhere, the subgroup one where subgroups divide 32.
pub fn tunings(gpu: &Gpu) -> Vec<isomax::ops::Tuning> {
    use isomax::ops::Tuning;
    let mut t = vec![Tuning::Gpu, Tuning::Cpu];
    if gpu.subgroup_size().is_some_and(|s| 32 % s == 0) {
        t.push(Tuning::CpuSubgroup);
    }
    t
}

/// Seeded uniform values in [-1, 1).
pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

pub fn tensor(gpu: &Gpu, shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_slice(gpu, &rand_vec(n, seed), shape).unwrap()
}

pub fn param(gpu: &Gpu, shape: &[usize], seed: u64) -> Tensor {
    let t = tensor(gpu, shape, seed);
    t.set_requires_grad(true);
    t
}

/// Assert elementwise closeness: |a - b| <= atol + rtol * |b|.
#[track_caller]
pub fn assert_close(got: &[f32], want: &[f32], rtol: f32, atol: f32) {
    assert_eq!(got.len(), want.len(), "length differs");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= atol + rtol * w.abs() && g.is_finite(),
            "element {i}: got {g}, want {w} (len {})",
            got.len()
        );
    }
}

/// Central finite differences of a scalar function `f` at `x`, in f64 on the host.
pub fn numeric_grad(x: &[f32], eps: f32, mut f: impl FnMut(&[f32]) -> f64) -> Vec<f32> {
    let mut xs = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = xs[i];
            xs[i] = orig + eps;
            let hi = f(&xs);
            xs[i] = orig - eps;
            let lo = f(&xs);
            xs[i] = orig;
            ((hi - lo) / (2.0 * eps as f64)) as f32
        })
        .collect()
}

/// The loss `sum(out * w)` for a fixed random `w`: its gradient wrt `out` is `w`.
pub fn weighted_sum(out: &Tensor, seed: u64) -> (Tensor, Vec<f32>) {
    let w = rand_vec(out.numel(), seed);
    let wt = Tensor::from_slice(out.gpu(), &w, out.shape()).unwrap();
    (out.mul(&wt).unwrap().sum().unwrap(), w)
}

pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// Side of the downscaled MNIST images the end-to-end tests train on (keeps them fast).
pub const MNIST_SIZE: usize = 12;

/// The first `n` images of a shipped MNIST file, downscaled to `MNIST_SIZE`².
pub fn mnist(file: &str, n: usize) -> Dataset {
    let p = format!("idx:{}/assets/mnist/{file}", env!("CARGO_MANIFEST_DIR"));
    let mut d = Dataset::open(&p).unwrap();
    d.truncate(n);
    d.converted(1, MNIST_SIZE, MNIST_SIZE).unwrap()
}

/// A quick resnet-tiny training setup writing into a fresh temporary folder named `dir`.
pub fn train_config(head: HeadKind, epochs: usize, dir: &str) -> TrainConfig {
    let out_dir: PathBuf =
        std::env::temp_dir().join(format!("isomax-test-{dir}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    TrainConfig {
        arch: Arch::ResnetTiny,
        head,
        epochs,
        batch_size: 32,
        sgd: SgdConfig {
            lr: 0.05,
            milestones: vec![100],
            ..SgdConfig::default()
        },
        seed: 7,
        augment: false,
        holdout: 64,
        entropic_scale: None,
        fpr: None,
        out_dir,
        resume: false,
        force: false,
        progress: false,
        normalization: None,
    }
}

/// What a host application does first: its own instance and adapter (honours WGPU_BACKEND).
pub fn host_adapter() -> wgpu::Adapter {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default())).unwrap()
}

/// The JSON of a valid model config (resnet-tiny, IsoMax, 1x12x12, 10 classes), as a value
/// tests can break one field at a time.
pub fn config_json() -> serde_json::Value {
    serde_json::json!({
        "arch": "resnet-tiny",
        "head": "IsoMax",
        "in_channels": 1,
        "height": 12,
        "width": 12,
        "num_classes": 10,
        "mean": [0.13],
        "std": [0.31],
    })
}

/// The JSON of a valid training state.
pub fn state_json() -> serde_json::Value {
    serde_json::json!({
        "epoch": 1, "epochs": 1,
        "sgd": {"lr": 0.1, "momentum": 0.9, "nesterov": true, "weight_decay": 1e-4,
                "milestones": [1], "gamma": 0.1},
        "batch_size": 32, "seed": 7, "es_threshold": 0.5, "train_data": "idx:x",
        "augment": false, "holdout": 64,
    })
}

/// The bytes of a safetensors file with isomax metadata `config` and `state` (raw strings,
/// so tests can also store malformed JSON) and the given F32 tensors.
pub fn checkpoint_bytes(
    config: &str,
    state: &str,
    tensors: &[(&str, Vec<usize>, Vec<f32>)],
) -> Vec<u8> {
    use safetensors::tensor::{Dtype, TensorView};
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, v)| (n.to_string(), s.clone(), bytemuck::cast_slice(v).to_vec()))
        .collect();
    let views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let meta = std::collections::HashMap::from([
        ("format".to_string(), "isomax-checkpoint-1".to_string()),
        ("config".to_string(), config.to_string()),
        ("state".to_string(), state.to_string()),
    ]);
    safetensors::tensor::serialize(views, Some(meta)).unwrap()
}
