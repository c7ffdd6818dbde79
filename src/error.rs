//! The crate's error type: every failure names the op, the shapes or the file involved.

use thiserror::Error;

/// Errors from the engine, the models, the data and the commands.
#[derive(Debug, Error)]
pub enum Error {
    /// No adapter could be found, or the device could not be created.
    #[error("{0}")]
    Device(String),
    /// Two shapes that must agree do not: the op, the shape it expected, the one it got.
    #[error("{op}: shape mismatch: expected {expected}, got {got}")]
    Shape {
        /// The op (or model input) that checked.
        op: &'static str,
        /// What the op needs, e.g. `[B, 1, 28, 28]`.
        expected: String,
        /// What it was given.
        got: String,
    },
    /// A shape that no op could take (an axis out of range, zero elements where some are
    /// needed, a rank the op does not support).
    #[error("{op}: invalid shape: {detail}")]
    InvalidShape {
        /// The op that checked.
        op: &'static str,
        /// What is wrong, with the shapes involved.
        detail: String,
    },
    /// A tensor or dispatch exceeds what the device allows.
    #[error("{op}: {detail}")]
    Limit {
        /// The op that checked.
        op: &'static str,
        /// Which limit, its value and what was asked for.
        detail: String,
    },
    /// A buffer handed in by a host application cannot be used.
    #[error("buffer: {0}")]
    Buffer(String),
    /// Reading back from the GPU failed.
    #[error("readback failed: {0}")]
    Readback(String),
    /// Backward was called wrongly (non-scalar loss, nothing recorded...).
    #[error("autograd: {0}")]
    Autograd(String),
    /// Loading or decoding a dataset failed.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// Reading scores or computing metrics failed.
    #[error(transparent)]
    Metrics(#[from] crate::ood::MetricsError),
    /// A checkpoint could not be written or read.
    #[error("checkpoint {path}: {detail}")]
    Checkpoint {
        /// The checkpoint file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// Bad configuration or arguments.
    #[error("{0}")]
    Config(String),
    /// Training diverged: the loss became non-finite. The run stops at once; the
    /// checkpoint on disk (if any) is the last good state.
    #[error("training stopped: the loss is {loss} at epoch {epoch}, step {step}; {kept}")]
    Diverged {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based step within the epoch.
        step: usize,
        /// The non-finite loss value.
        loss: f32,
        /// What was kept (the last good checkpoint, or that none was written).
        kept: String,
    },
    /// Any I/O failure, with the path it happened on.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Shorthand used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A shape no op could take (see [`Error::InvalidShape`]).
    pub(crate) fn shape(op: &'static str, detail: impl Into<String>) -> Self {
        Error::InvalidShape {
            op,
            detail: detail.into(),
        }
    }

    /// Two shapes that must agree do not (see [`Error::Shape`]).
    pub(crate) fn mismatch(
        op: &'static str,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        Error::Shape {
            op,
            expected: expected.into(),
            got: got.into(),
        }
    }

    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}
