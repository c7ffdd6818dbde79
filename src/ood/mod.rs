//! Out-of-distribution detection: the evaluation metrics and a CPU reference of the heads' math.

pub mod metrics;
#[cfg(feature = "plot")]
pub mod plot;
pub mod scores;

pub use metrics::{
    MetricsError, OodMetrics, ood_metrics, parse_scores, read_scores, threshold_at_tpr,
};
pub use scores::RowScores;
