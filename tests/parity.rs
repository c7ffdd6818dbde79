//! Parity with PyTorch: the fixtures in tests/fixtures/parity were written by
//! `scripts/torch_reference.py` (the same models in PyTorch, layer for layer). The
//! reference is PyTorch in float64. An f32 engine cannot be expected to come closer to it
//! than rounding, amplified by the step, allows; the fixture measures that amplification
//! with PyTorch's own float32 runs (default, channels-last and without oneDNN: three
//! summation orders) and the test allows isomax `F32_FACTOR` times their largest deviation,
//! but never less than the fixed tolerances below. It loads each initial state into isomax,
//! trains on the same batches and compares (a run's PyTorch-f32 deviation is its largest,
//! over all steps for the losses and over all tensors for the weights):
//! - resnet-tiny and densenet-tiny × every head, 20 SGD-Nesterov steps of batch 16: every
//!   step's loss within 1e-4 relative; the weights and batch-norm running statistics after
//!   the last step within 1e-3 (max abs difference over max abs value, per tensor); in eval
//!   mode, from the reference's final weights, the logits and every OOD score within 1e-4
//!   of PyTorch's float32 forward (absolute, or relative above 1);
//! - DenseNet-BC-100 and ResNet-34, one training step on 2 CIFAR-size images: the loss
//!   within 1e-4 relative and every parameter's gradient checksums (sum of squares and 16
//!   sampled elements within 1e-3 of the tensor's scale; the sum within 1e-3 of √n·‖g‖).
//!
//! `ISOMAX_PARITY_DIR` reads another fixture folder (e.g. one written with `--lr 0.1`), and
//! `ISOMAX_PARITY_REPORT=1` prints the deviations without failing (to measure drift).
mod common;

use isomax::interop::StateDict;
use isomax::nn::{Arch, HeadKind, Model, ModelConfig, Module, Role};
use isomax::ood::scores::row_scores;
use isomax::optim::{Sgd, SgdConfig};
use isomax::{Gpu, Tensor};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const LOSS_RTOL: f64 = 1e-4;
const WEIGHT_TOL: f64 = 1e-3;
const SCORE_TOL: f64 = 1e-4;
const GRAD_TOL: f64 = 1e-3;
/// How many times PyTorch's own float32 deviation from the float64 reference isomax may
/// deviate (where that is larger than the fixed tolerance).
const F32_FACTOR: f64 = 10.0;

const HEADS: [(&str, HeadKind); 4] = [
    ("softmax", HeadKind::SoftMax),
    ("isomax", HeadKind::IsoMax),
    ("isomaxplus", HeadKind::IsoMaxPlus),
    ("dismax", HeadKind::DisMax),
];

fn dir() -> PathBuf {
    std::env::var_os("ISOMAX_PARITY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity"))
}

fn report_only() -> bool {
    std::env::var("ISOMAX_PARITY_REPORT").is_ok_and(|v| v == "1")
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn tensors(path: &Path) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    StateDict::read(path)
        .unwrap_or_else(|e| panic!("{e}"))
        .tensors
}

/// Deviations and failures of one comparison run.
#[derive(Default)]
struct Report {
    lines: Vec<String>,
    failures: Vec<String>,
}

impl Report {
    fn check(&mut self, what: String, dev: f64, tol: f64) {
        if dev > tol || dev.is_nan() {
            self.failures
                .push(format!("{what}: deviation {dev:.3e} > {tol:.0e}"));
        }
    }

    fn finish(self, title: &str) {
        println!("{title}");
        for l in &self.lines {
            println!("  {l}");
        }
        if !self.failures.is_empty() && !report_only() {
            panic!(
                "{} parity failure(s):\n{}",
                self.failures.len(),
                self.failures.join("\n")
            );
        }
    }
}

