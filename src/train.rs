//! Training: SGD over mini-batches with the paper's protocol, progress, per-epoch JSON log,
//! atomic checkpoints, exact resume, and the calibrated entropic-score threshold.

use crate::checkpoint::{self, Checkpoint, TrainState};
use crate::data::{Augment, Batch, Dataset, Loader, Normalization};
use crate::error::{Error, Result};
use crate::eval::{self, Scored};
use crate::gpu::Gpu;
use crate::nn::{HeadKind, Model, ModelConfig};
use crate::optim::{Sgd, SgdConfig};
use crate::tensor::Tensor;
#[cfg(feature = "cli")]
use indicatif::{ProgressBar, ProgressStyle};
#[cfg(not(feature = "cli"))]
use quiet::ProgressBar;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What to train and how.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Backbone architecture.
    pub arch: crate::nn::Arch,
    /// Classification head, and so the loss.
    pub head: HeadKind,
    /// Passes over the training set.
    pub epochs: usize,
    /// Images per training step.
    pub batch_size: usize,
    /// Optimizer and learning-rate schedule.
    pub sgd: SgdConfig,
    /// Seed of initialisation, holdout split, shuffling and augmentation.
    pub seed: u64,
    /// Random crop (4-pixel zero padding) and horizontal flip.
    pub augment: bool,
    /// Images held out of training to calibrate the ES threshold (at most a fifth of the
    /// set). With 0 the whole set trains (the paper's setting) and the threshold is
    /// calibrated on the training images themselves, which [`TrainSummary::threshold_source`]
    /// says.
    pub holdout: usize,
    /// The entropic scale E_s of the loss, −log softmax(E_s·z)_y (the paper's 10); `None`
    /// takes the head's default ([`HeadKind::train_scale`]). Only the IsoMax family has one.
    pub entropic_scale: Option<f32>,
    /// DisMax's fractional probability regularization ([`crate::dismax`]): `None` turns it
    /// on for DisMax (as the authors train it) and leaves it off otherwise; `Some(true)`
    /// needs the DisMax head and a batch of at least 2.
    pub fpr: Option<bool>,
    /// Run directory: `checkpoint.safetensors` and the `log.jsonl` training log go here.
    pub out_dir: PathBuf,
    /// Continue from `out_dir/checkpoint.safetensors`.
    pub resume: bool,
    /// Start afresh even if `out_dir` holds a checkpoint (it is overwritten, the log
    /// restarted). Without it (or `resume`), such an `out_dir` is refused.
    pub force: bool,
    /// Show a progress bar.
    pub progress: bool,
    /// Override the normalisation (else computed from the training data).
    pub normalization: Option<Normalization>,
}

/// What training produced.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// The checkpoint written after the last epoch.
    pub checkpoint: PathBuf,
    /// Mean training loss over the last epoch's steps.
    pub final_loss: f32,
    /// Training accuracy over the last epoch (on augmented images when augmenting), in 0..=1.
    pub train_accuracy: f32,
    /// Accuracy on the test set after the last epoch, if one was given.
    pub test_accuracy: Option<f32>,
    /// Entropic-score threshold keeping 95 % of the calibration images, computed after the
    /// final epoch.
    pub es_threshold: Option<f32>,
    /// Which images the ES threshold was calibrated on.
    pub threshold_source: Option<String>,
    /// Training throughput of the last epoch (steps × batch size / wall time).
    pub images_per_second: f64,
}

/// Upload buffers for one batch shape, reused every step.
struct Inputs {
    images: Tensor,
    labels: Tensor,
    /// The FPR loss weights `[B, C]` (DisMax with FPR only).
    fpr_weights: Option<Tensor>,
}

fn labels_f32(b: &Batch) -> Vec<f32> {
    b.labels.iter().map(|&l| l as f32).collect()
}

