//! The `isomax` command: thin argument parsing over the library.

mod demo;

use clap::{Parser, Subcommand};
use isomax::data::Dataset;
use isomax::nn::{Arch, HeadKind};
use isomax::optim::SgdConfig;
use isomax::train::{TrainConfig, train};
use isomax::{Gpu, Result, eval, ood};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "isomax",
    version,
    about = "Train classifiers that know what they don't know (IsoMax loss + Entropic Score) on any GPU wgpu reaches.\n\nWith no command, runs the demo: SoftMax, IsoMax and IsoMax+ on the MNIST and Fashion-MNIST subsets in assets/, each as the other's out-of-distribution set."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model (datasets as FORMAT:PATH or PATH; formats idx, cifar10, cifar100, svhn, folder).
    Train {
        /// resnet34, densenet100, resnet-tiny, densenet-tiny
        #[arg(long, default_value = "resnet-tiny")]
        model: String,
        /// softmax, isomax, isomaxplus, dismax
        #[arg(long, default_value = "isomax")]
        loss: String,
        #[arg(long)]
        train: String,
        #[arg(long)]
        test: Option<String>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 300)]
        epochs: usize,
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
        #[arg(long, default_value_t = 0.1)]
        lr: f32,
        /// Epochs at which the learning rate drops ×0.1 (default: 50 %, 66 %, 83 % of the run, the paper's 150/200/250 of 300).
        #[arg(long, value_delimiter = ',')]
        milestones: Option<Vec<usize>>,
        #[arg(long, default_value_t = 1e-4)]
        weight_decay: f32,
        #[arg(long, default_value_t = 0, conflicts_with = "seeds")]
        seed: u64,
        /// Train once per seed, into OUT/seed-N each (evaluate them together with `eval --checkpoint OUT/seed-*/checkpoint.safetensors`).
        #[arg(long, value_delimiter = ',')]
        seeds: Option<Vec<u64>>,
        /// Turn off DisMax's fractional probability regularization (on by default for --loss dismax).
        #[arg(long)]
        no_fpr: bool,
        /// Random crop (4-pixel padding) + horizontal flip for any data (on by default for cifar10, cifar100, svhn).
        #[arg(long, conflicts_with = "no_augment")]
        augment: bool,
        /// Turn the default CIFAR/SVHN augmentation off.
        #[arg(long)]
        no_augment: bool,
        /// The entropic scale E_s of the IsoMax-family losses (default 10, the paper's).
        #[arg(long)]
        entropic_scale: Option<f32>,
        /// Train only on these classes, relabelled 0.. in this order (open-set splits), e.g. 0,1,2,3,4,5.
        #[arg(long, value_delimiter = ',')]
        classes: Option<Vec<u32>>,
        /// Use only the first N training images.
        #[arg(long)]
        limit: Option<usize>,
        /// Images held out to calibrate the ES threshold (0: train on everything, the paper's setting; the threshold then comes from the training images).
        #[arg(long, default_value_t = 1000)]
        holdout: usize,
        /// Continue from OUT/checkpoint.safetensors.
        #[arg(long)]
        resume: bool,
        /// Start afresh in an OUT that already holds a checkpoint, overwriting it.
        #[arg(long, conflicts_with = "resume")]
        force: bool,
        /// Number of classes of the training set (default: the format's; IDX files do not record one, 10 is assumed).
        #[arg(long)]
        num_classes: Option<usize>,
    },
    /// Evaluate a checkpoint: accuracy and OOD metrics per OOD set and score.
    Eval {
        /// One checkpoint, or several runs of one setting (e.g. seeds): then every metric is reported as mean ± std.
        #[arg(long, num_args = 1.., required = true)]
        checkpoint: Vec<PathBuf>,
        #[arg(long)]
        test: String,
        #[arg(long, num_args = 1..)]
        ood: Vec<String>,
        #[arg(long)]
        json: Option<PathBuf>,
        #[arg(long)]
        dump_scores: Option<PathBuf>,
        /// Histograms of max probability and entropic score, in vs each OOD set (PNG).
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Use only the first N images of each set.
        #[arg(long)]
        limit: Option<usize>,
        /// Keep only these classes of the test set, relabelled 0.. in this order (as at training).
        #[arg(long, value_delimiter = ',')]
        classes: Option<Vec<u32>>,
        /// Keep only these classes of each OOD set (e.g. the held-out classes of an open-set split).
        #[arg(long, value_delimiter = ',')]
        ood_classes: Option<Vec<u32>>,
    },
    /// Classify images and say whether each is in- or out-of-distribution.
    Score {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Show the adapter, backend and limits.
    Info,
    /// Write the WGSL of every kernel module and variant the engine can build.
    Shaders {
        /// Folder for the `.wgsl` files (created if missing).
        #[arg(long)]
        dump: PathBuf,
    },
    /// OOD metrics of two score files (one score per line, higher = more in-distribution).
    Metrics {
        in_scores: PathBuf,
        out_scores: PathBuf,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Build a checkpoint from a PyTorch state_dict in safetensors (scripts/torch_reference.py's or the authors' DenseNet-BC naming).
    Import {
        #[arg(long)]
        pytorch: PathBuf,
        #[arg(long)]
        model: String,
        #[arg(long)]
        loss: String,
        #[arg(long)]
        out: PathBuf,
        /// Input image side (height = width).
        #[arg(long, default_value_t = 32)]
        size: usize,
        /// Per-channel input normalisation the PyTorch model was trained with (default 0 and 1).
        #[arg(long, value_delimiter = ',')]
        mean: Option<Vec<f32>>,
        #[arg(long, value_delimiter = ',')]
        std: Option<Vec<f32>>,
    },
    /// Write a checkpoint's weights as a PyTorch state_dict in safetensors.
    Export {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        pytorch: PathBuf,
        /// reference (scripts/torch_reference.py) or official (the authors' DenseNet-BC code)
        #[arg(long, default_value = "reference")]
        naming: String,
    },
    /// The default demo run (what `cargo run --release` does).
    Demo {
        #[arg(long, default_value_t = DEMO_EPOCHS)]
        epochs: usize,
        /// One run per seed; with several, every figure is also reported as mean ± std.
        #[arg(long, value_delimiter = ',', default_value = "1")]
        seeds: Vec<u64>,
    },
}

/// Epochs of each demo training run.
const DEMO_EPOCHS: usize = 2;

fn parse_head(s: &str) -> Result<HeadKind> {
    Ok(match s {
        "softmax" => HeadKind::SoftMax,
        "isomax" => HeadKind::IsoMax,
        "isomaxplus" | "isomax+" => HeadKind::IsoMaxPlus,
        "dismax" => HeadKind::DisMax,
        _ => {
            return Err(isomax::Error::Config(format!(
                "unknown loss '{s}' (expected softmax, isomax, isomaxplus, dismax)"
            )));
        }
    })
}

/// How a set's labels are checked before use.
enum Labels {
    /// Against the format's class count, or the given one (`--num-classes`), before any
    /// class filter.
    Format(Option<usize>),
    /// Against a model's class count, after the class filter.
    Model(usize),
    /// Not at all: out-of-distribution sets, whose labels are never used.
    Ignored,
}

fn open(
    spec: &str,
    limit: Option<usize>,
    classes: Option<&[u32]>,
    labels: Labels,
) -> Result<Dataset> {
    let mut d = Dataset::load(spec)?;
    match labels {
        Labels::Format(None) => d.check_labels()?,
        Labels::Format(Some(n)) => d = d.with_classes(n)?,
        Labels::Model(_) | Labels::Ignored => {}
    }
    if let Some(cs) = classes {
        if let Some(c) = cs.iter().find(|&&c| c as usize >= d.num_classes) {
            return Err(isomax::Error::Config(format!(
                "{spec}: class {c} does not exist (the set has {} classes)",
                d.num_classes
            )));
        }
        let name = format!("{}[classes {}]", d.name, join_u32(cs));
        d = d.filter_classes(cs);
        d.name = name;
    }
    if let Some(n) = limit {
        d.truncate(n);
    }
    if let Labels::Model(n) = labels {
        d = d.with_classes(n)?;
    }
    Ok(d)
}

fn join_u32(v: &[u32]) -> String {
    v.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether the paper trains on this format with random crop + flip (CIFAR-10/100, SVHN).
fn paper_augments(format: isomax::data::Format) -> bool {
    use isomax::data::Format;
    matches!(format, Format::Cifar10 | Format::Cifar100 | Format::Svhn)
}

fn write_json(path: &std::path::Path, v: &serde_json::Value) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(v).expect("json")).map_err(|e| {
        isomax::Error::Io {
            path: path.display().to_string(),
            source: e,
        }
    })
}

