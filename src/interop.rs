//! Models in and out of PyTorch: `state_dict`s stored as safetensors.
//!
//! Two namings are understood:
//! - [`Naming::Reference`]: the models of `scripts/torch_reference.py`, whose `state_dict`
//!   names are isomax's own tensor names (`backbone.block0.conv1.weight`, `head.prototypes`).
//! - [`Naming::Official`]: the IsoMax authors' DenseNet-BC code (`DenseNet3` in
//!   `models/densenet.py` of their repository, with a `*LossFirstPart` as `classifier`):
//!   `conv1`, `block{1,2,3}.layer.{i}.{bn1,conv1,bn2,conv2}`, `trans{1,2}.{bn1,conv1}`, `bn1`,
//!   and `classifier.{weights,bias}` (SoftMax) or `classifier.{prototypes,distance_scale}`.
//!
//! BatchNorm's `num_batches_tracked` counters are ignored on import and written (as 0, I64)
//! on export so that `load_state_dict(strict=True)` accepts the file. Import checks every
//! tensor: an unknown, missing or mis-shaped one is an error naming it and the file.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::{Arch, HeadKind, Model, ModelConfig, Module};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::BTreeMap;
use std::path::Path;

/// How the tensors of a PyTorch file are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// `scripts/torch_reference.py` (isomax's own names).
    Reference,
    /// The authors' official DenseNet-BC code (DenseNet models only).
    Official,
}

impl Naming {
    /// Parse a command-line name: `reference` or `official`.
    pub fn parse(s: &str) -> Result<Naming> {
        match s {
            "reference" | "torch-reference" => Ok(Naming::Reference),
            "official" => Ok(Naming::Official),
            _ => Err(Error::Config(format!(
                "unknown naming '{s}' (expected reference or official)"
            ))),
        }
    }
}

fn err(path: &Path, detail: impl std::fmt::Display) -> Error {
    Error::Config(format!("{}: {detail}", path.display()))
}

/// The PyTorch name of isomax tensor `name` under `naming`.
pub fn torch_name(arch: Arch, naming: Naming, name: &str) -> Result<String> {
    if naming == Naming::Reference {
        return Ok(name.to_string());
    }
    if !matches!(arch, Arch::Densenet100 | Arch::DensenetTiny) {
        return Err(Error::Config(format!(
            "the official naming is the authors' DenseNet-BC code; {arch:?} has none (use the reference naming)"
        )));
    }
    let unsupported = || Error::Config(format!("tensor '{name}' has no official name"));
    if let Some(rest) = name.strip_prefix("head.") {
        let rest = match rest {
            "linear.weight" => "weights",
            "linear.bias" => "bias",
            other => other,
        };
        return Ok(format!("classifier.{rest}"));
    }
    let rest = name.strip_prefix("backbone.").ok_or_else(unsupported)?;
    let (first, tail) = rest.split_once('.').ok_or_else(unsupported)?;
    if first == "conv1" {
        return Ok(rest.to_string());
    }
    if first == "bn" {
        return Ok(format!("bn1.{tail}"));
    }
    let number = |prefix: &str| -> Option<usize> { first.strip_prefix(prefix)?.parse().ok() };
    if let Some(b) = number("block") {
        let (layer, tail) = tail.split_once('.').ok_or_else(unsupported)?;
        let i: usize = layer
            .strip_prefix("layer")
            .and_then(|i| i.parse().ok())
            .ok_or_else(unsupported)?;
        return Ok(format!("block{}.layer.{i}.{tail}", b + 1));
    }
    if let Some(b) = number("transition") {
        let tail = if let Some(t) = tail.strip_prefix("bn.") {
            format!("bn1.{t}")
        } else if let Some(t) = tail.strip_prefix("conv.") {
            format!("conv1.{t}")
        } else {
            return Err(unsupported());
        };
        return Ok(format!("trans{}.{tail}", b + 1));
    }
    Err(unsupported())
}

