//! isomax: a from-scratch wgpu deep-learning engine for the IsoMax loss and the Entropic
//! Score (Macêdo et al.), for classifiers that know what they don't know.
//!
//! Architecture, one home per concern:
//! - [`gpu`]: device (own or host-provided), buffer pool, pipeline cache, recorder, readback
//! - [`tensor`]: [`Tensor`], an f32 array in a GPU buffer
//! - [`autograd`]: the tape and `backward`
//! - [`ops`]: one file per kernel family (WGSL in `shaders/`), with gradients and CPU references

pub mod autograd;
pub mod data;
pub mod error;
pub mod gpu;
pub mod ood;
pub mod ops;
pub mod tensor;

pub use error::{Error, Result};
pub use gpu::{Gpu, GpuOptions};
pub use tensor::Tensor;
