//! OOD detection metrics (docs/method.md §2), in-distribution as the positive class.
//!
//! The curve walk and the area formulas follow the authors' `calMetric`-style code
//! (shared by the ODIN, Mahalanobis and IsoMax repositories) so that numbers are comparable
//! with the published tables, quirks included: the TNR point is the *first* point closest
//! to TPR 95 %, and the precision curves get fixed end points, so AUIN/AUOUT stay below
//! 100 even for perfectly separated scores (100·(1 − 1/2K) and 100·(1 − 1/2N)).

use std::path::{Path, PathBuf};

/// The five detection metrics, each in percent.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OodMetrics {
    /// True-negative rate at the curve point whose TPR is closest to 95 %.
    pub tnr_at_tpr95: f64,
    /// Area under the ROC curve.
    pub auroc: f64,
    /// Best detection accuracy, max ½(TPR + TNR).
    pub dtacc: f64,
    /// Area under precision-recall with in-distribution positive.
    pub auin: f64,
    /// Area under precision-recall with out-of-distribution positive.
    pub auout: f64,
}

impl OodMetrics {
    /// JSON object with the field names as keys (values in percent).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "tnr_at_tpr95": self.tnr_at_tpr95,
            "auroc": self.auroc,
            "dtacc": self.dtacc,
            "auin": self.auin,
            "auout": self.auout,
        })
    }
}

/// Why metrics could not be computed or a score file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// One of the two score lists is empty, so its rate is undefined.
    #[error("no {which} scores")]
    EmptyScores {
        /// "in-distribution" or "out-of-distribution".
        which: &'static str,
    },
    /// A score that cannot be ordered meaningfully.
    #[error("{which} score at index {index} is {value}")]
    NonFiniteScore {
        /// "in-distribution" or "out-of-distribution".
        which: &'static str,
        /// Position of the score in its list (0-based).
        index: usize,
        /// The score (NaN or infinite).
        value: f64,
    },
    /// A requested true-positive rate outside [0, 1].
    #[error("true-positive rate {0} is not in [0, 1]")]
    BadRate(f64),
    /// A score file could not be opened or read.
    #[error("cannot open {}: {source}", path.display())]
    Io {
        /// The score file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A line of a score file does not parse as a number.
    #[error("{}:{line}: '{text}' is not a number", path.display())]
    NotANumber {
        /// The score file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The line's text.
        text: String,
    },
    /// `what` is "NaN" or "infinite".
    #[error("{}:{line}: score is {what}", path.display())]
    NonFiniteInFile {
        /// The score file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// "NaN" or "infinite".
        what: &'static str,
    },
    /// A score file holds no scores.
    #[error("{}: no scores", path.display())]
    EmptyFile {
        /// The score file.
        path: PathBuf,
    },
    /// The path is not a regular file.
    #[error("{}: not a regular file (devices, FIFOs and sockets cannot be read as scores)", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// A score file is not valid UTF-8.
    #[error("{}: not UTF-8 text (invalid byte at offset {offset})", path.display())]
    NotUtf8 {
        /// The score file.
        path: PathBuf,
        /// Byte offset of the first invalid byte.
        offset: usize,
    },
}

const IN_NAME: &str = "in-distribution";
const OUT_NAME: &str = "out-of-distribution";

/// Sorts a copy of the scores, rejecting empty lists and non-finite values (which would
/// otherwise sort to an end and silently distort every metric).
/// Scores are compared in f64 whatever their storage type, so close f64 scores (from a score
/// file) never become ties.
fn sorted_finite<T: Copy + Into<f64>>(
    scores: &[T],
    which: &'static str,
) -> Result<Vec<f64>, MetricsError> {
    if scores.is_empty() {
        return Err(MetricsError::EmptyScores { which });
    }
    let mut sorted: Vec<f64> = scores.iter().map(|&s| s.into()).collect();
    if let Some((index, &value)) = sorted.iter().enumerate().find(|(_, s)| !s.is_finite()) {
        return Err(MetricsError::NonFiniteScore {
            which,
            index,
            value,
        });
    }
    sorted.sort_unstable_by(f64::total_cmp);
    Ok(sorted)
}