fn max_abs_dev(got: &[f32], want: &[f32]) -> f64 {
    let diff = got
        .iter()
        .zip(want)
        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
        .fold(0.0, f64::max);
    let scale = want.iter().map(|b| f64::from(*b).abs()).fold(0.0, f64::max);
    if got.len() != want.len() || got.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    diff / scale.max(1e-12)
}

fn write_state(model: &Model, state: &BTreeMap<String, (Vec<usize>, Vec<f32>)>, prefix: &str) {
    model.visit("", &mut |name, t, _| {
        let key = format!("{prefix}{name}");
        let (shape, data) = state
            .get(&key)
            .unwrap_or_else(|| panic!("fixture has no tensor {key}"));
        assert_eq!(shape.as_slice(), t.shape(), "{key}");
        t.write(data).unwrap();
    });
}

fn tiny_config(arch: Arch, head: HeadKind) -> ModelConfig {
    ModelConfig {
        arch,
        head,
        in_channels: 1,
        height: 14,
        width: 14,
        num_classes: 10,
        mean: vec![0.0],
        std: vec![1.0],
    }
}

/// Train one tiny model × head as the fixture did and compare; returns the report lines.
fn tiny(gpu: &Gpu, arch: Arch, arch_name: &str, head: HeadKind, head_name: &str, r: &mut Report) {
    let d = dir();
    let name = format!("{arch_name}-{head_name}");
    let meta = json(&d.join(format!("{name}.json")));
    let state = tensors(&d.join(format!("{name}.safetensors")));
    let batches = tensors(&d.join("batches.safetensors"));
    let (ishape, images) = &batches["images"];
    let (_, labels) = &batches["labels"];
    let (steps, batch) = (ishape[0], ishape[1]);
    let per_image: usize = ishape[2..].iter().product();

    let model = Model::new(gpu, tiny_config(arch, head), 0).unwrap();
    write_state(&model, &state, "init.");
    let lr = meta["lr"].as_f64().unwrap() as f32;
    let mut opt = Sgd::new(
        model.params(),
        SgdConfig {
            lr,
            momentum: meta["momentum"].as_f64().unwrap() as f32,
            nesterov: true,
            weight_decay: meta["weight_decay"].as_f64().unwrap() as f32,
            milestones: vec![],
            gamma: 0.1,
        },
    )
    .unwrap();
    let want_losses = floats(&meta["losses"]);
    let f32_losses = floats(&meta["losses_f32_dev"]);
    assert_eq!(want_losses.len(), steps);
    // How far PyTorch's own f32 runs drift from the reference over the run (see the module
    // doc): the steps and tensors of one run share one conditioning.
    let envelope = f32_losses.iter().fold(0.0, |m: f64, v| m.max(*v));
    let f32_weight = meta["f32_dev"]
        .as_object()
        .unwrap()
        .values()
        .fold(0.0, |m: f64, v| m.max(v.as_f64().unwrap()));
    let x = Tensor::zeros(gpu, &[batch, 1, ishape[3], ishape[4]]).unwrap();
    let y = Tensor::zeros(gpu, &[batch]).unwrap();
    let mut worst_loss = (0.0, 0);
    for (s, want) in want_losses.iter().enumerate() {
        x.write(&images[s * batch * per_image..(s + 1) * batch * per_image])
            .unwrap();
        y.write(&labels[s * batch..(s + 1) * batch]).unwrap();
        let logits = model.forward(&x, true).unwrap();
        let loss = logits.cross_entropy(&y, head.train_scale()).unwrap();
        let grads = loss.backward().unwrap();
        opt.step(&grads, lr).unwrap();
        let got = f64::from(loss.item().unwrap());
        let dev = (got - want).abs() / want.abs().max(1e-12);
        if dev > worst_loss.0 || !dev.is_finite() {
            worst_loss = (dev, s);
        }
        if std::env::var_os("ISOMAX_PARITY_VERBOSE").is_some() {
            r.lines.push(format!(
                "{name} step {s}: loss {got:.7} vs {want:.7} ({dev:.2e}; PyTorch f32 {:.2e})",
                f32_losses[s]
            ));
        }
        r.check(
            format!("{arch_name} {head_name} step {s} loss: isomax {got:.7} vs PyTorch {want:.7}"),
            dev,
            LOSS_RTOL.max(F32_FACTOR * envelope),
        );
    }

    // Weights and running statistics after the last step.
    let mut worst_weight = (0.0, String::new());
    model.visit("", &mut |tname, t, role| {
        let (_, want) = &state[&format!("final.{tname}")];
        let dev = max_abs_dev(&t.to_vec().unwrap(), want);
        let f32_dev = meta["f32_dev"][&tname].as_f64().unwrap();
        if dev > worst_weight.0 || !dev.is_finite() {
            worst_weight = (dev, tname.clone());
        }
        let kind = if role == Role::Param {
            "weight"
        } else {
            "running statistic"
        };
        r.check(
            format!(
                "{arch_name} {head_name} after step {} {kind} {tname} (PyTorch f32: {f32_dev:.2e})",
                steps - 1
            ),
            dev,
            WEIGHT_TOL.max(F32_FACTOR * f32_weight),
        );
    });

    // Eval mode from PyTorch's final state: logits and every OOD score.
    write_state(&model, &state, "final.");
    let (eshape, eimages) = &batches["eval_images"];
    let ex = Tensor::from_slice(gpu, eimages, eshape).unwrap();
    let logits = gpu
        .no_grad(|| model.forward(&ex, false))
        .unwrap()
        .to_vec()
        .unwrap();
    let (_, want_logits) = &state["eval.logits"];
    let abs_dev = |a: f64, b: f64| (a - b).abs() / b.abs().max(1.0);
    let mut worst_score = (0.0, String::from("logits"));
    let ldev = logits
        .iter()
        .zip(want_logits)
        .map(|(a, b)| abs_dev(f64::from(*a), f64::from(*b)))
        .fold(0.0, f64::max);
    worst_score.0 = ldev;
    r.check(
        format!("{arch_name} {head_name} eval logits"),
        ldev,
        SCORE_TOL,
    );
    let (_, rows) = row_scores(&logits, eshape[0], 10);
    for (score, get) in [
        (
            "mps",
            (|s| s.mps) as fn(&isomax::ood::scores::RowScores) -> f32,
        ),
        ("es", |s| s.es),
        ("mds", |s| s.mds),
        ("energy", |s| s.energy),
        ("max_logit", |s| s.max_logit),
        ("mmles", |s| s.mmles),
    ] {
        let want = floats(&meta["scores"][score]);
        let dev = rows
            .iter()
            .zip(&want)
            .map(|(row, w)| abs_dev(f64::from(get(row)), *w))
            .fold(0.0, f64::max);
        if dev > worst_score.0 {
            worst_score = (dev, score.to_string());
        }
        r.check(
            format!("{arch_name} {head_name} eval score {score}"),
            dev,
            SCORE_TOL,
        );
    }
    r.lines.push(format!(
        "{name:<24} loss {:.1e} (step {:>2}; PyTorch f32 {envelope:.1e})  weights {:.1e} ({}; PyTorch f32 {f32_weight:.1e})  scores {:.1e} ({})",
        worst_loss.0, worst_loss.1, worst_weight.0, worst_weight.1, worst_score.0, worst_score.1
    ));
}