/// Train a model on `train` (and report accuracy on `test` after each epoch).
pub fn train(
    gpu: &Gpu,
    cfg: &TrainConfig,
    train: Dataset,
    test: Option<&Dataset>,
) -> Result<TrainSummary> {
    if train.is_empty() {
        return Err(Error::Config(format!(
            "training set {} is empty",
            train.name
        )));
    }
    if cfg.batch_size == 0 || cfg.epochs == 0 {
        return Err(Error::Config(
            "batch size and epochs must be positive".into(),
        ));
    }
    check_hyper_parameters(&cfg.sgd)?;
    train.validate()?;
    if let Some(t) = test {
        t.validate()?;
    }
    std::fs::create_dir_all(&cfg.out_dir).map_err(|e| Error::io(&cfg.out_dir, e))?;
    // Held until training returns; the OS releases it if the process dies, so a killed
    // run never blocks its own resume.
    let _lock = lock_run_dir(&cfg.out_dir)?;
    let scale = entropic_scale(cfg)?;
    let fpr = match cfg.fpr {
        None => cfg.head == HeadKind::DisMax,
        Some(true) if cfg.head != HeadKind::DisMax => {
            return Err(Error::Config(
                "fractional probability regularization is DisMax's: use it with the dismax loss"
                    .into(),
            ));
        }
        Some(on) => on,
    };
    if fpr && cfg.batch_size < 2 {
        return Err(Error::Config(
            "fractional probability regularization needs a batch size of at least 2".into(),
        ));
    }
    let ck_path = cfg.out_dir.join("checkpoint.safetensors");
    let log_path = cfg.out_dir.join("log.jsonl");
    if cfg.resume {
        // A run killed between writing its checkpoint and renaming it left only the
        // temporary file: take it if it is complete.
        if checkpoint::recover(&ck_path)? {
            eprintln!(
                "recovered {} from its complete temporary file",
                ck_path.display()
            );
        }
        if !ck_path.exists() {
            let tmp = checkpoint::tmp_path(&ck_path);
            return Err(Error::Config(format!(
                "nothing to resume: {} does not exist{}",
                ck_path.display(),
                if tmp.exists() {
                    format!(" ({} is an incomplete save)", tmp.display())
                } else {
                    String::new()
                }
            )));
        }
    } else if ck_path.exists() || checkpoint::tmp_path(&ck_path).exists() {
        if !cfg.force {
            return Err(Error::Config(format!(
                "{} already holds a checkpoint: pass --resume to continue that run, or \
                 --force to overwrite it",
                cfg.out_dir.display()
            )));
        }
        for p in [&log_path, &checkpoint::tmp_path(&ck_path)] {
            if p.exists() {
                std::fs::remove_file(p).map_err(|e| Error::io(p, e))?;
            }
        }
    }
    let train_name = train.name.clone();
    let holdout_n = cfg.holdout.min(train.len() / 5);
    let (train, holdout) = train.split_holdout(holdout_n, cfg.seed);
    if train.len() < cfg.batch_size {
        return Err(Error::Config(format!(
            "training set has {} images after holding out {holdout_n}, fewer than one batch of {}",
            train.len(),
            cfg.batch_size
        )));
    }
    let norm = cfg
        .normalization
        .clone()
        .map_or_else(|| Normalization::from_dataset(&train), Ok)?;
    let config = ModelConfig {
        arch: cfg.arch,
        head: cfg.head,
        in_channels: train.channels,
        height: train.height,
        width: train.width,
        num_classes: train.num_classes,
        mean: norm.mean.clone(),
        std: norm.std.clone(),
    };
    let model = Model::new(gpu, config, cfg.seed)?;
    let mut opt = Sgd::new(model.params(), cfg.sgd.clone())?;
    let mut start_epoch = 0;
    if cfg.resume {
        let ck = Checkpoint::load(&ck_path)?;
        if ck.config != model.config {
            return Err(Error::Config(format!(
                "{}: checkpoint config {:?} differs from this run's {:?}",
                ck_path.display(),
                ck.config,
                model.config
            )));
        }
        let stored = ck.state.entropic_scale(cfg.head);
        if stored != scale {
            return Err(Error::Config(format!(
                "{}: checkpoint was trained with entropic scale {stored}, this run asks for {scale}",
                ck_path.display()
            )));
        }
        if ck.state.fpr != fpr {
            return Err(Error::Config(format!(
                "{}: checkpoint was trained with fractional probability regularization {}, \
                 this run has it {}",
                ck_path.display(),
                if ck.state.fpr { "on" } else { "off" },
                if fpr { "on" } else { "off" }
            )));
        }
        ck.restore(&model, Some(opt.velocity()))?;
        start_epoch = ck.state.epoch;
        trim_log(&log_path, start_epoch)?;
    }
    let augment = cfg.augment.then(Augment::cifar);
    let loader = Loader::new(
        &train,
        cfg.batch_size,
        true,
        cfg.seed,
        augment,
        norm.clone(),
        true,
    )?;
    let shape = [cfg.batch_size, train.channels, train.height, train.width];
    let batch_bytes = shape.iter().map(|&d| d as u64).product::<u64>() * 4;
    let max_binding = gpu.device().limits().max_storage_buffer_binding_size;
    if batch_bytes > max_binding {
        return Err(Error::Config(format!(
            "a batch of {} images of {}x{}x{} takes {batch_bytes} bytes, more than the \
             adapter's largest storage binding ({max_binding} bytes): lower --batch-size",
            cfg.batch_size, train.channels, train.height, train.width
        )));
    }
    let inputs = Inputs {
        images: Tensor::zeros(gpu, &shape)?,
        labels: Tensor::zeros(gpu, &[cfg.batch_size])?,
        fpr_weights: if fpr {
            Some(Tensor::zeros(gpu, &[cfg.batch_size, train.num_classes])?)
        } else {
            None
        },
    };
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::io(&log_path, e))?;
    let mut summary = TrainSummary {
        checkpoint: ck_path.clone(),
        final_loss: f32::NAN,
        train_accuracy: 0.0,
        test_accuracy: None,
        es_threshold: None,
        threshold_source: None,
        images_per_second: 0.0,
    };
    let threshold_source = if holdout.is_empty() {
        format!(
            "the {} training images themselves (no held-out split: --holdout 0), so it is optimistic",
            train.len()
        )
    } else {
        format!("{} held-out training images", holdout.len())
    };
    let mut batch = Batch::default();
    for epoch in start_epoch..cfg.epochs {
        let lr = cfg.sgd.lr_at(epoch);
        let bar = progress_bar(cfg.progress, loader.num_batches() as u64, epoch, cfg.epochs);
        let t0 = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        let mut pending: Option<(crate::gpu::PendingRead, crate::gpu::PendingRead, Vec<u32>)> =
            None;
        let mut epoch_iter = loader.epoch(epoch);
        let mut step = 0;
        while epoch_iter.next_into(&mut batch) {
            let mut counted = batch.labels.clone();
            let loss = if let Some(weights) = &inputs.fpr_weights {
                // DisMax FPR: the second half of the batch becomes quadrant mixes; the
                // accuracy counts the unmixed first half only.
                let (c, h, w) = (train.channels, train.height, train.width);
                crate::dismax::quadrant_mix(&mut batch.images, batch.len, c, h, w)?;
                let (a, k) = crate::dismax::fpr_weights(&batch.labels, train.num_classes)?;
                counted.truncate(batch.len / 2);
                inputs.images.write(&batch.images)?;
                weights.write(&a)?;
                let logits = model.forward(&inputs.images, true)?;
                (crate::dismax::fpr_loss(&logits, weights, k, scale)?, logits)
            } else {
                inputs.images.write(&batch.images)?;
                inputs.labels.write(&labels_f32(&batch))?;
                let logits = model.forward(&inputs.images, true)?;
                (logits.cross_entropy(&inputs.labels, scale)?, logits)
            };
            let (loss, logits) = loss;
            let grads = loss.backward()?;
            opt.step(&grads, lr)?;
            // Read the previous step's results while this one runs: one submit per step.
            let next = (loss.read_async(), logits.read_async(), counted);
            if let Some(prev) = pending.replace(next) {
                let (l, c) = resolve(prev, train.num_classes)?;
                check_loss(l, epoch, step, &ck_path)?;
                loss_sum += l as f64;
                correct += c.0;
                seen += c.1;
                step += 1;
                update_bar(
                    &bar,
                    loss_sum / step as f64,
                    (correct, seen),
                    step * cfg.batch_size,
                    t0,
                );
            }
        }
        if let Some(prev) = pending.take() {
            let (l, c) = resolve(prev, train.num_classes)?;
            check_loss(l, epoch, step, &ck_path)?;
            loss_sum += l as f64;
            correct += c.0;
            seen += c.1;
            step += 1;
        }
        let secs = t0.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let train_loss = (loss_sum / step.max(1) as f64) as f32;
        let train_acc = correct as f32 / seen.max(1) as f32;
        let test_acc = match test {
            Some(t) => Some(eval::score_dataset(gpu, &model, t, 256)?.accuracy()),
            None => None,
        };
        let es_threshold = if epoch + 1 == cfg.epochs {
            let calibration = if holdout.is_empty() { &train } else { &holdout };
            let held: Scored = eval::score_dataset(gpu, &model, calibration, 256)?;
            Some(held.threshold_es(0.95)?)
        } else {
            None
        };
        let ips = (step * cfg.batch_size) as f64 / secs;
        let state = TrainState {
            epoch: epoch + 1,
            epochs: cfg.epochs,
            sgd: cfg.sgd.clone(),
            batch_size: cfg.batch_size,
            seed: cfg.seed,
            es_threshold,
            train_data: train_name.clone(),
            augment: cfg.augment,
            holdout: holdout_n,
            entropic_scale: Some(scale),
            threshold_source: es_threshold.map(|_| threshold_source.clone()),
            fpr,
        };
        // The log line goes first: a kill between the two leaves a line the resumed run
        // drops and writes again (see `trim_log`), never a saved epoch without its line.
        let line = serde_json::json!({
            "epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_accuracy": train_acc,
            "test_accuracy": test_acc, "seconds": secs, "images_per_second": ips,
        });
        writeln!(log, "{line}")
            .and_then(|()| log.sync_data())
            .map_err(|e| Error::io(&log_path, e))?;
        checkpoint::save(&ck_path, &model, Some(opt.velocity()), &state)?;
        if cfg.progress {
            eprintln!(
                "epoch {}/{}  loss {train_loss:.4}  train acc {:.2}%{}  {ips:.1} img/s",
                epoch + 1,
                cfg.epochs,
                100.0 * train_acc,
                test_acc
                    .map(|a| format!("  test acc {:.2}%", 100.0 * a))
                    .unwrap_or_default()
            );
        }
        summary = TrainSummary {
            checkpoint: ck_path.clone(),
            final_loss: train_loss,
            train_accuracy: train_acc,
            test_accuracy: test_acc,
            es_threshold: es_threshold.or(summary.es_threshold),
            threshold_source: es_threshold
                .map(|_| threshold_source.clone())
                .or(summary.threshold_source),
            images_per_second: ips,
        };
    }
    Ok(summary)
}