/// The K+N+1 `(tp, fp)` points of docs/method.md §2, step 2: the threshold sweeps upward, removing
/// the lowest remaining sample each step; on a tie the in-distribution sample goes first.
fn curve_points(ins: &[f64], outs: &[f64]) -> Vec<(usize, usize)> {
    let (k, n) = (ins.len(), outs.len());
    let mut points = Vec::with_capacity(k + n + 1);
    let (mut tp, mut fp) = (k, n);
    points.push((tp, fp));
    // `ins[k - tp]` / `outs[n - fp]` are the lowest samples still called in-distribution.
    while tp + fp > 0 {
        let drop_out = tp == 0 || (fp > 0 && outs[n - fp] < ins[k - tp]);
        if drop_out {
            fp -= 1;
        } else {
            tp -= 1;
        }
        points.push((tp, fp));
    }
    points
}

/// Trapezoidal area of a polyline given as `(x, y)` points; positive when x decreases
/// along the list, as the curves here are walked from the high-rate end.
fn trapezoid_descending(points: &[(f64, f64)]) -> f64 {
    points
        .windows(2)
        .map(|w| (w[0].0 - w[1].0) * (w[0].1 + w[1].1) / 2.0)
        .sum()
}

/// Computes TNR at TPR 95 %, AUROC, DTACC, AUIN and AUOUT (docs/method.md §2) in O(n log n).
///
/// Higher scores mean "more in-distribution". Scores may be f32 or f64; all arithmetic is
/// f64. Errors on an empty list or a NaN/infinite score (naming the list and the index).
pub fn ood_metrics<T: Copy + Into<f64>>(
    in_scores: &[T],
    out_scores: &[T],
) -> Result<OodMetrics, MetricsError> {
    let ins = sorted_finite(in_scores, IN_NAME)?;
    let outs = sorted_finite(out_scores, OUT_NAME)?;
    let (k, n) = (ins.len(), outs.len());
    let (kf, nf) = (k as f64, n as f64);
    let points = curve_points(&ins, &outs);
    let tpr = |tp: usize| tp as f64 / kf;
    let fpr = |fp: usize| fp as f64 / nf;

    // First point with the smallest |TPR − 0.95|: strict `<` keeps the earliest, i.e. the
    // one with the most false positives among equally close points, as numpy's argmin does.
    let mut best = (f64::INFINITY, 0.0);
    for &(tp, fp) in &points {
        let gap = (tpr(tp) - 0.95).abs();
        if gap < best.0 {
            best = (gap, 1.0 - fpr(fp));
        }
    }
    let tnr_at_tpr95 = best.1;

    // ROC from (1,1) down to (0,0), as (FPR, TPR).
    let mut roc = Vec::with_capacity(points.len() + 2);
    roc.push((1.0, 1.0));
    roc.extend(points.iter().map(|&(tp, fp)| (fpr(fp), tpr(tp))));
    roc.push((0.0, 0.0));
    let auroc = trapezoid_descending(&roc);

    let dtacc = points
        .iter()
        .map(|&(tp, fp)| 0.5 * (tpr(tp) + 1.0 - fpr(fp)))
        .fold(f64::NEG_INFINITY, f64::max);

    // Precision of "in" against TPR, walked from TPR 1 to 0.
    let mut pr_in = Vec::with_capacity(points.len() + 2);
    pr_in.push((1.0, 0.5));
    pr_in.extend(
        points
            .iter()
            .filter(|&&(tp, fp)| tp + fp > 0)
            .map(|&(tp, fp)| (tpr(tp), tp as f64 / (tp + fp) as f64)),
    );
    pr_in.push((0.0, 0.0));
    let auin = trapezoid_descending(&pr_in);

    // Precision of "out" against 1 − FPR, which rises along the walk: reverse it so the
    // same descending-x trapezoid applies (end points (1, ½) and (0, 0)).
    let mut pr_out = Vec::with_capacity(points.len() + 2);
    pr_out.push((1.0, 0.5));
    pr_out.extend(points.iter().rev().filter_map(|&(tp, fp)| {
        let (true_neg, false_neg) = (n - fp, k - tp);
        let denom = true_neg + false_neg;
        (denom > 0).then(|| (1.0 - fpr(fp), true_neg as f64 / denom as f64))
    }));
    pr_out.push((0.0, 0.0));
    let auout = trapezoid_descending(&pr_out);

    Ok(OodMetrics {
        tnr_at_tpr95: 100.0 * tnr_at_tpr95,
        auroc: 100.0 * auroc,
        dtacc: 100.0 * dtacc,
        auin: 100.0 * auin,
        auout: 100.0 * auout,
    })
}

