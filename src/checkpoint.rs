//! Checkpoints: every tensor of the model (and the optimizer's velocities) in safetensors
//! format, with the model config and training state as JSON metadata. Written atomically
//! (temporary file, then rename) so an interrupted save never leaves a broken checkpoint.

use crate::error::{Error, Result};
use crate::nn::{Model, ModelConfig, Module};
use crate::optim::SgdConfig;
use crate::tensor::Tensor;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Training state stored beside the weights.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    /// Epochs completed.
    pub epoch: usize,
    /// Epochs planned.
    pub epochs: usize,
    pub sgd: SgdConfig,
    pub batch_size: usize,
    pub seed: u64,
    /// Entropic-score threshold keeping 95 % of held-out in-distribution images.
    pub es_threshold: Option<f32>,
    /// The training data spec, for the record.
    pub train_data: String,
    pub augment: bool,
    pub holdout: usize,
    /// The entropic scale E_s the loss used (`None` in checkpoints written before it was
    /// stored: the head's default, see [`TrainState::entropic_scale`]).
    #[serde(default)]
    pub entropic_scale: Option<f32>,
    /// Where `es_threshold` was calibrated (e.g. "1000 held-out training images").
    #[serde(default)]
    pub threshold_source: Option<String>,
    /// DisMax's fractional probability regularization was on (`false` in older checkpoints).
    #[serde(default)]
    pub fpr: bool,
}

impl TrainState {
    /// The entropic scale E_s of this run: the stored one, else the head's default (10 for
    /// the IsoMax family, 1 for SoftMax), which is what older checkpoints were trained with.
    pub fn entropic_scale(&self, head: crate::nn::HeadKind) -> f32 {
        self.entropic_scale.unwrap_or_else(|| head.train_scale())
    }
}

/// A checkpoint read from disk.
pub struct Checkpoint {
    pub config: ModelConfig,
    pub state: TrainState,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

fn ck_err(path: &Path, detail: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.display().to_string(),
        detail: detail.into(),
    }
}

/// Save `model` (and optimizer `velocity`, named like the parameters) to `path`.
pub fn save(
    path: &Path,
    model: &Model,
    velocity: Option<&[Tensor]>,
    state: &TrainState,
) -> Result<()> {
    let mut named: Vec<(String, Tensor)> = Vec::new();
    model.visit("", &mut |name, t, _| named.push((name, t.clone())));
    if let Some(v) = velocity {
        let params = model.params();
        let mut pnames = Vec::new();
        model.visit("", &mut |name, _, role| {
            if role == crate::nn::Role::Param {
                pnames.push(name)
            }
        });
        if v.len() != params.len() {
            return Err(ck_err(
                path,
                "optimizer state does not match the model's parameters",
            ));
        }
        for (n, t) in pnames.into_iter().zip(v) {
            named.push((format!("optimizer.velocity.{n}"), t.clone()));
        }
    }
    // Start every readback before waiting on any.
    let pending: Vec<_> = named.iter().map(|(_, t)| t.read_async()).collect();
    let mut data: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for ((name, t), p) in named.iter().zip(pending) {
        let mut v = p.wait()?;
        v.truncate(t.numel());
        data.insert(
            name.clone(),
            (t.shape().to_vec(), bytemuck::cast_slice(&v).to_vec()),
        );
    }
    let views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(n, (s, b))| {
            Ok((
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b)
                    .map_err(|e| ck_err(path, e.to_string()))?,
            ))
        })
        .collect::<Result<_>>()?;
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "isomax-checkpoint-1".to_string());
    meta.insert(
        "config".to_string(),
        serde_json::to_string(&model.config).expect("config serialises"),
    );
    meta.insert(
        "state".to_string(),
        serde_json::to_string(state).expect("state serialises"),
    );
    let bytes = safetensors::tensor::serialize(views, Some(meta))
        .map_err(|e| ck_err(path, e.to_string()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let tmp = path.with_extension("safetensors.tmp");
    std::fs::write(&tmp, &bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    Ok(())
}

impl Checkpoint {
    /// Read and validate a checkpoint file.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| ck_err(path, format!("not a safetensors file ({e})")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some("isomax-checkpoint-1") {
            return Err(ck_err(
                path,
                "not an isomax checkpoint (no isomax metadata)",
            ));
        }
        let config: ModelConfig =
            serde_json::from_str(meta.get("config").map(String::as_str).unwrap_or(""))
                .map_err(|e| ck_err(path, format!("bad model config: {e}")))?;
        let state: TrainState =
            serde_json::from_str(meta.get("state").map(String::as_str).unwrap_or(""))
                .map_err(|e| ck_err(path, format!("bad training state: {e}")))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| ck_err(path, e.to_string()))?;
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(ck_err(
                    path,
                    format!("tensor {name} is {:?}, expected F32", view.dtype()),
                ));
            }
            let data: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            tensors.insert(name, (view.shape().to_vec(), data));
        }
        Ok(Checkpoint {
            config,
            state,
            tensors,
        })
    }

    /// Copy the stored weights into `model` (built from [`Checkpoint::config`]).
    pub fn restore(&self, model: &Model, velocity: Option<&[Tensor]>) -> Result<()> {
        let mut result = Ok(());
        let mut pnames = Vec::new();
        model.visit("", &mut |name, t, role| {
            if role == crate::nn::Role::Param {
                pnames.push(name.clone());
            }
            if result.is_err() {
                return;
            }
            result = self.write_into(&name, t);
        });
        result?;
        if let Some(v) = velocity {
            for (n, t) in pnames.iter().zip(v) {
                self.write_into(&format!("optimizer.velocity.{n}"), t)?;
            }
        }
        Ok(())
    }

    fn write_into(&self, name: &str, t: &Tensor) -> Result<()> {
        let (shape, data) = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::Config(format!("checkpoint has no tensor '{name}'")))?;
        if shape != t.shape() {
            return Err(Error::shape(
                "checkpoint restore",
                format!("{name}: stored {shape:?} vs model {:?}", t.shape()),
            ));
        }
        t.write(data)
    }

    /// Whether optimizer state is stored (checkpoints written during training).
    pub fn has_optimizer_state(&self) -> bool {
        self.tensors.keys().any(|k| k.starts_with("optimizer."))
    }
}
