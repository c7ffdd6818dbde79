//! Reverse-mode autodiff owned by the graph, as candle and burn do it.
//!
//! When an op runs with gradients enabled and one of its inputs requires a gradient, its
//! result tensor gets a [`Node`]: the inputs that need a gradient and the backward rule.
//! Results point at their inputs, never the other way, so the graph is a DAG that is freed
//! when the last tensor holding it is dropped — there is no device-wide tape or gradient map.
//!
//! [`Tensor::backward`] walks the graph from the loss in reverse creation order (tensor ids
//! grow as ops run, so that is a reverse topological order, and the same order every run:
//! sums of gradients are bit-exact), records every gradient kernel into the same command
//! encoder as the forward pass, and returns the leaves' gradients as [`Gradients`].
//!
//! Gradient recording is a per-thread mode ([`no_grad`]), like PyTorch's: a worker thread
//! that classifies does not turn off training on another.

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// A backward rule: from the output's gradient, one optional gradient per input.
pub(crate) type BackwardFn = Box<dyn FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>> + Send>;

/// How a result tensor was made: its inputs (`None` where no gradient is needed) and the
/// rule that maps its gradient to theirs. Taken (and so freed) by the first backward.
pub(crate) struct Node(Mutex<Option<NodeInner>>);

struct NodeInner {
    inputs: Vec<Option<Tensor>>,
    backward: BackwardFn,
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Restores the previous gradient mode on drop, also when the closure panics.
struct ModeGuard(bool);

impl Drop for ModeGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.0));
    }
}

/// Run `f` with gradient recording off on this thread (inference): no op builds a graph
/// node, so no activation is kept alive. The previous mode comes back afterwards, also if
/// `f` panics.
///
/// ```no_run
/// use isomax::{Gpu, Tensor};
/// let gpu = Gpu::new()?;
/// let w = Tensor::ones(&gpu, &[4])?;
/// w.set_requires_grad(true);
/// let y = isomax::no_grad(|| w.scale(2.0))?;
/// assert!(!y.requires_grad());
/// # Ok::<(), isomax::Error>(())
/// ```
pub fn no_grad<T>(f: impl FnOnce() -> T) -> T {
    let _guard = ModeGuard(GRAD_ENABLED.with(|g| g.replace(false)));
    f()
}

/// Whether ops on this thread currently build graph nodes.
pub fn grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// The gradients of one backward pass, by parameter (leaf tensor).
///
/// ```no_run
/// use isomax::{Gpu, Tensor};
/// let gpu = Gpu::new()?;
/// let w = Tensor::from_slice(&gpu, &[1.0, 2.0], &[2])?;
/// w.set_requires_grad(true);
/// let grads = w.mul(&w)?.sum()?.backward()?;
/// assert_eq!(grads.get(&w).unwrap().to_vec()?, vec![2.0, 4.0]);
/// # Ok::<(), isomax::Error>(())
/// ```
#[derive(Default)]
pub struct Gradients(HashMap<u64, Tensor>);

impl Gradients {
    /// The gradient of `leaf`, if the loss depends on it.
    pub fn get(&self, leaf: &Tensor) -> Option<&Tensor> {
        self.0.get(&leaf.id())
    }

    /// Remove and return the gradient of `leaf`.
    pub fn remove(&mut self, leaf: &Tensor) -> Option<Tensor> {
        self.0.remove(&leaf.id())
    }

    /// How many leaves got a gradient.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no leaf got a gradient.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Add `other`'s gradients into these (gradient accumulation over several backwards).
    pub fn accumulate(&mut self, other: Gradients) -> Result<()> {
        for (id, g) in other.0 {
            add_into(&mut self.0, id, g)?;
        }
        Ok(())
    }
}

impl crate::gpu::Gpu {
    /// Record `out = op(inputs)` with its backward rule (see [`Tensor::set_node`]).
    pub(crate) fn record(
        &self,
        out: &Tensor,
        inputs: &[&Tensor],
        backward: impl FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>> + Send + 'static,
    ) {
        out.set_node(inputs, backward);
    }
}

impl Tensor {
    /// Attach the graph node of `self = op(inputs)` when gradients are on and an input
    /// needs one. Called by every op right after recording its forward kernels.
    pub(crate) fn set_node(
        &self,
        inputs: &[&Tensor],
        backward: impl FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>> + Send + 'static,
    ) {
        if !grad_enabled() || !inputs.iter().any(|t| t.requires_grad()) {
            return;
        }
        let inputs = inputs
            .iter()
            .map(|t| t.requires_grad().then(|| (*t).clone()))
            .collect();
        let node = Node(Mutex::new(Some(NodeInner {
            inputs,
            backward: Box::new(backward),
        })));
        // A tensor gets at most one node: ops create their outputs fresh.
        if self.0.node.set(node).is_ok() {
            self.set_requires_grad(true);
        }
    }

    /// Backpropagate from this scalar and return the gradient of every leaf that requires
    /// one. The graph's backward rules run once: a second backward through the same ops is
    /// an error.
    pub fn backward(&self) -> Result<Gradients> {
        if self.numel() != 1 {
            return Err(Error::Autograd(format!(
                "backward needs a scalar loss, got shape {:?}",
                self.shape()
            )));
        }
        let seed = no_grad(|| Tensor::ones(self.gpu(), self.shape()))?;
        self.backward_with(seed)
    }

    /// Backpropagate with an explicit output gradient of this tensor's shape.
    pub fn backward_with(&self, grad: Tensor) -> Result<Gradients> {
        self.same_shape(&grad, "backward")?;
        if !self.requires_grad() {
            return Err(Error::Autograd(
                "the tensor does not depend on any parameter that requires a gradient".into(),
            ));
        }
        // Every tensor reachable through nodes, by id (ascending = creation order).
        let mut reach: BTreeMap<u64, Tensor> = BTreeMap::new();
        let mut stack = vec![self.clone()];
        while let Some(t) = stack.pop() {
            if reach.contains_key(&t.id()) {
                continue;
            }
            if let Some(node) = t.0.node.get() {
                let guard = node.0.lock().unwrap_or_else(|e| e.into_inner());
                let Some(inner) = guard.as_ref() else {
                    return Err(Error::Autograd(
                        "backward through a graph that an earlier backward already consumed".into(),
                    ));
                };
                stack.extend(inner.inputs.iter().flatten().cloned());
            }
            reach.insert(t.id(), t);
        }
        no_grad(|| {
            let mut pending: HashMap<u64, Tensor> = HashMap::new();
            pending.insert(self.id(), grad);
            let mut leaves = Gradients::default();
            for (id, t) in reach.into_iter().rev() {
                let Some(g) = pending.remove(&id) else {
                    continue;
                };
                let taken =
                    t.0.node
                        .get()
                        .and_then(|n| n.0.lock().unwrap_or_else(|e| e.into_inner()).take());
                match taken {
                    Some(NodeInner { inputs, backward }) => {
                        let grads = backward(&g)?;
                        for (input, gi) in inputs.iter().zip(grads) {
                            if let (Some(input), Some(gi)) = (input, gi) {
                                add_into(&mut pending, input.id(), gi)?;
                            }
                        }
                    }
                    // A leaf (a parameter, or an input that requires a gradient).
                    None => add_into(&mut leaves.0, id, g)?,
                }
            }
            Ok(leaves)
        })
    }
}

fn add_into(map: &mut HashMap<u64, Tensor>, id: u64, g: Tensor) -> Result<()> {
    let sum = match map.remove(&id) {
        Some(prev) => prev.add(&g)?,
        None => g,
    };
    map.insert(id, sum);
    Ok(())
}
