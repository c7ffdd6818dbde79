//! Evaluation: run a model over datasets (no tape, eval-mode batch norm), collect every
//! score per image, and turn them into accuracy and the paper's OOD metrics.

use crate::data::augment::normalize_into;
use crate::data::{Dataset, Normalization};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::{HeadKind, Model};
use crate::ood::metrics::{OodMetrics, ood_metrics, threshold_at_tpr};
use crate::ood::scores::RowScores;
use crate::ops::isomax::{self, score};
use crate::tensor::Tensor;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// Names of the scores, in CSV column order.
pub const SCORE_NAMES: [&str; 6] = ["mps", "es", "mds", "energy", "max_logit", "mmles"];

/// The scores worth reporting for each head (the paper's pairs first).
pub fn scores_for(head: HeadKind) -> &'static [&'static str] {
    match head {
        HeadKind::SoftMax => &["mps", "es", "energy", "max_logit"],
        HeadKind::IsoMax | HeadKind::IsoMaxPlus => &["mps", "es", "mds"],
        HeadKind::DisMax => &["mps", "es", "mds", "mmles"],
    }
}

fn pick(s: &RowScores, name: &str) -> f32 {
    match name {
        "mps" => s.mps,
        "es" => s.es,
        "mds" => s.mds,
        "energy" => s.energy,
        "max_logit" => s.max_logit,
        "mmles" => s.mmles,
        _ => f32::NAN,
    }
}

/// Per-image results on one dataset.
#[derive(Debug, Clone, Default)]
pub struct Scored {
    /// True class of each image.
    pub labels: Vec<u32>,
    /// Prediction and scores of each image, in the same order as `labels`.
    pub scores: Vec<RowScores>,
}

impl Scored {
    /// Fraction of correct predictions.
    pub fn accuracy(&self) -> f32 {
        let ok = self
            .labels
            .iter()
            .zip(&self.scores)
            .filter(|(y, s)| **y == s.prediction)
            .count();
        ok as f32 / self.labels.len().max(1) as f32
    }

    /// One score for every image.
    pub fn column(&self, name: &str) -> Vec<f32> {
        self.scores.iter().map(|s| pick(s, name)).collect()
    }

    /// The ES threshold that keeps fraction `tpr` of these (in-distribution) images.
    pub fn threshold_es(&self, tpr: f64) -> Result<f32> {
        Ok(threshold_at_tpr(&self.column("es"), tpr)?)
    }
}

/// Bring a dataset to the model's channels and size (OOD sets may differ).
pub fn prepare(data: &Dataset, model: &Model) -> Result<Dataset> {
    let c = &model.config;
    if data.channels == c.in_channels && data.height == c.height && data.width == c.width {
        Ok(data.clone())
    } else {
        Ok(data.converted(c.in_channels, c.height, c.width)?)
    }
}

/// Scores of already-normalised images `[n, C, H, W]` (host data).
pub fn score_normalized(
    gpu: &Gpu,
    model: &Model,
    images: &[f32],
    n: usize,
) -> Result<Vec<RowScores>> {
    let c = &model.config;
    let x = Tensor::from_slice(gpu, images, &[n, c.in_channels, c.height, c.width])?;
    let scores = gpu.no_grad(|| -> Result<Tensor> {
        let logits = model.forward(&x, false)?;
        let no_labels = Tensor::zeros(gpu, &[n])?;
        Ok(isomax::softmax_entropy(&logits, &no_labels, 1.0)?.scores)
    })?;
    rows_from_scores(&scores.to_vec()?)
}