#[test]
fn tiny_models_train_like_pytorch() {
    let gpu = common::gpu();
    let mut r = Report::default();
    for (arch, arch_name) in [
        (Arch::ResnetTiny, "resnet-tiny"),
        (Arch::DensenetTiny, "densenet-tiny"),
    ] {
        for (head_name, head) in HEADS {
            tiny(&gpu, arch, arch_name, head, head_name, &mut r);
        }
    }
    r.finish("largest deviation from PyTorch per model × head (loss relative; weights and scores as in the module doc):");
}

// --------------------------------------------------------------------------------------------
// The big models: initial weights and inputs from the counter-based hash that
// scripts/torch_reference.py uses (`hash_uniform`), so nothing large is stored.

fn fnv1a64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// `n` values in [-1, 1): SplitMix64 of fnv1a64(key) + (i + 1)·φ, top 24 bits.
fn hash_uniform(key: &str, n: usize) -> Vec<f32> {
    let seed = fnv1a64(key);
    (1..=n as u64)
        .map(|i| {
            let mut z = seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            let k = (z >> 40) as i64;
            ((2 * k - (1 << 24)) as f64 / (1u64 << 24) as f64) as f32
        })
        .collect()
}

fn scaled(key: &str, n: usize, bound: f64) -> Vec<f32> {
    let b = bound as f32;
    hash_uniform(key, n).into_iter().map(|v| v * b).collect()
}

