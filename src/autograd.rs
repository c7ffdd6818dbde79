//! Reverse-mode autodiff: ops append a node (inputs, output, backward rule) to the tape
//! while gradients are enabled; [`Tensor::backward`] replays it in reverse, recording the
//! gradient kernels into the same command encoder as the forward pass.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::tensor::Tensor;
use std::collections::HashMap;

/// A backward rule: from the output's gradient, one optional gradient per input.
pub(crate) type BackwardFn = Box<dyn FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>>>;

pub(crate) struct Node {
    output: u64,
    /// Ids of the inputs that need a gradient (None for the others).
    inputs: Vec<Option<u64>>,
    backward: BackwardFn,
}

#[derive(Default)]
pub(crate) struct Tape {
    nodes: Vec<Node>,
    /// Accumulated gradients of leaves (parameters), by tensor id.
    pub(crate) grads: HashMap<u64, Tensor>,
}

impl Gpu {
    /// Record `out = op(inputs)` with its backward rule, if any input needs a gradient.
    pub(crate) fn record(
        &self,
        out: &Tensor,
        inputs: &[&Tensor],
        backward: impl FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>> + 'static,
    ) {
        if !self.grad_enabled() || !inputs.iter().any(|t| t.requires_grad()) {
            return;
        }
        out.0.requires_grad.set(true);
        let inputs = inputs
            .iter()
            .map(|t| t.requires_grad().then(|| t.id()))
            .collect();
        self.0.tape.borrow_mut().nodes.push(Node {
            output: out.id(),
            inputs,
            backward: Box::new(backward),
        });
    }

    /// Drop everything recorded (and the activations it kept alive) without a backward.
    pub fn clear_tape(&self) {
        self.0.tape.borrow_mut().nodes.clear();
    }

    /// Forget every accumulated gradient.
    pub fn zero_grads(&self) {
        self.0.tape.borrow_mut().grads.clear();
    }

    /// Number of nodes currently on the tape.
    pub fn tape_len(&self) -> usize {
        self.0.tape.borrow().nodes.len()
    }
}

impl Tensor {
    /// Backpropagate from this scalar: every leaf that requires a gradient gets its
    /// gradient added to [`Tensor::grad`]. The tape is consumed.
    pub fn backward(&self) -> Result<()> {
        if self.numel() != 1 {
            return Err(Error::Autograd(format!(
                "backward needs a scalar loss, got shape {:?}",
                self.shape()
            )));
        }
        let seed = Tensor::ones(self.gpu(), self.shape())?;
        self.backward_with(seed)
    }

    /// Backpropagate with an explicit output gradient of this tensor's shape.
    pub fn backward_with(&self, grad: Tensor) -> Result<()> {
        self.same_shape(&grad, "backward")?;
        let gpu = self.gpu().clone();
        let nodes = std::mem::take(&mut gpu.0.tape.borrow_mut().nodes);
        if !self.requires_grad() {
            return Err(Error::Autograd(
                "the tensor does not depend on any parameter that requires a gradient".into(),
            ));
        }
        gpu.no_grad(|| {
            let mut pending: HashMap<u64, Tensor> = HashMap::new();
            pending.insert(self.id(), grad);
            for node in nodes.into_iter().rev() {
                let Some(g) = pending.remove(&node.output) else {
                    continue;
                };
                let grads = (node.backward)(&g)?;
                for (id, gi) in node.inputs.iter().zip(grads) {
                    if let (Some(id), Some(gi)) = (id, gi) {
                        accumulate(&mut pending, *id, gi)?;
                    }
                }
            }
            // Whatever is left belongs to leaves: add it to their stored gradients.
            let mut tape = gpu.0.tape.borrow_mut();
            for (id, g) in pending {
                accumulate(&mut tape.grads, id, g)?;
            }
            Ok(())
        })
    }
}

fn accumulate(map: &mut HashMap<u64, Tensor>, id: u64, g: Tensor) -> Result<()> {
    match map.remove(&id) {
        Some(prev) => {
            let sum = prev.add(&g)?;
            map.insert(id, sum);
        }
        None => {
            map.insert(id, g);
        }
    }
    Ok(())
}