/// Unpack the fused kernel's `[B, 8]` score rows (see [`isomax::score`]).
pub fn rows_from_scores(v: &[f32]) -> Result<Vec<RowScores>> {
    if v.iter().any(|x| !x.is_finite()) {
        return Err(Error::Config(
            "the model produced non-finite scores (diverged weights?)".into(),
        ));
    }
    Ok(v.chunks_exact(isomax::SCORES_PER_ROW)
        .map(|r| RowScores {
            mps: r[score::MPS],
            es: r[score::ES],
            mds: r[score::MDS],
            energy: r[score::ENERGY],
            max_logit: r[score::MAX_LOGIT],
            mmls: r[score::MMLS],
            mmles: r[score::MMLES],
            prediction: r[score::PREDICTION] as u32,
        })
        .collect())
}

/// Run the model over a whole dataset in batches.
pub fn score_dataset(gpu: &Gpu, model: &Model, data: &Dataset, batch: usize) -> Result<Scored> {
    data.check_shape()?;
    let c = &model.config;
    let norm = Normalization {
        mean: c.mean.clone(),
        std: c.std.clone(),
    };
    norm.check(c.in_channels)?;
    let per = c.in_channels * c.height * c.width;
    // One batch of inputs must fit one storage binding; a dataset that needs converting is
    // converted batch by batch, so memory stays bounded by a batch whatever the sizes.
    let max_binding = gpu.device().limits().max_storage_buffer_binding_size;
    let fit = max_binding / (per as u64 * 4);
    if fit == 0 {
        return Err(Error::Limit {
            op: "evaluation",
            detail: format!(
                "one {}x{}x{} input image takes {} bytes, more than the adapter's largest \
                 storage binding ({max_binding} bytes)",
                c.in_channels,
                c.height,
                c.width,
                per * 4
            ),
        });
    }
    let batch = batch.max(1).min(fit.min(usize::MAX as u64) as usize);
    let same = (data.channels, data.height, data.width) == (c.in_channels, c.height, c.width);
    let mut out = Scored {
        labels: data.labels.clone(),
        scores: Vec::with_capacity(data.len()),
    };
    let mut buf = Vec::new();
    for start in (0..data.len()).step_by(batch) {
        let n = batch.min(data.len() - start);
        let converted;
        let (src, first) = if same {
            (data, start)
        } else {
            let indices: Vec<usize> = (start..start + n).collect();
            converted = data.select(&indices, data.name.clone()).converted(
                c.in_channels,
                c.height,
                c.width,
            )?;
            (&converted, 0)
        };
        buf.resize(n * per, 0.0);
        for i in 0..n {
            normalize_into(
                src.image(first + i),
                src.channels,
                src.height,
                src.width,
                &norm,
                &mut buf[i * per..(i + 1) * per],
            )?;
        }
        out.scores.extend(score_normalized(gpu, model, &buf, n)?);
    }
    Ok(out)
}

/// Accuracy and, per OOD set and score, the five metrics.
#[derive(Debug, Clone, Default)]
pub struct EvalReport {
    /// Fraction of in-distribution images classified correctly, in 0..=1.
    pub accuracy: f32,
    /// OOD set name → score name → metrics.
    pub ood: BTreeMap<String, BTreeMap<String, OodMetrics>>,
}

impl EvalReport {
    /// `{"accuracy": .., "ood": {SET: {SCORE: {tnr_at_tpr95, auroc, dtacc, auin, auout}}}}`
    /// (accuracy and metrics in percent).
    pub fn to_json(&self) -> serde_json::Value {
        let ood: serde_json::Map<String, serde_json::Value> = self
            .ood
            .iter()
            .map(|(set, m)| {
                let inner: serde_json::Map<String, serde_json::Value> =
                    m.iter().map(|(s, v)| (s.clone(), v.to_json())).collect();
                (set.clone(), serde_json::Value::Object(inner))
            })
            .collect();
        serde_json::json!({ "accuracy": 100.0 * self.accuracy as f64, "ood": ood })
    }

