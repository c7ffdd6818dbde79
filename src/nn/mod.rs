//! Layers and models: a [`Model`] is a backbone (ResNet or DenseNet-BC) plus a head
//! (SoftMax, IsoMax, IsoMax+ or DisMax), described by a serialisable [`ModelConfig`].

pub mod densenet;
pub mod head;
pub mod layers;
pub mod resnet;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
pub use crate::ood::scores::HeadKind;
use crate::tensor::Tensor;
use densenet::DenseNet;
use head::Head;
pub use layers::{Module, Role};
use resnet::ResNet;
use serde::{Deserialize, Serialize};

/// The backbone architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    /// ResNet-34, CIFAR form (21.3 M parameters).
    Resnet34,
    /// DenseNet-BC-100, growth 12 (0.77 M parameters).
    Densenet100,
    /// Small ResNet for CPU adapters.
    ResnetTiny,
    /// Small DenseNet-BC for CPU adapters.
    DensenetTiny,
}

impl Arch {
    /// Parse a command-line name.
    pub fn parse(s: &str) -> Result<Arch> {
        Ok(match s {
            "resnet34" => Arch::Resnet34,
            "densenet100" | "densenet-bc-100" => Arch::Densenet100,
            "resnet-tiny" => Arch::ResnetTiny,
            "densenet-tiny" => Arch::DensenetTiny,
            _ => {
                return Err(Error::Config(format!(
                    "unknown model '{s}' (expected resnet34, densenet100, resnet-tiny, densenet-tiny)"
                )));
            }
        })
    }
}

/// Everything needed to rebuild a model (stored in checkpoints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Backbone architecture.
    pub arch: Arch,
    /// Classification head (and so the loss).
    pub head: HeadKind,
    /// Input channels (1 grey, 3 RGB).
    pub in_channels: usize,
    /// Input height in pixels.
    pub height: usize,
    /// Input width in pixels.
    pub width: usize,
    /// Number of classes (logits per image).
    pub num_classes: usize,
    /// Per-channel input normalisation used in training (applied to every input).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation paired with `mean`, each > 0.
    pub std: Vec<f32>,
}

enum Backbone {
    ResNet(ResNet),
    DenseNet(DenseNet),
}

/// A classifier: backbone + head.
pub struct Model {
    /// What the model was built from.
    pub config: ModelConfig,
    backbone: Backbone,
    /// Maps the backbone's features to logits.
    pub head: Head,
}

impl Model {
    /// Build with seeded initialisation.
    pub fn new(gpu: &Gpu, config: ModelConfig, seed: u64) -> Result<Model> {
        if config.num_classes == 0
            || config.in_channels == 0
            || config.height == 0
            || config.width == 0
        {
            return Err(Error::Config(format!("invalid model config {config:?}")));
        }
        let mut seeds = layers::Seeds::new(seed);
        let c = config.in_channels;
        let backbone = match config.arch {
            Arch::Resnet34 => Backbone::ResNet(ResNet::resnet34(gpu, c, &mut seeds)?),
            Arch::ResnetTiny => Backbone::ResNet(ResNet::tiny(gpu, c, &mut seeds)?),
            Arch::Densenet100 => Backbone::DenseNet(DenseNet::densenet100(gpu, c, &mut seeds)?),
            Arch::DensenetTiny => Backbone::DenseNet(DenseNet::tiny(gpu, c, &mut seeds)?),
        };
        let features = match &backbone {
            Backbone::ResNet(r) => r.features,
            Backbone::DenseNet(d) => d.features,
        };
        let head = Head::new(gpu, config.head, features, config.num_classes, &mut seeds)?;
        Ok(Model {
            config,
            backbone,
            head,
        })
    }

    /// Features `[B, D]` of normalised images `[B, C, H, W]`. In evaluation
    /// (`training == false`) no graph is built, whatever the thread's gradient mode.
    pub fn features(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        if !training && crate::autograd::grad_enabled() {
            return crate::autograd::no_grad(|| self.features(x, false));
        }
        let c = &self.config;
        let s = x.shape();
        if s.len() != 4 || s[1] != c.in_channels || s[2] != c.height || s[3] != c.width {
            return Err(Error::mismatch(
                "model input",
                format!("[B, {}, {}, {}]", c.in_channels, c.height, c.width),
                format!("{s:?}"),
            ));
        }
        match &self.backbone {
            Backbone::ResNet(r) => r.forward(x, training),
            Backbone::DenseNet(d) => d.forward(x, training),
        }
    }

    /// The DenseNet backbone, if this is one (tests compare its two forward paths).
    #[doc(hidden)]
    pub fn densenet(&self) -> Option<&DenseNet> {
        match &self.backbone {
            Backbone::DenseNet(d) => Some(d),
            Backbone::ResNet(_) => None,
        }
    }

    /// Logits `[B, C]` (temperature 1). In evaluation no graph is built.
    pub fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let f = self.features(x, training)?;
        if training {
            self.head.logits(&f)
        } else {
            crate::autograd::no_grad(|| self.head.logits(&f))
        }
    }

    /// The trainable parameters, in a fixed order.
    pub fn params(&self) -> Vec<Tensor> {
        let mut v = Vec::new();
        self.visit("", &mut |_, t, r| {
            if r == Role::Param {
                v.push(t.clone())
            }
        });
        v
    }

    /// Number of trainable scalars.
    pub fn num_params(&self) -> usize {
        self.params().iter().map(|t| t.numel()).sum()
    }
}

impl Module for Model {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor, Role)) {
        match &self.backbone {
            Backbone::ResNet(r) => r.visit(&layers::join(prefix, "backbone"), f),
            Backbone::DenseNet(d) => d.visit(&layers::join(prefix, "backbone"), f),
        }
        self.head.visit(&layers::join(prefix, "head"), f);
    }
}