/// Refuses learning rates and weight decays that cannot train: the learning rate must be
/// finite and > 0, the weight decay and momentum finite and ≥ 0.
pub fn check_hyper_parameters(sgd: &SgdConfig) -> Result<()> {
    if !(sgd.lr.is_finite() && sgd.lr > 0.0) {
        return Err(Error::Config(format!(
            "learning rate {} is invalid: it must be finite and > 0",
            sgd.lr
        )));
    }
    if !(sgd.weight_decay.is_finite() && sgd.weight_decay >= 0.0) {
        return Err(Error::Config(format!(
            "weight decay {} is invalid: it must be finite and >= 0",
            sgd.weight_decay
        )));
    }
    if !(sgd.momentum.is_finite() && sgd.momentum >= 0.0) {
        return Err(Error::Config(format!(
            "momentum {} is invalid: it must be finite and >= 0",
            sgd.momentum
        )));
    }
    Ok(())
}

/// An exclusive advisory lock on `dir/.lock`, so that two runs never write one directory.
fn lock_run_dir(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join(".lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Config(format!(
            "{} is in use by another training run (lock {})",
            dir.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

/// Drops the log lines of epochs after `epoch` (written by a run killed before it saved
/// them), so that a resumed run's log has each epoch once.
fn trim_log(path: &Path, epoch: usize) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(()); // no log yet (or unreadable: appending will report it)
    };
    let keep: Vec<&str> = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["epoch"].as_u64())
                .is_none_or(|e| e as usize <= epoch)
        })
        .collect();
    if keep.len() == text.lines().count() {
        return Ok(());
    }
    let tmp = path.with_extension("jsonl.tmp");
    let body: String = keep.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&tmp, body).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Stops the run at the first non-finite loss, naming the step. Nothing is saved, so the