    /// A plain-text table like the paper's.
    pub fn table(&self) -> String {
        let mut s = format!("accuracy: {:.2}%\n", 100.0 * self.accuracy);
        s += &format!(
            "{:<24} {:<10} {:>7} {:>7} {:>7} {:>7} {:>7}\n",
            "ood set", "score", "TNR95", "AUROC", "DTACC", "AUIN", "AUOUT"
        );
        for (set, m) in &self.ood {
            for (score, v) in m {
                s += &format!(
                    "{:<24} {:<10} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2}\n",
                    set, score, v.tnr_at_tpr95, v.auroc, v.dtacc, v.auin, v.auout
                );
            }
        }
        s
    }
}

/// Mean and sample standard deviation (divisor n − 1; 0 for a single value) of `v`.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, var.sqrt())
}

fn stat_json(v: &[f64]) -> serde_json::Value {
    let (mean, std) = mean_std(v);
    serde_json::json!({ "mean": mean, "std": std, "values": v })
}

/// The reports of several runs of one setting (one per seed), summarised as mean ± sample
/// standard deviation per metric.
#[derive(Debug, Clone)]
pub struct SeedSummary {
    /// One report per run (seed).
    pub runs: Vec<EvalReport>,
}

/// The metric names of [`OodMetrics`], in table order.
const METRICS: [&str; 5] = ["tnr_at_tpr95", "auroc", "dtacc", "auin", "auout"];

fn metric(m: &OodMetrics, name: &str) -> f64 {
    match name {
        "tnr_at_tpr95" => m.tnr_at_tpr95,
        "auroc" => m.auroc,
        "dtacc" => m.dtacc,
        "auin" => m.auin,
        _ => m.auout,
    }
}

impl SeedSummary {
    /// Summarise `runs`, which must cover the same OOD sets and scores.
    pub fn new(runs: Vec<EvalReport>) -> Result<SeedSummary> {
        let Some(first) = runs.first() else {
            return Err(Error::Config("no runs to summarise".into()));
        };
        let keys = |r: &EvalReport| -> Vec<(String, String)> {
            r.ood
                .iter()
                .flat_map(|(set, m)| m.keys().map(move |s| (set.clone(), s.clone())))
                .collect()
        };
        let want = keys(first);
        for (i, r) in runs.iter().enumerate() {
            if keys(r) != want {
                return Err(Error::Config(format!(
                    "run {} has other OOD sets or scores than run 1 ({:?} vs {:?}): train them \
                     with the same loss and evaluate them on the same sets",
                    i + 1,
                    keys(r),
                    want
                )));
            }
        }
        Ok(SeedSummary { runs })
    }

    /// Accuracies of the runs, in percent.
    pub fn accuracies(&self) -> Vec<f64> {
        self.runs
            .iter()
            .map(|r| 100.0 * r.accuracy as f64)
            .collect()
    }

    /// One metric (`"auroc"`, …) of one set and score across the runs.
    pub fn values(&self, set: &str, score: &str, name: &str) -> Vec<f64> {
        self.runs
            .iter()
            .filter_map(|r| r.ood.get(set).and_then(|m| m.get(score)))
            .map(|m| metric(m, name))
            .collect()
    }

    /// `{"runs": N, "accuracy": {"mean", "std", "values"}, "ood": {SET: {SCORE: {METRIC:
    /// {"mean", "std", "values"}}}}}`, in percent; std is the sample standard deviation.
    pub fn to_json(&self) -> serde_json::Value {
        let mut ood = serde_json::Map::new();
        for (set, m) in &self.runs[0].ood {
            let mut per_score = serde_json::Map::new();
            for score in m.keys() {
                let mut per_metric = serde_json::Map::new();
                for name in METRICS {
                    per_metric.insert(name.into(), stat_json(&self.values(set, score, name)));
                }
                per_score.insert(score.clone(), serde_json::Value::Object(per_metric));
            }
            ood.insert(set.clone(), serde_json::Value::Object(per_score));
        }
        serde_json::json!({
            "runs": self.runs.len(),
            "accuracy": stat_json(&self.accuracies()),
            "ood": ood,
        })
    }