/// The initial value of tensor `name` (torch_reference.py's `init_value`).
fn init_value(name: &str, shape: &[usize], head: HeadKind, linear_in: usize) -> Vec<f32> {
    let n: usize = shape.iter().product();
    if name.ends_with("distance_scale") {
        return vec![1.0; n];
    }
    if name.ends_with("prototypes") {
        return if head == HeadKind::IsoMax {
            vec![0.0; n]
        } else {
            scaled(name, n, 3f64.sqrt())
        };
    }
    if name.starts_with("head.linear") {
        return scaled(name, n, 1.0 / (linear_in as f64).sqrt());
    }
    if shape.len() == 4 {
        let fan_out = shape[0] * shape[2] * shape[3];
        return scaled(name, n, (2.0 / fan_out as f64).sqrt() * 3f64.sqrt());
    }
    let leaf = name.rsplit('.').next().unwrap();
    if leaf == "weight" || leaf == "running_var" {
        vec![1.0; n]
    } else {
        vec![0.0; n]
    }
}

fn hash_init(model: &Model) {
    let head = model.config.head;
    let mut linear_in = 0;
    model.visit("", &mut |name, t, _| {
        if name == "head.linear.weight" {
            linear_in = t.shape()[1];
        }
    });
    model.visit("", &mut |name, t, _| {
        t.write(&init_value(&name, t.shape(), head, linear_in))
            .unwrap();
    });
}

/// The fixtures' initial weights are the hash's, bit for bit (checks this file's copy).
#[test]
fn hash_init_matches_the_fixture() {
    let gpu = common::gpu();
    for (arch, arch_name) in [
        (Arch::ResnetTiny, "resnet-tiny"),
        (Arch::DensenetTiny, "densenet-tiny"),
    ] {
        for (head_name, head) in HEADS {
            let model = Model::new(&gpu, tiny_config(arch, head), 0).unwrap();
            hash_init(&model);
            let state = tensors(&dir().join(format!("{arch_name}-{head_name}.safetensors")));
            model.visit("", &mut |name, t, _| {
                assert_eq!(
                    t.to_vec().unwrap(),
                    state[&format!("init.{name}")].1,
                    "{arch_name} {head_name} initial {name}"
                );
            });
        }
    }
}

