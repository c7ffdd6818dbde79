//! Classification heads: SoftMax (affine logits, the baseline), IsoMax (negative Euclidean
//! distances to prototypes, the paper), IsoMax+ and DisMax (the authors' successors).

use super::layers::{Linear, Module, Role, Seeds, join};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ood::scores::HeadKind;
use crate::ops::isomax;
use crate::tensor::Tensor;

/// A head maps features `[B, D]` to logits `[B, C]`.
pub struct Head {
    /// Which head (SoftMax, IsoMax, IsoMax+, DisMax).
    pub kind: HeadKind,
    linear: Option<Linear>,
    prototypes: Option<Tensor>,
    distance_scale: Option<Tensor>,
}

impl Head {
    /// Initialisation (docs/method.md §1): IsoMax prototypes 0; IsoMax+/DisMax prototypes N(0, 1) and
    /// distance scale 1.
    pub fn new(
        gpu: &Gpu,
        kind: HeadKind,
        features: usize,
        classes: usize,
        seeds: &mut Seeds,
    ) -> Result<Head> {
        let param = |t: Tensor| {
            t.set_requires_grad(true);
            t
        };
        Ok(match kind {
            HeadKind::SoftMax => Head {
                kind,
                linear: Some(Linear::new(gpu, features, classes, seeds.next_seed())?),
                prototypes: None,
                distance_scale: None,
            },
            HeadKind::IsoMax => Head {
                kind,
                linear: None,
                prototypes: Some(param(Tensor::zeros(gpu, &[classes, features])?)),
                distance_scale: None,
            },
            HeadKind::IsoMaxPlus | HeadKind::DisMax => Head {
                kind,
                linear: None,
                prototypes: Some(param(Tensor::randn(
                    gpu,
                    &[classes, features],
                    0.0,
                    1.0,
                    seeds.next_seed(),
                )?)),
                distance_scale: Some(param(Tensor::ones(gpu, &[1])?)),
            },
        })
    }

    /// Logits `[B, C]` at temperature 1 (the entropic scale is applied only in the loss).
    /// Errors if the head's parameters do not match its kind (`kind` was changed after
    /// construction).
    pub fn logits(&self, features: &Tensor) -> Result<Tensor> {
        let missing = |what: &str| {
            Error::Config(format!(
                "invalid {:?} head: it has no {what} (was `kind` changed after Head::new?)",
                self.kind
            ))
        };
        match self.kind {
            HeadKind::SoftMax => self
                .linear
                .as_ref()
                .ok_or_else(|| missing("linear layer"))?
                .forward(features),
            HeadKind::IsoMax => {
                let d = isomax::prototype_distances(
                    features,
                    self.prototypes
                        .as_ref()
                        .ok_or_else(|| missing("prototypes"))?,
                )?;
                isomax::logits_from_distances(&d, false)
            }
            HeadKind::IsoMaxPlus | HeadKind::DisMax => {
                let dismax = self.kind == HeadKind::DisMax;
                let d = isomax::normalized_prototype_distances(
                    features,
                    self.prototypes
                        .as_ref()
                        .ok_or_else(|| missing("prototypes"))?,
                    self.distance_scale
                        .as_ref()
                        .ok_or_else(|| missing("distance scale"))?,
                    if dismax {
                        std::f32::consts::SQRT_2
                    } else {
                        1.0
                    },
                )?;
                isomax::logits_from_distances(&d, dismax)
            }
        }
    }
}

impl Module for Head {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor, Role)) {
        if let Some(l) = &self.linear {
            l.visit(&join(prefix, "linear"), f);
        }
        if let Some(p) = &self.prototypes {
            f(join(prefix, "prototypes"), p, Role::Param);
        }
        if let Some(s) = &self.distance_scale {
            f(join(prefix, "distance_scale"), s, Role::Param);
        }
    }
}