    /// A table of mean ± std over the runs.
    pub fn table(&self) -> String {
        let (am, asd) = mean_std(&self.accuracies());
        let mut s = format!(
            "accuracy: {am:.2} ± {asd:.2}% (mean ± std over {} runs)\n",
            self.runs.len()
        );
        s += &format!(
            "{:<24} {:<10} {:>13} {:>13} {:>13} {:>13} {:>13}\n",
            "ood set", "score", "TNR95", "AUROC", "DTACC", "AUIN", "AUOUT"
        );
        for (set, m) in &self.runs[0].ood {
            for score in m.keys() {
                s += &format!("{set:<24} {score:<10}");
                for name in METRICS {
                    let (mean, std) = mean_std(&self.values(set, score, name));
                    s += &format!(" {:>13}", format!("{mean:.2} ± {std:.2}"));
                }
                s += "\n";
            }
        }
        s
    }
}

/// Metrics of in-distribution `inside` against each OOD set, for the head's scores.
pub fn report(head: HeadKind, inside: &Scored, outside: &[(String, Scored)]) -> Result<EvalReport> {
    let mut rep = EvalReport {
        accuracy: inside.accuracy(),
        ood: BTreeMap::new(),
    };
    for (name, out) in outside {
        let mut m = BTreeMap::new();
        for score in scores_for(head) {
            m.insert(
                score.to_string(),
                ood_metrics(&inside.column(score), &out.column(score))?,
            );
        }
        rep.ood.insert(name.clone(), m);
    }
    Ok(rep)
}

/// One CSV row per image: set, in/out, label, prediction, every score.
pub fn write_scores_csv(
    path: &Path,
    test_name: &str,
    inside: &Scored,
    outside: &[(String, Scored)],
) -> Result<()> {
    let mut f =
        std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| Error::io(path, e))?);
    let mut w = || -> std::io::Result<()> {
        writeln!(
            f,
            "set,distribution,label,prediction,{}",
            SCORE_NAMES.join(",")
        )?;
        let sets = std::iter::once((test_name, "in", inside))
            .chain(outside.iter().map(|(n, s)| (n.as_str(), "out", s)));
        for (name, dist, scored) in sets {
            for (i, s) in scored.scores.iter().enumerate() {
                let label = if dist == "in" {
                    scored.labels[i].to_string()
                } else {
                    String::new()
                };
                let cols: Vec<String> = SCORE_NAMES
                    .iter()
                    .map(|n| format!("{}", pick(s, n)))
                    .collect();
                writeln!(
                    f,
                    "{name},{dist},{label},{},{}",
                    s.prediction,
                    cols.join(",")
                )?;
            }
        }
        f.flush()
    };
    w().map_err(|e| Error::io(path, e))
}

/// The paper's Fig. 3 for every OOD set: max probability and ES histograms, in vs out.
#[cfg(feature = "plot")]
pub fn plot(path: &Path, inside: &Scored, outside: &[(String, Scored)]) -> Result<()> {
    use crate::ood::plot::{Panel, histograms};
    let cols: Vec<(String, Vec<f32>, Vec<f32>)> = outside
        .iter()
        .flat_map(|(name, out)| {
            [("maximum probability", "mps"), ("entropic score", "es")].map(|(title, s)| {
                (
                    format!("{title}: in vs {}", short(name)),
                    inside.column(s),
                    out.column(s),
                )
            })
        })
        .collect();
    let panels: Vec<Panel> = cols
        .iter()
        .map(|(t, a, b)| Panel {
            title: t.clone(),
            inside: a,
            outside: b,
        })
        .collect();
    histograms(path, &panels).map_err(|e| Error::Config(format!("plot: {e}")))
}

/// A short display name for a dataset path.
#[cfg(feature = "plot")]
fn short(name: &str) -> String {
    let p = Path::new(name);
    let parent = p
        .parent()
        .and_then(|d| d.file_name())
        .map(|s| s.to_string_lossy().to_string());
    parent.unwrap_or_else(|| name.to_string())
}