fn big(arch: Arch, arch_name: &str) {
    let gpu = common::gpu();
    let meta = json(&dir().join(format!("{arch_name}-step.json")));
    let head = match meta["head"].as_str().unwrap() {
        "softmax" => HeadKind::SoftMax,
        "isomax" => HeadKind::IsoMax,
        "isomaxplus" => HeadKind::IsoMaxPlus,
        "dismax" => HeadKind::DisMax,
        h => panic!("unknown head {h}"),
    };
    let batch = meta["batch"].as_u64().unwrap() as usize;
    let cfg = ModelConfig {
        arch,
        head,
        in_channels: 3,
        height: 32,
        width: 32,
        num_classes: 10,
        mean: vec![0.0; 3],
        std: vec![1.0; 3],
    };
    let model = Model::new(&gpu, cfg, 0).unwrap();
    hash_init(&model);
    let x = Tensor::from_slice(
        &gpu,
        &scaled("parity.big.images", batch * 3 * 32 * 32, 3f64.sqrt()),
        &[batch, 3, 32, 32],
    )
    .unwrap();
    let y = Tensor::from_slice(&gpu, &[3.0, 7.0], &[batch]).unwrap();
    let loss = model
        .forward(&x, true)
        .unwrap()
        .cross_entropy(&y, head.train_scale())
        .unwrap();
    let grads_of = loss.backward().unwrap();
    let got = f64::from(loss.item().unwrap());
    let want = meta["loss"].as_f64().unwrap();
    let mut r = Report::default();
    let loss_dev = (got - want).abs() / want.abs();
    let loss_f32 = meta["loss_f32_dev"].as_f64().unwrap();
    r.check(
        format!("{arch_name} step 0 loss: isomax {got:.7} vs PyTorch {want:.7}"),
        loss_dev,
        LOSS_RTOL.max(F32_FACTOR * loss_f32),
    );
    let grads = meta["gradients"].as_object().unwrap();
    let mut seen = 0;
    let mut worst = (0.0, String::new());
    let mut worst_f32: f64 = 0.0;
    model.visit("", &mut |name, t, role| {
        if role != Role::Param {
            return;
        }
        seen += 1;
        let w = &grads[&name];
        let g: Vec<f64> = grads_of
            .get(t)
            .unwrap_or_else(|| panic!("{arch_name}: no gradient for {name}"))
            .to_vec()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect();
        let n = g.len();
        let sum: f64 = g.iter().sum();
        let sum_sq: f64 = g.iter().map(|v| v * v).sum();
        let (wsum, wsq) = (w["sum"].as_f64().unwrap(), w["sum_sq"].as_f64().unwrap());
        let idx: Vec<usize> = w["indices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as usize)
            .collect();
        let want_vals = floats(&w["values"]);
        let rms = (wsq / n as f64).sqrt();
        let scale = want_vals.iter().fold(rms, |m, v| m.max(v.abs())).max(1e-30);
        let sample_dev = idx
            .iter()
            .zip(&want_vals)
            .map(|(&i, v)| (g[i] - v).abs() / scale)
            .fold(0.0, f64::max);
        let sq_dev = (sum_sq - wsq).abs() / wsq.max(1e-30);
        let sum_dev = (sum - wsum).abs() / (n as f64 * wsq).sqrt().max(1e-30);
        let dev = sample_dev.max(sq_dev).max(sum_dev);
        let f32_dev = w["f32_dev"].as_f64().unwrap();
        worst_f32 = worst_f32.max(f32_dev);
        if dev > worst.0 || !dev.is_finite() {
            worst = (dev, name.clone());
        }
        r.check(
            format!(
                "{arch_name} step 0 gradient of {name}: sum {sum:.6e} vs {wsum:.6e}, sum of squares {sum_sq:.6e} vs {wsq:.6e}, samples {sample_dev:.2e} (PyTorch f32: {f32_dev:.2e})"
            ),
            dev,
            GRAD_TOL.max(F32_FACTOR * f32_dev),
        );
    });
    assert_eq!(seen, grads.len(), "{arch_name}: parameter count");
    r.lines.push(format!(
        "{arch_name:<12} loss {loss_dev:.1e} (PyTorch f32 {loss_f32:.1e})  gradients {:.1e} ({}; PyTorch f32 up to {worst_f32:.1e})",
        worst.0, worst.1
    ));
    r.finish(&format!(
        "{arch_name}, one step at batch {batch}, largest deviation from PyTorch:"
    ));
}

#[test]
fn densenet100_step_like_pytorch() {
    big(Arch::Densenet100, "densenet100");
}

#[test]
fn resnet34_step_like_pytorch() {
    big(Arch::Resnet34, "resnet34");
}
