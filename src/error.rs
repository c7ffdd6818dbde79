//! The crate's error type: every failure names the op, the shapes or the file involved.

use thiserror::Error;

/// Errors from the engine, the models, the data and the commands.
#[derive(Debug, Error)]
pub enum Error {
    /// No adapter could be found, or the device could not be created.
    #[error("{0}")]
    Device(String),
    /// Two shapes that must agree do not.
    #[error("{op}: shape mismatch: {detail}")]
    Shape { op: &'static str, detail: String },
    /// A tensor or dispatch exceeds what the device allows.
    #[error("{op}: {detail}")]
    Limit { op: &'static str, detail: String },
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
    Checkpoint { path: String, detail: String },
    /// Bad configuration or arguments.
    #[error("{0}")]
    Config(String),
    /// Any I/O failure, with the path it happened on.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Shorthand used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn shape(op: &'static str, detail: impl Into<String>) -> Self {
        Error::Shape {
            op,
            detail: detail.into(),
        }
    }

    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}