fn run(cli: Cli) -> Result<()> {
    match cli.command.unwrap_or(Command::Demo {
        epochs: DEMO_EPOCHS,
        seeds: vec![1],
    }) {
        Command::Info => {
            let gpu = Gpu::new()?;
            println!("{}", gpu.report());
        }
        Command::Shaders { dump } => {
            let files = isomax::ops::shaders::dump(&dump)?;
            println!("{} WGSL files in {}", files.len(), dump.display());
        }
        Command::Metrics {
            in_scores,
            out_scores,
            json,
        } => {
            let a = ood::read_scores(&in_scores)?;
            let b = ood::read_scores(&out_scores)?;
            let m = ood::ood_metrics(&a, &b)?;
            println!("in: {} scores, out: {} scores", a.len(), b.len());
            println!(
                "TNR at TPR 95%: {:.2}\nAUROC:          {:.2}\nDTACC:          {:.2}\nAUIN:           {:.2}\nAUOUT:          {:.2}",
                m.tnr_at_tpr95, m.auroc, m.dtacc, m.auin, m.auout
            );
            if let Some(p) = json {
                write_json(&p, &m.to_json())?;
            }
        }
        Command::Train {
            model,
            loss,
            train: train_spec,
            test,
            out,
            epochs,
            batch_size,
            lr,
            milestones,
            weight_decay,
            seed,
            seeds,
            no_fpr,
            augment,
            no_augment,
            entropic_scale,
            classes,
            limit,
            holdout,
            resume,
            force,
            num_classes,
        } => {
            let gpu = Gpu::new()?;
            eprintln!("device: {} ({})", gpu.report().name, gpu.report().backend);
            let train_data = open(
                &train_spec,
                limit,
                classes.as_deref(),
                Labels::Format(num_classes),
            )?;
            let format = isomax::data::Format::of_spec(&train_spec)?;
            let normalization = format.paper_normalization();
            let test_labels = Labels::Model(train_data.num_classes);
            let test_data = test
                .as_deref()
                .map(|t| open(t, None, classes.as_deref(), test_labels))
                .transpose()?;
            let milestones = match milestones {
                Some(m) => {
                    SgdConfig::check_milestones(&m, epochs)?;
                    m
                }
                None => SgdConfig::paper_milestones(epochs),
            };
            // The paper's augmentation is part of its CIFAR/SVHN protocol.
            let augment = !no_augment && (augment || paper_augments(format));
            let head = parse_head(&loss)?;
            let mut cfg = TrainConfig {
                arch: Arch::parse(&model)?,
                head,
                epochs,
                batch_size,
                sgd: SgdConfig {
                    lr,
                    weight_decay,
                    milestones,
                    ..SgdConfig::default()
                },
                seed,
                augment,
                holdout,
                entropic_scale,
                fpr: no_fpr.then_some(false),
                out_dir: out.clone(),
                resume,
                force,
                progress: true,
                normalization,
            };
            let runs: Vec<(u64, PathBuf)> = match &seeds {
                None => vec![(seed, out.clone())],
                Some(list) => list
                    .iter()
                    .map(|s| (*s, out.join(format!("seed-{s}"))))
                    .collect(),
            };
            let mut accuracies = Vec::new();
            for (seed, dir) in runs {
                cfg.seed = seed;
                cfg.out_dir = dir;
                if seeds.is_some() {
                    eprintln!("seed {seed} -> {}", cfg.out_dir.display());
                }
                let s = train(&gpu, &cfg, train_data.clone(), test_data.as_ref())?;
                println!("checkpoint: {}", s.checkpoint.display());
                if let Some(t) = s.es_threshold {
                    let from = s.threshold_source.as_deref().unwrap_or("held-out images");
                    println!("ES threshold {t:.5}: keeps 95% of {from}");
                }
                if let Some(a) = s.test_accuracy {
                    accuracies.push(100.0 * a as f64);
                }
            }
            if seeds.as_ref().is_some_and(|l| l.len() > 1) && !accuracies.is_empty() {
                let (m, sd) = eval::mean_std(&accuracies);
                println!(
                    "test accuracy over {} seeds: {m:.2} ± {sd:.2}% (mean ± sample std)",
                    accuracies.len()
                );
            }
        }
        Command::Eval {
            checkpoint,
            test,
            ood: ood_specs,
            json,
            dump_scores,
            plot,
            limit,
            classes,
            ood_classes,
        } => {
            let gpu = Gpu::new()?;
            // Bad checkpoints are reported before any data is read.
            let mut num_classes = Vec::new();
            for ck in &checkpoint {
                num_classes.push(isomax::checkpoint::Checkpoint::load(ck)?.config.num_classes);
            }
            if let Some(i) = num_classes.iter().position(|&n| n != num_classes[0]) {
                return Err(isomax::Error::Config(format!(
                    "{} has {} classes, {} has {}: evaluate runs of one setting together",
                    checkpoint[i].display(),
                    num_classes[i],
                    checkpoint[0].display(),
                    num_classes[0]
                )));
            }
            let test_labels = Labels::Model(num_classes[0]);
            let test_data = open(&test, limit, classes.as_deref(), test_labels)?;
            let ood_data = ood_specs
                .iter()
                .map(|spec| open(spec, limit, ood_classes.as_deref(), Labels::Ignored))
                .collect::<Result<Vec<_>>>()?;
            let mut reports = Vec::new();
            for (i, ck) in checkpoint.iter().enumerate() {
                let (model, _) = isomax::train::load_model(&gpu, ck)?;
                let inside = eval::score_dataset(&gpu, &model, &test_data, 256)?;
                let mut outside = Vec::new();
                for d in &ood_data {
                    outside.push((d.name.clone(), eval::score_dataset(&gpu, &model, d, 256)?));
                }
                let rep = eval::report(model.config.head, &inside, &outside)?;
                if checkpoint.len() > 1 {
                    println!("{}:", ck.display());
                }
                print!("{}", rep.table());
                reports.push(rep);
                // Scores and plots are of one model: the first.
                if i == 0 {
                    if let Some(p) = &dump_scores {
                        eval::write_scores_csv(p, &test_data.name, &inside, &outside)?;
                    }
                    if let Some(p) = &plot {
                        eval::plot(p, &inside, &outside)?;
                    }
                }
            }
            if checkpoint.len() > 1 {
                let summary = eval::SeedSummary::new(reports)?;
                print!("\n{}", summary.table());
                if let Some(p) = json {
                    write_json(&p, &summary.to_json())?;
                }
            } else if let Some(p) = json {
                write_json(&p, &reports[0].to_json())?;
            }
        }
        Command::Score { checkpoint, images } => {
            let gpu = Gpu::new()?;
            let (model, ck) = isomax::train::load_model(&gpu, &checkpoint)?;
            let mut failed = 0;
            for path in &images {
                let d = isomax::data::folder::from_files(
                    &path.display().to_string(),
                    &[(path.clone(), 0)],
                    1,
                );
                let d = match d {
                    Ok(d) => d,
                    Err(e) => {
                        eprintln!("{e}");
                        failed += 1;
                        continue;
                    }
                };
                let s = eval::score_dataset(&gpu, &model, &d, 1)?;
                let r = &s.scores[0];
                let verdict = match ck.state.es_threshold {
                    Some(t) if r.es >= t => "in-distribution",
                    Some(_) => "OUT-OF-DISTRIBUTION",
                    None => "no threshold stored",
                };
                println!(
                    "{}: class {} p={:.4} ES={:.5} {verdict}",
                    path.display(),
                    r.prediction,
                    r.mps,
                    r.es
                );
            }
            if failed > 0 {
                return Err(isomax::Error::Config(format!(
                    "{failed} of {} images could not be read",
                    images.len()
                )));
            }
        }
        Command::Import {
            pytorch,
            model,
            loss,
            out,
            size,
            mean,
            std,
        } => {
            let gpu = Gpu::new()?;
            let (arch, head) = (Arch::parse(&model)?, parse_head(&loss)?);
            let norm = match (mean, std) {
                (Some(m), Some(s)) => Some((m, s)),
                (None, None) => None,
                _ => {
                    return Err(isomax::Error::Config("--mean and --std go together".into()));
                }
            };
            let m = isomax::interop::import(&gpu, &pytorch, arch, head, (size, size), norm)?;
            isomax::interop::save_checkpoint(&m, &out, &pytorch)?;
            println!(
                "checkpoint: {} ({} parameters)",
                out.display(),
                m.num_params()
            );
        }
        Command::Export {
            checkpoint,
            pytorch,
            naming,
        } => {
            let gpu = Gpu::new()?;
            let naming = isomax::interop::Naming::parse(&naming)?;
            let (model, _) = isomax::train::load_model(&gpu, &checkpoint)?;
            isomax::interop::export(&model, &pytorch, naming)?;
            println!("wrote {}", pytorch.display());
        }
        Command::Demo { epochs, seeds } => demo::run(epochs, &seeds)?,
    }
    Ok(())
}

/// On a headless machine the Vulkan loader's window-system probe (libwayland) prints
/// "XDG_RUNTIME_DIR is invalid or not set" for every instance; this is a compute program,
/// so give it a private runtime directory where none is set.
fn quiet_headless_probe() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        let dir = std::env::temp_dir().join("isomax-runtime");
        if std::fs::create_dir_all(&dir).is_ok() {
            // SAFETY: first statement of `main`, before any other thread exists.
            unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
        }
    }
}

fn main() -> ExitCode {
    quiet_headless_probe();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
