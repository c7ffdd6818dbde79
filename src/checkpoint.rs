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
    /// Optimizer settings the run used.
    pub sgd: SgdConfig,
    /// Training mini-batch size.
    pub batch_size: usize,
    /// Seed of initialisation, shuffling and augmentation.
    pub seed: u64,
    /// Entropic-score threshold keeping 95 % of held-out in-distribution images.
    pub es_threshold: Option<f32>,
    /// The training data spec, for the record.
    pub train_data: String,
    /// Random crop and horizontal flip were on.
    pub augment: bool,
    /// Training images held out to calibrate `es_threshold` (0: none).
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
    /// Architecture, head, input shape and normalisation of the stored model.
    pub config: ModelConfig,
    /// Training state stored beside the weights.
    pub state: TrainState,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    /// Where it was read from, for messages.
    path: String,
}

/// The largest class count a checkpoint may declare.
pub const MAX_CLASSES: usize = 1 << 20;

/// Checks a model config before anything is built from it: 1 or 3 input channels, height
/// and width in `1..=MAX_SIDE`, 1..=[`MAX_CLASSES`] classes, one finite mean and one finite
/// std > 0 per channel. The message says what is wrong, without a file name.
pub fn check_config(c: &ModelConfig) -> std::result::Result<(), String> {
    crate::data::check_image_shape(c.in_channels, c.height, c.width)?;
    if c.num_classes == 0 || c.num_classes > MAX_CLASSES {
        return Err(format!(
            "{} classes (must be in 1..={MAX_CLASSES})",
            c.num_classes
        ));
    }
    crate::data::Normalization {
        mean: c.mean.clone(),
        std: c.std.clone(),
    }
    .check(c.in_channels)
    .map_err(|e| e.to_string())
}

/// The temporary file a save writes before renaming it over `path`.
pub fn tmp_path(path: &Path) -> std::path::PathBuf {
    path.with_extension("safetensors.tmp")
}

/// Flushes a directory entry change (a rename) to disk. Only meaningful on Unix; elsewhere
/// directories cannot be opened for syncing and this does nothing.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// If `path` is missing but its temporary file holds a complete, valid checkpoint (a run
/// killed between writing it and renaming it), renames it into place and returns true.
/// A missing or incomplete temporary file is left alone (false).
pub fn recover(path: &Path) -> Result<bool> {
    let tmp = tmp_path(path);
    if path.exists() || !tmp.is_file() || Checkpoint::load(&tmp).is_err() {
        return Ok(false);
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    sync_dir(parent_dir(path))?;
    Ok(true)
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
    let dir = parent_dir(path);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // Write a temporary file and make it durable, then rename it over the old checkpoint
    // and make the rename durable: a crash at any point leaves the old or the new file.
    let tmp = tmp_path(path);
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()
    };
    write().map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    sync_dir(dir)
}

impl Checkpoint {
    /// Read and validate a checkpoint file.
    /// Only a regular file is read (a FIFO or device is refused before it is opened).
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if !meta.is_file() {
            return Err(ck_err(
                path,
                "not a regular file (devices, FIFOs and sockets cannot be read)",
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Checkpoint::from_bytes(&bytes, path)
    }

    /// Parses and validates a checkpoint held in memory; `path` only names it in messages.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Checkpoint> {
        let (_, header) = SafeTensors::read_metadata(bytes)
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
        check_config(&config).map_err(|m| ck_err(path, format!("bad model config: {m}")))?;
        if let Some(t) = state.es_threshold.filter(|t| !t.is_finite()) {
            return Err(ck_err(
                path,
                format!("bad training state: the ES threshold is {t}"),
            ));
        }
        let st = SafeTensors::deserialize(bytes).map_err(|e| ck_err(path, e.to_string()))?;
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
            path: path.display().to_string(),
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
        let err = |detail: String| Error::Checkpoint {
            path: self.path.clone(),
            detail,
        };
        let (shape, data) = self.tensors.get(name).ok_or_else(|| {
            err(format!(
                "no tensor '{name}' (the file does not match its own model config)"
            ))
        })?;
        if shape != t.shape() {
            return Err(err(format!(
                "tensor '{name}' has shape {shape:?} but the model config needs {:?}",
                t.shape()
            )));
        }
        t.write(data)
    }

    /// Whether optimizer state is stored (checkpoints written during training).
    pub fn has_optimizer_state(&self) -> bool {
        self.tensors.keys().any(|k| k.starts_with("optimizer."))
    }
}
