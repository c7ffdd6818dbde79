//! The paper's Fig. 2 experiment at small scale: IsoMax trained with entropic scale
//! E_s ∈ {1, 3, 10} (the loss −log softmax(E_s·z)_y), one run per seed, and the OOD
//! detection of its scores (ES, MPS, MDS) and the test accuracy against E_s, as mean ± std
//! over the seeds: a table, `OUT/sweep.json` and the plot `OUT/entropic_scale.png`.
//!
//! ```sh
//! cargo run --release --example entropic_scale_sweep -- \
//!     --train idx:assets/mnist/train-images-idx3-ubyte.gz \
//!     --test idx:assets/mnist/t10k-images-idx3-ubyte.gz \
//!     --ood idx:assets/fashion-mnist/t10k-images-idx3-ubyte.gz --out runs/es-sweep
//! ```
//! (`scripts/entropic_scale_sweep.sh` runs exactly this.)

use clap::Parser;
use isomax::data::Dataset;
use isomax::eval::{self, SeedSummary, mean_std};
use isomax::nn::{Arch, HeadKind};
use isomax::ood::plot::{LinePanel, lines};
use isomax::optim::SgdConfig;
use isomax::train::{TrainConfig, load_model, train};
use isomax::{Error, Gpu, Result};
use std::path::PathBuf;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    train: String,
    #[arg(long)]
    test: String,
    #[arg(long)]
    ood: String,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_delimiter = ',', default_value = "1,3,10")]
    scales: Vec<f32>,
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    seeds: Vec<u64>,
    #[arg(long, default_value_t = 2)]
    epochs: usize,
    /// Use only the first N training images.
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long, default_value = "resnet-tiny")]
    model: String,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, default_value_t = 0.1)]
    lr: f32,
    #[arg(long, default_value_t = 200)]
    holdout: usize,
}

fn io_err(path: &std::path::Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let gpu = Gpu::new()?;
    let mut train_set = Dataset::open(&args.train)?;
    if let Some(n) = args.limit {
        train_set.truncate(n);
    }
    let test = Dataset::open(&args.test)?;
    let ood = Dataset::open(&args.ood)?;
    std::fs::create_dir_all(&args.out).map_err(|e| io_err(&args.out, e))?;
    let mut summaries = Vec::new();
    for &scale in &args.scales {
        let mut reports = Vec::new();
        for &seed in &args.seeds {
            eprintln!("E_s = {scale}, seed {seed}...");
            let cfg = TrainConfig {
                arch: Arch::parse(&args.model)?,
                head: HeadKind::IsoMax,
                epochs: args.epochs,
                batch_size: args.batch_size,
                sgd: SgdConfig {
                    lr: args.lr,
                    milestones: SgdConfig::paper_milestones(args.epochs),
                    ..SgdConfig::default()
                },
                seed,
                augment: false,
                holdout: args.holdout,
                entropic_scale: Some(scale),
                fpr: None,
                out_dir: args.out.join(format!("es-{scale}/seed-{seed}")),
                resume: false,
                force: true,
                progress: false,
                normalization: None,
            };
            let s = train(&gpu, &cfg, train_set.clone(), None)?;
            let (model, _) = load_model(&gpu, &s.checkpoint)?;
            let inside = eval::score_dataset(&gpu, &model, &test, 250)?;
            let outside = eval::score_dataset(&gpu, &model, &ood, 250)?;
            reports.push(eval::report(
                HeadKind::IsoMax,
                &inside,
                &[(ood.name.clone(), outside)],
            )?);
        }
        summaries.push((scale, SeedSummary::new(reports)?));
    }
    let scores = ["es", "mps", "mds"];
    println!(
        "IsoMax, {} epochs on {} images, {} seeds; in: {}, out: {}",
        args.epochs,
        train_set.len(),
        args.seeds.len(),
        test.name,
        ood.name
    );
    println!(
        "{:>5} {:>16} {:>16} {:>16} {:>16}",
        "E_s", "accuracy", "AUROC ES", "AUROC MPS", "AUROC MDS"
    );
    let pm = |(m, s): (f64, f64)| format!("{m:.2} ± {s:.2}");
    for (scale, s) in &summaries {
        let auroc = |score: &str| pm(mean_std(&s.values(&ood.name, score, "auroc")));
        println!(
            "{scale:>5} {:>16} {:>16} {:>16} {:>16}",
            pm(mean_std(&s.accuracies())),
            auroc("es"),
            auroc("mps"),
            auroc("mds")
        );
    }
    let json = serde_json::json!({
        "model": args.model, "epochs": args.epochs, "train": args.train, "test": args.test,
        "ood": args.ood, "seeds": args.seeds,
        "scales": summaries.iter().map(|(e, s)| serde_json::json!({"entropic_scale": e, "summary": s.to_json()})).collect::<Vec<_>>(),
    });
    let json_path = args.out.join("sweep.json");
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&json).expect("json"),
    )
    .map_err(|e| io_err(&json_path, e))?;
    let x: Vec<f64> = summaries.iter().map(|(e, _)| *e as f64).collect();
    let metric_panel = |metric: &str, title: &str| LinePanel {
        title: title.into(),
        x_desc: "entropic scale E_s".into(),
        y_desc: format!("{title} (%)"),
        x: &x,
        series: scores
            .iter()
            .map(|score| {
                (
                    score.to_uppercase(),
                    summaries
                        .iter()
                        .map(|(_, s)| mean_std(&s.values(&ood.name, score, metric)))
                        .collect(),
                )
            })
            .collect(),
    };
    let panels = [
        metric_panel("auroc", "AUROC"),
        metric_panel("tnr_at_tpr95", "TNR at 95% TPR"),
        LinePanel {
            title: "test accuracy".into(),
            x_desc: "entropic scale E_s".into(),
            y_desc: "accuracy (%)".into(),
            x: &x,
            series: vec![(
                "accuracy".into(),
                summaries
                    .iter()
                    .map(|(_, s)| mean_std(&s.accuracies()))
                    .collect(),
            )],
        },
    ];
    let png = args.out.join("entropic_scale.png");
    lines(&png, &panels).map_err(|e| Error::Config(format!("plot: {e}")))?;
    println!("\n{} and {}", json_path.display(), png.display());
    Ok(())
}