/// A `state_dict` read from a safetensors file: name → (shape, values as f32).
pub struct StateDict {
    /// PyTorch parameter name → (shape, row-major values).
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

impl StateDict {
    /// Read every tensor (F32 or F64; `num_batches_tracked` counters are skipped).
    pub fn read(path: &Path) -> Result<StateDict> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| err(path, format!("not a safetensors file ({e})")))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            if name.ends_with("num_batches_tracked") {
                continue;
            }
            let data: Vec<f32> = match view.dtype() {
                Dtype::F32 => view
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                Dtype::F64 => view
                    .data()
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
                    .collect(),
                other => {
                    return Err(err(
                        path,
                        format!("tensor '{name}' is {other:?}; only F32 and F64 are read"),
                    ));
                }
            };
            tensors.insert(name, (view.shape().to_vec(), data));
        }
        Ok(StateDict { tensors })
    }

    /// The naming of this file: official when it has the authors' top-level `conv1.weight`.
    pub fn naming(&self) -> Naming {
        if self.tensors.contains_key("conv1.weight") {
            Naming::Official
        } else {
            Naming::Reference
        }
    }

    fn shape_of(&self, path: &Path, name: &str) -> Result<&[usize]> {
        self.tensors
            .get(name)
            .map(|(s, _)| s.as_slice())
            .ok_or_else(|| err(path, format!("missing tensor '{name}'")))
    }

    /// Copy every tensor of `model` from this file (read from `path`, named in errors).
    /// Every model tensor must be present with its shape, and every file tensor used.
    pub fn load_into(&self, model: &Model, naming: Naming, path: &Path) -> Result<()> {
        let mut names = Vec::new();
        model.visit("", &mut |name, t, _| names.push((name, t.clone())));
        let mut used = std::collections::BTreeSet::new();
        for (name, t) in &names {
            let tn = torch_name(model.config.arch, naming, name)?;
            let (shape, data) = self.tensors.get(&tn).ok_or_else(|| {
                err(
                    path,
                    format!(
                        "missing tensor '{tn}' (isomax's {name}, shape {:?})",
                        t.shape()
                    ),
                )
            })?;
            if shape.as_slice() != t.shape() {
                return Err(err(
                    path,
                    format!(
                        "tensor '{tn}' has shape {shape:?}, the {:?} model needs {:?}",
                        model.config.arch,
                        t.shape()
                    ),
                ));
            }
            t.write(data)?;
            used.insert(tn);
        }
        let unknown: Vec<&String> = self.tensors.keys().filter(|k| !used.contains(*k)).collect();
        if !unknown.is_empty() {
            return Err(err(
                path,
                format!(
                    "unknown tensor{} {} for a {:?} model with a {:?} head",
                    if unknown.len() > 1 { "s" } else { "" },
                    unknown
                        .iter()
                        .map(|s| format!("'{s}'"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    model.config.arch,
                    model.config.head
                ),
            ));
        }
        Ok(())
    }
}

/// Build a `arch` + `head` model whose weights come from the PyTorch file `path` (naming
/// detected). Input channels and classes are read from the file; `height`/`width` and the
/// normalisation (`mean`, `std`, one per channel) are the caller's.
pub fn import(
    gpu: &Gpu,
    path: &Path,
    arch: Arch,
    head: HeadKind,
    size: (usize, usize),
    normalization: Option<(Vec<f32>, Vec<f32>)>,
) -> Result<Model> {
    let sd = StateDict::read(path)?;
    let naming = sd.naming();
    let conv1 = torch_name(arch, naming, "backbone.conv1.weight")?;
    let head_tensor = match head {
        HeadKind::SoftMax => "head.linear.weight",
        _ => "head.prototypes",
    };
    let head_tensor = torch_name(arch, naming, head_tensor)?;
    let in_channels = *sd.shape_of(path, &conv1)?.get(1).ok_or_else(|| {
        err(
            path,
            format!("tensor '{conv1}' is not a convolution weight"),
        )
    })?;
    let num_classes = *sd.shape_of(path, &head_tensor)?.first().ok_or_else(|| {
        err(
            path,
            format!("tensor '{head_tensor}' has no class dimension"),
        )
    })?;
    let (mean, std) =
        normalization.unwrap_or_else(|| (vec![0.0; in_channels], vec![1.0; in_channels]));
    if mean.len() != in_channels || std.len() != in_channels {
        return Err(Error::Config(format!(
            "normalisation has {} means and {} stds for {in_channels} input channels",
            mean.len(),
            std.len()
        )));
    }
    let config = ModelConfig {
        arch,
        head,
        in_channels,
        height: size.0,
        width: size.1,
        num_classes,
        mean,
        std,
    };
    let model = Model::new(gpu, config, 0)?;
    sd.load_into(&model, naming, path)?;
    Ok(model)
}

/// Write every tensor of `model` (parameters and batch-norm running statistics) to the
/// safetensors file `path`, named for PyTorch under `naming`.
pub fn export(model: &Model, path: &Path, naming: Naming) -> Result<()> {
    let mut named = Vec::new();
    let mut failed = None;
    model.visit(
        "",
        &mut |name, t, _| match torch_name(model.config.arch, naming, &name) {
            Ok(tn) => named.push((tn, t.clone())),
            Err(e) => failed = failed.take().or(Some(e)),
        },
    );
    if let Some(e) = failed {
        return Err(e);
    }
    let pending: Vec<_> = named.iter().map(|(_, t)| t.read_async()).collect();
    let mut data: BTreeMap<String, (Vec<usize>, Dtype, Vec<u8>)> = BTreeMap::new();
    for ((name, t), p) in named.iter().zip(pending) {
        let mut v = p.wait()?;
        v.truncate(t.numel());
        if let Some(prefix) = name.strip_suffix("running_mean") {
            data.insert(
                format!("{prefix}num_batches_tracked"),
                (vec![], Dtype::I64, 0i64.to_le_bytes().to_vec()),
            );
        }
        data.insert(
            name.clone(),
            (
                t.shape().to_vec(),
                Dtype::F32,
                bytemuck::cast_slice(&v).to_vec(),
            ),
        );
    }
    let views = data
        .iter()
        .map(|(n, (s, d, b))| {
            TensorView::new(*d, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| err(path, format!("tensor '{n}': {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::tensor::serialize(views, None).map_err(|e| err(path, e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

/// Save an imported `model` as an isomax checkpoint (no optimizer state; the training
/// state records `source` and zero epochs).
pub fn save_checkpoint(model: &Model, out: &Path, source: &Path) -> Result<()> {
    let state = crate::checkpoint::TrainState {
        epoch: 0,
        epochs: 0,
        sgd: crate::optim::SgdConfig::default(),
        batch_size: 0,
        seed: 0,
        es_threshold: None,
        train_data: format!("imported from {}", source.display()),
        augment: false,
        holdout: 0,
        entropic_scale: None,
        threshold_source: None,
        fpr: false,
    };
    crate::checkpoint::save(out, model, None, &state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_densenet_names() {
        let a = Arch::Densenet100;
        let o = |n| torch_name(a, Naming::Official, n).unwrap();
        assert_eq!(o("backbone.conv1.weight"), "conv1.weight");
        assert_eq!(
            o("backbone.block0.layer15.bn2.running_var"),
            "block1.layer.15.bn2.running_var"
        );
        assert_eq!(
            o("backbone.block2.layer3.conv2.weight"),
            "block3.layer.3.conv2.weight"
        );
        assert_eq!(o("backbone.transition1.bn.bias"), "trans2.bn1.bias");
        assert_eq!(o("backbone.transition0.conv.weight"), "trans1.conv1.weight");
        assert_eq!(o("backbone.bn.running_mean"), "bn1.running_mean");
        assert_eq!(o("head.linear.weight"), "classifier.weights");
        assert_eq!(o("head.linear.bias"), "classifier.bias");
        assert_eq!(o("head.prototypes"), "classifier.prototypes");
        assert_eq!(o("head.distance_scale"), "classifier.distance_scale");
        assert!(torch_name(Arch::Resnet34, Naming::Official, "backbone.conv1.weight").is_err());
        assert_eq!(
            torch_name(
                Arch::Resnet34,
                Naming::Reference,
                "backbone.block3.shortcut.bn.weight"
            )
            .unwrap(),
            "backbone.block3.shortcut.bn.weight"
        );
    }
}
