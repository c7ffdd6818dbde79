//! The default run: SoftMax vs IsoMax on the MNIST subset shipped in `assets/`, with the
//! Fashion-MNIST subset as out-of-distribution data, printed side by side.

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::eval;
use crate::gpu::Gpu;
use crate::nn::{Arch, HeadKind};
use crate::optim::SgdConfig;
use crate::train::{TrainConfig, train};
use std::path::PathBuf;
use std::time::Instant;

fn assets() -> Result<PathBuf> {
    let candidates = [
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets"),
        PathBuf::from("assets"),
    ];
    candidates
        .into_iter()
        .find(|p| p.join("mnist").is_dir())
        .ok_or_else(|| {
            Error::Config("cannot find assets/mnist (run from the repository root)".into())
        })
}

/// Train both heads for `epochs` epochs and print the comparison.
pub fn run(epochs: usize) -> Result<()> {
    let t0 = Instant::now();
    let gpu = Gpu::new()?;
    let a = assets()?;
    let spec = |p: &str| format!("idx:{}", a.join(p).display());
    let train_set = Dataset::open(&spec("mnist/train-images-idx3-ubyte.gz"))?;
    let test_set = Dataset::open(&spec("mnist/t10k-images-idx3-ubyte.gz"))?;
    let ood_set = Dataset::open(&spec("fashion-mnist/t10k-images-idx3-ubyte.gz"))?;
    println!(
        "isomax demo on {} ({}): resnet-tiny, {} MNIST training images, {} epochs; \
         in-distribution: {} MNIST test images; out-of-distribution: {} Fashion-MNIST test images",
        gpu.report().name,
        gpu.report().backend,
        train_set.len(),
        epochs,
        test_set.len(),
        ood_set.len()
    );
    let mut rows = Vec::new();
    for head in [HeadKind::SoftMax, HeadKind::IsoMax] {
        let name = if head == HeadKind::SoftMax {
            "softmax"
        } else {
            "isomax"
        };
        eprintln!("training with the {name} loss...");
        let cfg = TrainConfig {
            arch: Arch::ResnetTiny,
            head,
            epochs,
            batch_size: 32,
            sgd: SgdConfig {
                lr: 0.1,
                milestones: SgdConfig::paper_milestones(epochs),
                ..SgdConfig::default()
            },
            seed: 1,
            augment: false,
            holdout: 200,
            entropic_scale: None,
            fpr: None,
            out_dir: std::env::temp_dir().join(format!("isomax-demo-{name}")),
            resume: false,
            // The demo's scratch folder is rewritten on every run.
            force: true,
            progress: true,
            normalization: None,
        };
        let summary = train(&gpu, &cfg, train_set.clone(), None)?;
        let (model, _) = crate::train::load_model(&gpu, &summary.checkpoint)?;
        let inside = eval::score_dataset(&gpu, &model, &test_set, 250)?;
        let outside = eval::score_dataset(&gpu, &model, &ood_set, 250)?;
        let rep = eval::report(head, &inside, &[("fashion-mnist".to_string(), outside)])?;
        let m = &rep.ood["fashion-mnist"];
        let label = if head == HeadKind::SoftMax {
            "SoftMax"
        } else {
            "IsoMax"
        };
        let scores: &[&str] = if head == HeadKind::SoftMax {
            &["mps", "es"]
        } else {
            &["es", "mds"]
        };
        for s in scores {
            rows.push((
                format!("{label} + {}", s.to_uppercase()),
                rep.accuracy,
                m[*s],
            ));
        }
    }
    println!(
        "\n{:<16} {:>9} {:>7} {:>7} {:>7}",
        "loss + score", "accuracy", "TNR95", "AUROC", "DTACC"
    );
    for (name, acc, m) in &rows {
        println!(
            "{name:<16} {:>8.2}% {:>7.2} {:>7.2} {:>7.2}",
            100.0 * acc,
            m.tnr_at_tpr95,
            m.auroc,
            m.dtacc
        );
    }
    println!(
        "\n(TNR at 95% TPR, AUROC, DTACC in percent; MNIST in, Fashion-MNIST out; {:.0} s)",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