/// checkpoint on disk is the last good one.
fn check_loss(loss: f32, epoch: usize, step: usize, ck: &Path) -> Result<()> {
    if loss.is_finite() {
        return Ok(());
    }
    // Checkpoints are written after each completed epoch (`epoch` is 0-based).
    let kept = if epoch > 0 {
        format!(
            "{} keeps the last good state (after epoch {epoch})",
            ck.display()
        )
    } else {
        "no checkpoint was written".to_string()
    };
    Err(Error::Diverged {
        epoch: epoch + 1,
        step: step + 1,
        loss,
        kept,
    })
}

/// The entropic scale of `cfg`'s loss: the given one (finite, positive, IsoMax family only)
/// or the head's default.
fn entropic_scale(cfg: &TrainConfig) -> Result<f32> {
    match cfg.entropic_scale {
        None => Ok(cfg.head.train_scale()),
        Some(_) if cfg.head == HeadKind::SoftMax => Err(Error::Config(
            "the SoftMax loss has no entropic scale (it is for isomax, isomaxplus, dismax)".into(),
        )),
        Some(s) if s.is_finite() && s > 0.0 => Ok(s),
        Some(s) => Err(Error::Config(format!(
            "entropic scale {s} must be finite and positive"
        ))),
    }
}

/// Wait for a step's loss and logits; count correct predictions of the first
/// `labels.len()` rows: (correct, counted).
fn resolve(
    p: (crate::gpu::PendingRead, crate::gpu::PendingRead, Vec<u32>),
    classes: usize,
) -> Result<(f32, (usize, usize))> {
    let (loss, logits, labels) = p;
    let l = loss.wait()?[0];
    let z = logits.wait()?;
    let correct = labels
        .iter()
        .enumerate()
        .filter(|(i, y)| {
            let row = &z[i * classes..(i + 1) * classes];
            let arg = row
                .iter()
                .enumerate()
                .fold(0, |best, (j, v)| if *v > row[best] { j } else { best });
            arg == **y as usize
        })
        .count();
    Ok((l, (correct, labels.len())))
}

