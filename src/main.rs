//! The `isomax` command: thin argument parsing over the library.

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
    about = "Train classifiers that know what they don't know (IsoMax loss + Entropic Score) on any GPU wgpu reaches.\n\nWith no command, runs the demo: SoftMax vs IsoMax on the MNIST subset in assets/, Fashion-MNIST as out-of-distribution."
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
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Random crop + horizontal flip (the paper's CIFAR/SVHN augmentation).
        #[arg(long)]
        augment: bool,
        /// Use only the first N training images.
        #[arg(long)]
        limit: Option<usize>,
        /// Images held out to calibrate the ES threshold.
        #[arg(long, default_value_t = 1000)]
        holdout: usize,
        /// Continue from OUT/checkpoint.safetensors.
        #[arg(long)]
        resume: bool,
    },
    /// Evaluate a checkpoint: accuracy and OOD metrics per OOD set and score.
    Eval {
        #[arg(long)]
        checkpoint: PathBuf,
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
    /// The default demo run (what `cargo run --release` does).
    Demo {
        #[arg(long, default_value_t = 3)]
        epochs: usize,
    },
}

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

fn open(spec: &str, limit: Option<usize>) -> Result<Dataset> {
    let mut d = Dataset::open(spec)?;
    if let Some(n) = limit {
        d.truncate(n);
    }
    Ok(d)
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
    match cli.command.unwrap_or(Command::Demo { epochs: 3 }) {
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
            augment,
            limit,
            holdout,
            resume,
        } => {
            let gpu = Gpu::new()?;
            eprintln!("device: {} ({})", gpu.report().name, gpu.report().backend);
            let train_data = open(&train_spec, limit)?;
            let normalization = isomax::data::Format::of_spec(&train_spec)?.paper_normalization();
            let test_data = test.as_deref().map(|t| open(t, None)).transpose()?;
            let milestones =
                milestones.unwrap_or_else(|| vec![epochs / 2, epochs * 2 / 3, epochs * 5 / 6]);
            let cfg = TrainConfig {
                arch: Arch::parse(&model)?,
                head: parse_head(&loss)?,
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
                out_dir: out,
                resume,
                progress: true,
                normalization,
            };
            let s = train(&gpu, &cfg, train_data, test_data.as_ref())?;
            println!("checkpoint: {}", s.checkpoint.display());
            if let Some(t) = s.es_threshold {
                println!("ES threshold (95% of held-out in-distribution kept): {t:.5}");
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
        } => {
            let gpu = Gpu::new()?;
            let (model, _) = isomax::train::load_model(&gpu, &checkpoint)?;
            let test_data = open(&test, limit)?;
            let inside = eval::score_dataset(&gpu, &model, &test_data, 256)?;
            let mut outside = Vec::new();
            for spec in &ood_specs {
                let d = open(spec, limit)?;
                outside.push((d.name.clone(), eval::score_dataset(&gpu, &model, &d, 256)?));
            }
            let rep = eval::report(model.config.head, &inside, &outside)?;
            print!("{}", rep.table());
            if let Some(p) = json {
                write_json(&p, &rep.to_json())?;
            }
            if let Some(p) = dump_scores {
                eval::write_scores_csv(&p, &test_data.name, &inside, &outside)?;
            }
            if let Some(p) = plot {
                eval::plot(&p, &inside, &outside)?;
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
        Command::Demo { epochs } => isomax::demo::run(epochs)?,
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