/// The score threshold that keeps the fraction `tpr` of the in-distribution samples when
/// samples with `score >= threshold` are called in-distribution.
///
/// Keeps ⌈tpr·K⌉ samples (a hair of tolerance absorbs products like 0.95·20 that land just
/// above an integer); ties at the threshold may keep a few more. With nothing to keep the
/// threshold is just above the highest score.
///
/// Errors if `in_scores` is empty or contains a non-finite score, or if `tpr` is not in
/// [0, 1].
pub fn threshold_at_tpr(in_scores: &[f32], tpr: f64) -> Result<f32, MetricsError> {
    if !(0.0..=1.0).contains(&tpr) {
        return Err(MetricsError::BadRate(tpr));
    }
    let sorted = sorted_finite(in_scores, IN_NAME)?;
    let k = sorted.len();
    let keep = ((tpr * k as f64 - 1e-9).ceil().max(0.0) as usize).min(k);
    // The values came from f32, so the conversion back is exact.
    Ok(if keep == 0 {
        (sorted[k - 1] as f32).next_up()
    } else {
        sorted[k - keep] as f32
    })
}

/// Reads a score file: one number per line; blank lines and `#` comments (whole-line or
/// trailing) are skipped. Line numbers in errors are 1-based. Scores are parsed as f64.
/// Only regular files are read (a FIFO or a device is refused before it is opened).
pub fn read_scores(path: &Path) -> Result<Vec<f64>, MetricsError> {
    let io_err = |source| MetricsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if !meta.is_file() {
        return Err(MetricsError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let bytes = std::fs::read(path).map_err(io_err)?;
    parse_scores(&bytes, path)
}

/// Parses the content of a score file (see [`read_scores`]); `path` only names it in messages.
pub fn parse_scores(bytes: &[u8], path: &Path) -> Result<Vec<f64>, MetricsError> {
    let text = std::str::from_utf8(bytes).map_err(|e| MetricsError::NotUtf8 {
        path: path.to_path_buf(),
        offset: e.valid_up_to(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut scores = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let field = raw.split('#').next().unwrap_or("").trim();
        if field.is_empty() {
            continue;
        }
        let value: f64 = field.parse().map_err(|_| MetricsError::NotANumber {
            path: path.to_path_buf(),
            line,
            text: field.to_string(),
        })?;
        if !value.is_finite() {
            return Err(MetricsError::NonFiniteInFile {
                path: path.to_path_buf(),
                line,
                what: if value.is_nan() { "NaN" } else { "infinite" },
            });
        }
        scores.push(value);
    }
    if scores.is_empty() {
        return Err(MetricsError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    Ok(scores)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng, rngs::StdRng};

    /// P(s_in > s_out) with ties counted as 0, by checking every pair.
    fn brute_auroc(ins: &[f32], outs: &[f32]) -> f64 {
        let wins: usize = ins
            .iter()
            .map(|a| outs.iter().filter(|b| a > b).count())
            .sum();
        100.0 * wins as f64 / (ins.len() * outs.len()) as f64
    }

    fn assert_close(got: f64, want: f64, what: &str) {
        assert!((got - want).abs() < 1e-9, "{what}: got {got}, want {want}");
    }

    fn assert_metrics(m: OodMetrics, want: [f64; 5]) {
        assert_close(m.tnr_at_tpr95, want[0], "tnr_at_tpr95");
        assert_close(m.auroc, want[1], "auroc");
        assert_close(m.dtacc, want[2], "dtacc");
        assert_close(m.auin, want[3], "auin");
        assert_close(m.auout, want[4], "auout");
    }

    /// Scores rounded to a coarse grid so that ties are common.
    fn random_scores(rng: &mut StdRng, len: usize, shift: f32) -> Vec<f32> {
        (0..len)
            .map(|_| (rng.random_range(0.0f32..1.0) * 20.0).round() / 20.0 + shift)
            .collect()
    }

    #[test]
    fn perfect_separation() {
        // K = 20 in (1..=20), N = 3 out (-3..=-1). All out drop first:
        // (20,3) (20,2) (20,1) (20,0) (19,0) ... (0,0).
        // TPR closest to .95 is exactly tp = 19, first reached at fp = 0 → TNR 100.
        // AUROC 100, DTACC 100 at (20,0).
        // AUIN: precision 1 from TPR 1 down to 1/20, then the end point (0,0):
        //   19/20 + (1/20)·½ = 1 − 1/40 = 97.5.
        // AUOUT: end point (0,0) to (1/3, 1): ½·1/3; then precision 1 up to 1−FPR = 1:
        //   1/6 + 2/3 = 5/6 = 83.33…
        let ins: Vec<f32> = (1..=20).map(|v| v as f32).collect();
        let outs = [-1.0, -2.0, -3.0];
        let m = ood_metrics(&ins, &outs).unwrap();
        assert_metrics(m, [100.0, 100.0, 100.0, 97.5, 500.0 / 6.0]);
    }

    #[test]
    fn small_k_picks_first_point_at_tpr_one() {
        // K = 2 in, N = 2 out, perfectly separated. TPR 1 (gap .05) beats TPR .5, and the
        // first point with TPR 1 is the start (2,2) with FPR 1 → TNR 0, as in the
        // reference code.
        let m = ood_metrics(&[2.0, 3.0], &[0.0, 1.0]).unwrap();
        assert_close(m.tnr_at_tpr95, 0.0, "tnr");
        assert_close(m.auroc, 100.0, "auroc");
        assert_close(m.dtacc, 100.0, "dtacc");
    }

    #[test]
    fn identical_scores_and_fully_reversed() {
        // All four scores equal: ties drop "in" first, so the walk is
        // (2,2) (1,2) (0,2) (0,1) (0,0); TPR 1,.5,0,0,0; FPR 1,1,1,.5,0.
        // TNR: first point (TPR 1, FPR 1) → 0. AUROC: TPR is 0 whenever FPR moves → 0.
        // DTACC: ½(TPR+1−FPR) = .5,.25,0,.25,.5 → 50.
        // AUIN: (1,½) end, (1,.5), (.5,1/3), (0,0), (0,0), end (0,0):
        //   .5·(.5+1/3)/2 + .5·(1/3)/2 = 5/24 + 2/24 = 7/24.
        // AUOUT: precision_out at points 2..5 = 0,0,1/3,.5 at 1−FPR = 0,0,.5,1;
        //   end (0,0) … end (1,½): .5·(1/3)/2 + .5·(1/3+.5)/2 = 2/24 + 5/24 = 7/24.
        let want = [0.0, 0.0, 50.0, 700.0 / 24.0, 700.0 / 24.0];
        assert_metrics(ood_metrics(&[0.5, 0.5], &[0.5, 0.5]).unwrap(), want);
        // In entirely below out gives the same walk.
        assert_metrics(ood_metrics(&[1.0, 0.0], &[3.0, 2.0]).unwrap(), want);
    }

    #[test]
    fn mixed_three_versus_two() {
        // in = {.3, .5, .9}, out = {.1, .5} (a tie at .5). Walk:
        //   (3,2) → out .1 < in .3 → (3,1) → out .5 ≮ in .3 → (2,1) → tie .5 → (1,1)
        //   → out .5 < in .9 → (1,0) → (0,0).
        // TPR 1,1,2/3,1/3,1/3,0; FPR 1,.5,.5,.5,0,0.
        // TNR: first point (TPR 1) has FPR 1 → 0.
        // AUROC: pairs in>out: .3>.1, .5>.1, .9>.1, .9>.5 → 4/6 (tie .5/.5 counts 0);
        //   trapezoids: .5·1 + .5·1/3 = 2/3.
        // DTACC: .5, .75, 7/12, 5/12, 2/3, .5 → 75.
        // AUIN: precision 3/5, 3/4, 2/3, 1/2, 1 (last point excluded); with the ends
        //   (1,.5)(1,.6)(1,.75)(2/3,2/3)(1/3,.5)(1/3,1)(0,0):
        //   1/3·(3/4+2/3)/2 + 1/3·(2/3+1/2)/2 + 1/3·(1+0)/2 = 17/72 + 14/72 + 12/72 = 43/72.
        // AUOUT: precision_out (N−fp)/((K−tp)+(N−fp)) = –, 1, 1/2, 1/3, 2/4, 2/5 at
        //   1−FPR = –, .5, .5, .5, 1, 1; with ends (0,0) … (1,½):
        //   .5·(0+1)/2 + .5·(1/3+1/2)/2 = 1/4 + 5/24 = 11/24.
        let m = ood_metrics(&[0.9, 0.3, 0.5], &[0.5, 0.1]).unwrap();
        assert_metrics(m, [0.0, 200.0 / 3.0, 75.0, 4300.0 / 72.0, 1100.0 / 24.0]);
    }

    #[test]
    fn tnr_taken_at_first_point_with_tpr95() {
        // K = 20 in = 1..=20, out = {.5, 1.5, 10.5, 30}. Walk: out .5 drops (fp 3), then
        // in 1 drops → (19, 3): the first point with TPR exactly .95, TNR = 1 − 3/4.
        let ins: Vec<f32> = (1..=20).map(|v| v as f32).collect();
        let m = ood_metrics(&ins, &[0.5, 1.5, 10.5, 30.0]).unwrap();
        assert_close(m.tnr_at_tpr95, 25.0, "tnr");
    }

    #[test]
    fn auroc_matches_brute_force_on_random_data() {
        let mut rng = StdRng::seed_from_u64(7);
        for trial in 0..50 {
            let k = rng.random_range(1..60);
            let n = rng.random_range(1..60);
            let shift = rng.random_range(-0.5f32..0.5);
            let ins = random_scores(&mut rng, k, shift);
            let outs = random_scores(&mut rng, n, 0.0);
            let m = ood_metrics(&ins, &outs).unwrap();
            let want = brute_auroc(&ins, &outs);
            assert!(
                (m.auroc - want).abs() < 1e-9,
                "trial {trial}: {m:?} vs {want}"
            );
            for v in [m.tnr_at_tpr95, m.auroc, m.dtacc, m.auin, m.auout] {
                assert!((0.0..=100.0).contains(&v), "trial {trial}: {m:?}");
            }
            assert!(m.dtacc >= 50.0, "DTACC includes the all-in point: {m:?}");
        }
    }

    #[test]
    fn large_input() {
        // 10^5 samples each; the exact AUROC is cross-checked with an independent
        // O(n log n) count, and the brute force on a 2000-sample subset.
        let mut rng = StdRng::seed_from_u64(11);
        let ins: Vec<f32> = (0..100_000)
            .map(|_| (rng.random_range(0.0f32..1.0) * 1000.0).round() / 1000.0 + 0.2)
            .collect();
        let outs: Vec<f32> = (0..100_000)
            .map(|_| (rng.random_range(0.0f32..1.0) * 1000.0).round() / 1000.0)
            .collect();
        let m = ood_metrics(&ins, &outs).unwrap();

        let mut sorted_in = ins.clone();
        sorted_in.sort_by(f32::total_cmp);
        let wins: usize = outs
            .iter()
            .map(|o| sorted_in.len() - sorted_in.partition_point(|i| i <= o))
            .sum();
        let exact = 100.0 * wins as f64 / (ins.len() * outs.len()) as f64;
        assert!((m.auroc - exact).abs() < 1e-9, "{} vs {exact}", m.auroc);

        let (sub_in, sub_out) = (&ins[..1000], &outs[..1000]);
        let sub = ood_metrics(sub_in, sub_out).unwrap();
        let brute = brute_auroc(sub_in, sub_out);
        assert!((sub.auroc - brute).abs() < 1e-9, "{} vs {brute}", sub.auroc);
        // The subset estimates the same population quantity.
        assert!((m.auroc - brute).abs() < 5.0, "{} vs {brute}", m.auroc);
    }

    #[test]
    fn rejects_empty_and_non_finite() {
        let err = ood_metrics(&[], &[1.0]).unwrap_err();
        assert_eq!(err.to_string(), "no in-distribution scores");
        let err = ood_metrics(&[1.0], &[]).unwrap_err();
        assert_eq!(err.to_string(), "no out-of-distribution scores");
        let err = ood_metrics(&[1.0, f32::NAN], &[1.0]).unwrap_err();
        assert_eq!(err.to_string(), "in-distribution score at index 1 is NaN");
        let err = ood_metrics(&[1.0], &[0.0, 2.0, f32::NEG_INFINITY]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "out-of-distribution score at index 2 is -inf"
        );
    }

    #[test]
    fn threshold_keeps_requested_fraction() {
        // Scores 1..=20 shuffled: keeping 95 % keeps 19, so the threshold is 2.
        let ins: Vec<f32> = (1..=20).rev().map(|v| v as f32).collect();
        assert_eq!(threshold_at_tpr(&ins, 0.95).unwrap(), 2.0);
        assert_eq!(threshold_at_tpr(&ins, 1.0).unwrap(), 1.0);
        assert_eq!(threshold_at_tpr(&ins, 0.5).unwrap(), 11.0);
        // 0.93·20 = 18.6 → keep 19.
        assert_eq!(threshold_at_tpr(&ins, 0.93).unwrap(), 2.0);
        let t = threshold_at_tpr(&ins, 0.0).unwrap();
        assert!(t > 20.0 && ins.iter().all(|&s| s < t));

        let mut rng = StdRng::seed_from_u64(3);
        let scores: Vec<f32> = (0..1000).map(|_| rng.random_range(-5.0f32..5.0)).collect();
        let t = threshold_at_tpr(&scores, 0.95).unwrap();
        let kept = scores.iter().filter(|&&s| s >= t).count();
        assert_eq!(kept, 950);
    }

    #[test]
    fn threshold_rejects_empty_non_finite_and_bad_rates() {
        let msg = |r: Result<f32, MetricsError>| r.unwrap_err().to_string();
        assert_eq!(
            msg(threshold_at_tpr(&[], 0.95)),
            "no in-distribution scores"
        );
        assert_eq!(
            msg(threshold_at_tpr(&[1.0, f32::NAN], 0.95)),
            "in-distribution score at index 1 is NaN"
        );
        assert_eq!(
            msg(threshold_at_tpr(&[1.0], 1.5)),
            "true-positive rate 1.5 is not in [0, 1]"
        );
        assert_eq!(
            msg(threshold_at_tpr(&[1.0], f64::NAN)),
            "true-positive rate NaN is not in [0, 1]"
        );
    }

    #[test]
    fn close_f64_scores_are_not_ties() {
        // In f32 all six scores round to 1.0 and tie; in f64 they separate perfectly.
        let ins = [1.0 + 3e-9, 1.0 + 4e-9, 1.0 + 5e-9];
        let outs = [1.0, 1.0 + 1e-9, 1.0 + 2e-9];
        let m = ood_metrics(&ins, &outs).unwrap();
        assert_close(m.auroc, 100.0, "auroc");
        let f = TempFile::new("f64", "1.000000003\n1.000000004\n1.000000005\n");
        let parsed = read_scores(&f.0).unwrap();
        assert_eq!(parsed, ins.to_vec());
        let as_f32: Vec<f32> = ins.iter().map(|&v| v as f32).collect();
        let outs_f32: Vec<f32> = outs.iter().map(|&v| v as f32).collect();
        assert!(ood_metrics(&as_f32, &outs_f32).unwrap().auroc < 1.0);
    }

    #[cfg(unix)]
    #[test]
    fn read_scores_refuses_devices_and_binary() {
        let err = read_scores(Path::new("/dev/zero")).unwrap_err().to_string();
        assert_eq!(
            err,
            "/dev/zero: not a regular file (devices, FIFOs and sockets cannot be read as scores)"
        );
        let err = parse_scores(b"0.5\n\xff\n", Path::new("s.txt"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "s.txt: not UTF-8 text (invalid byte at offset 4)");
    }

    /// A temp file with a name unique to this process and test.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(tag: &str, contents: &str) -> Self {
            let path = std::env::temp_dir()
                .join(format!("isomax-metrics-{}-{tag}.txt", std::process::id()));
            std::fs::write(&path, contents).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn read_scores_parses_and_skips() {
        let f = TempFile::new(
            "ok",
            "# header\n  0.5  \n\n-1e-3\r\n2 # trailing comment\n\t# indented comment\n7\n",
        );
        assert_eq!(read_scores(&f.0).unwrap(), vec![0.5, -1e-3, 2.0, 7.0]);
    }

    #[test]
    fn read_scores_errors() {
        let f = TempFile::new("nan", "1\n2\nNaN\n");
        let err = read_scores(&f.0).unwrap_err().to_string();
        assert_eq!(err, format!("{}:3: score is NaN", f.0.display()));

        let f = TempFile::new("inf", "1\n-inf\n");
        let err = read_scores(&f.0).unwrap_err().to_string();
        assert_eq!(err, format!("{}:2: score is infinite", f.0.display()));

        let f = TempFile::new("abc", "# c\n1.5\n abc \n");
        let err = read_scores(&f.0).unwrap_err().to_string();
        assert_eq!(err, format!("{}:3: 'abc' is not a number", f.0.display()));

        let f = TempFile::new("empty", "# only a comment\n\n   \n");
        let err = read_scores(&f.0).unwrap_err().to_string();
        assert_eq!(err, format!("{}: no scores", f.0.display()));

        let missing = std::env::temp_dir().join("isomax-metrics-does-not-exist.txt");
        let err = read_scores(&missing).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("cannot open {}", missing.display())),
            "{err}"
        );
    }

    #[test]
    fn json_keys() {
        let m = OodMetrics {
            tnr_at_tpr95: 1.0,
            auroc: 2.0,
            dtacc: 3.0,
            auin: 4.0,
            auout: 5.0,
        };
        let json = m.to_json();
        let obj = json.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["auin", "auout", "auroc", "dtacc", "tnr_at_tpr95"]);
        assert_eq!(json["tnr_at_tpr95"], 1.0);
        assert_eq!(json["auout"], 5.0);
        // Serde derive round-trips through the same field names.
        let back: OodMetrics = serde_json::from_value(json).unwrap();
        assert_eq!(back, m);
    }
}