/// Without the `cli` feature (an embedded engine) there is no terminal to draw on.
#[cfg(not(feature = "cli"))]
mod quiet {
    pub(super) struct ProgressBar;
    impl ProgressBar {
        pub(super) fn inc(&self, _: u64) {}
        pub(super) fn set_message(&self, _: String) {}
        pub(super) fn finish_and_clear(&self) {}
    }
}

#[cfg(not(feature = "cli"))]
fn progress_bar(_show: bool, _len: u64, _epoch: usize, _epochs: usize) -> ProgressBar {
    ProgressBar
}

#[cfg(feature = "cli")]
fn progress_bar(show: bool, len: u64, epoch: usize, epochs: usize) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{}/{}", epoch + 1, epochs));
    bar
}

fn update_bar(
    bar: &ProgressBar,
    loss: f64,
    (correct, counted): (usize, usize),
    images: usize,
    t0: Instant,
) {
    bar.inc(1);
    bar.set_message(format!(
        "loss {loss:.4} acc {:.1}% {:.1} img/s",
        100.0 * correct as f64 / counted.max(1) as f64,
        images as f64 / t0.elapsed().as_secs_f64()
    ));
}

/// Load a model from a checkpoint file.
pub fn load_model(gpu: &Gpu, path: &Path) -> Result<(Model, Checkpoint)> {
    let ck = Checkpoint::load(path)?;
    let c = &ck.config;
    let image_bytes = (c.in_channels * c.height * c.width * 4) as u64;
    let max_binding = gpu.device().limits().max_storage_buffer_binding_size;
    if image_bytes > max_binding {
        return Err(Error::Checkpoint {
            path: path.display().to_string(),
            detail: format!(
                "bad model config: one {}x{}x{} input image takes {image_bytes} bytes, more \
                 than this adapter's largest storage binding ({max_binding} bytes)",
                c.in_channels, c.height, c.width
            ),
        });
    }
    let model = Model::new(gpu, ck.config.clone(), ck.state.seed)?;
    ck.restore(&model, None)?;
    Ok((model, ck))
}
