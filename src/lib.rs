//! isomax: a from-scratch wgpu deep-learning engine for the IsoMax loss and the Entropic
//! Score (Macêdo et al.), for classifiers that know what they don't know.
//!
//! Architecture, one home per concern:
//! - [`gpu`]: device (own or host-provided), buffer pool, pipeline cache, recorder, readback
//! - [`tensor`]: [`Tensor`], an f32 array in a GPU buffer
//! - [`autograd`]: graph-owned reverse-mode autodiff, `backward` → [`Gradients`]
//! - [`ops`]: one file per kernel family (WGSL in `shaders/`), with gradients and CPU references
//! - [`embed`]: [`Classifier`], for host wgpu applications that classify their own GPU images

#![warn(missing_docs)]

pub mod autograd;
pub mod checkpoint;
pub mod data;
pub mod dismax;
pub mod embed;
pub mod error;
pub mod eval;
pub mod gpu;
pub mod interop;
pub mod nn;
pub mod ood;
pub mod ops;
pub mod optim;
pub mod tensor;
pub mod train;

pub use autograd::{Gradients, grad_enabled, no_grad};
pub use embed::{Classification, Classifier, ImageResult};
pub use error::{Error, Result};

/// The README's code samples, compiled as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
pub use gpu::{Gpu, GpuOptions};
pub use tensor::Tensor;
