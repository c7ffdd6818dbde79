//! [`Tensor`]: an f32 N-d array in a GPU buffer, with its place on the autodiff tape.

use crate::autograd::Node;
use crate::error::{Error, Result};
use crate::gpu::{Binding, Gpu, PendingRead};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal, Uniform};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) enum Storage {
    Pooled(crate::gpu::pool::PooledBuffer),
    /// A buffer owned by a host application, bound at `offset`.
    External {
        buffer: wgpu::Buffer,
        offset: u64,
    },
}

impl Storage {
    fn buffer(&self) -> &wgpu::Buffer {
        match self {
            Storage::Pooled(p) => p.buffer.as_ref().expect("pooled buffer present until drop"),
            Storage::External { buffer, .. } => buffer,
        }
    }
    fn offset(&self) -> u64 {
        match self {
            Storage::Pooled(_) => 0,
            Storage::External { offset, .. } => *offset,
        }
    }
}

pub(crate) struct TensorInner {
    pub(crate) gpu: Gpu,
    pub(crate) shape: Vec<usize>,
    pub(crate) storage: Arc<Storage>,
    pub(crate) id: u64,
    pub(crate) requires_grad: AtomicBool,
    /// How this tensor was computed, when it was recorded for backward.
    pub(crate) node: OnceLock<Node>,
}

/// An f32 tensor living in a GPU buffer. Cloning is cheap (shared storage); `Send + Sync`.
/// A result of ops on tensors that require gradients holds its graph node (see
/// [`crate::autograd`]).
///
/// ```no_run
/// use isomax::{Gpu, Tensor};
/// let gpu = Gpu::new()?;
/// let a = Tensor::from_slice(&gpu, &[1.0, 2.0, 3.0, 4.0], &[2, 2])?;
/// let b = a.add(&a)?;
/// assert_eq!(b.to_vec()?, vec![2.0, 4.0, 6.0, 8.0]);
/// # Ok::<(), isomax::Error>(())
/// ```
#[derive(Clone)]
pub struct Tensor(pub(crate) Arc<TensorInner>);

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor{:?}", self.0.shape)
    }
}

/// Number of elements of a shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    /// An uninitialised tensor from the pool (kernels fill it).
    pub(crate) fn empty(gpu: &Gpu, shape: &[usize]) -> Result<Tensor> {
        let n = numel(shape);
        let bytes = (n.max(1) * 4) as u64;
        let max = gpu.device().limits().max_buffer_size;
        if bytes > max {
            return Err(Error::Limit {
                op: "alloc",
                detail: format!("tensor {shape:?} needs {bytes} bytes, device max buffer is {max}"),
            });
        }
        let buf = gpu.acquire(bytes)?;
        Ok(Self::wrap(gpu, shape, Storage::Pooled(buf)))
    }

    fn wrap(gpu: &Gpu, shape: &[usize], storage: Storage) -> Tensor {
        Self::view(gpu, shape, Arc::new(storage))
    }

    /// A new tensor (fresh id, no graph node) over existing storage.
    fn view(gpu: &Gpu, shape: &[usize], storage: Arc<Storage>) -> Tensor {
        Tensor(Arc::new(TensorInner {
            gpu: gpu.clone(),
            shape: shape.to_vec(),
            storage,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            requires_grad: AtomicBool::new(false),
            node: OnceLock::new(),
        }))
    }

    /// Upload host data.
    pub fn from_slice(gpu: &Gpu, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        if data.len() != numel(shape) {
            return Err(Error::mismatch(
                "from_slice",
                format!("{} values for shape {shape:?}", numel(shape)),
                format!("{} values", data.len()),
            ));
        }
        let t = Self::empty(gpu, shape)?;
        t.write(data)?;
        Ok(t)
    }

    /// Overwrite the tensor's contents from host data (same element count).
    pub fn write(&self, data: &[f32]) -> Result<()> {
        self.require_usage(wgpu::BufferUsages::COPY_DST, "written from the host")?;
        if data.len() != self.numel() {
            return Err(Error::mismatch(
                "write",
                format!("{} values for tensor {:?}", self.numel(), self.shape()),
                format!("{} values", data.len()),
            ));
        }
        let gpu = &self.0.gpu;
        // `write_buffer` runs before the next submit's commands: flush work already recorded
        // so that it cannot see data written "later" (the buffer may have been recycled).
        if gpu.0.recorder.lock().has_pending() {
            gpu.flush();
        }
        if !data.is_empty() {
            gpu.queue()
                .write_buffer(self.buffer(), self.offset(), bytemuck::cast_slice(data));
        }
        Ok(())
    }

    /// A tensor of `value`s, filled on the GPU in recording order (no upload, no submit).
    pub fn full(gpu: &Gpu, shape: &[usize], value: f32) -> Result<Tensor> {
        let t = Self::empty(gpu, shape)?;
        t.clear();
        if value == 0.0 {
            return Ok(t);
        }
        gpu.no_grad(|| t.affine(0.0, value))
    }

    /// A tensor of zeros (cleared on the GPU, in recording order).
    pub fn zeros(gpu: &Gpu, shape: &[usize]) -> Result<Tensor> {
        Self::full(gpu, shape, 0.0)
    }

    /// A tensor of ones.
    pub fn ones(gpu: &Gpu, shape: &[usize]) -> Result<Tensor> {
        Self::full(gpu, shape, 1.0)
    }

    /// Normal(mean, std) values from a seeded generator.
    pub fn randn(gpu: &Gpu, shape: &[usize], mean: f32, std: f32, seed: u64) -> Result<Tensor> {
        let mut rng = StdRng::seed_from_u64(seed);
        let dist = Normal::new(mean, std)
            .map_err(|e| Error::Config(format!("randn: bad std {std}: {e}")))?;
        let v: Vec<f32> = (0..numel(shape)).map(|_| dist.sample(&mut rng)).collect();
        Self::from_slice(gpu, &v, shape)
    }

    /// Uniform[lo, hi) values from a seeded generator.
    pub fn uniform(gpu: &Gpu, shape: &[usize], lo: f32, hi: f32, seed: u64) -> Result<Tensor> {
        let mut rng = StdRng::seed_from_u64(seed);
        let dist = Uniform::new(lo, hi)
            .map_err(|e| Error::Config(format!("uniform: bad range [{lo}, {hi}): {e}")))?;
        let v: Vec<f32> = (0..numel(shape)).map(|_| dist.sample(&mut rng)).collect();
        Self::from_slice(gpu, &v, shape)
    }

    /// He-normal init: N(0, 2/fan) where `fan` is fan-in or fan-out as the caller chooses.
    pub fn he_normal(gpu: &Gpu, shape: &[usize], fan: usize, seed: u64) -> Result<Tensor> {
        Self::randn(gpu, shape, 0.0, (2.0 / fan.max(1) as f32).sqrt(), seed)
    }

    /// Build a tensor over a buffer a host application owns. The buffer must have STORAGE
    /// usage (and COPY_SRC to be read back), `offset` must be a multiple of the device's
    /// storage offset alignment, and the range must hold the shape.
    pub fn from_buffer(
        gpu: &Gpu,
        buffer: &wgpu::Buffer,
        offset: u64,
        shape: &[usize],
    ) -> Result<Tensor> {
        let usage = buffer.usage();
        if !usage.contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::Buffer(format!(
                "host buffer has usage {usage:?}; it needs STORAGE to be bound by isomax kernels"
            )));
        }
        let align = gpu.device().limits().min_storage_buffer_offset_alignment as u64;
        if !offset.is_multiple_of(align) {
            return Err(Error::Buffer(format!(
                "offset {offset} is not a multiple of the storage offset alignment {align}"
            )));
        }
        let need = (numel(shape) * 4) as u64;
        if offset + need > buffer.size() {
            return Err(Error::Buffer(format!(
                "shape {shape:?} needs {need} bytes at offset {offset}, buffer has {}",
                buffer.size()
            )));
        }
        Ok(Self::wrap(
            gpu,
            shape,
            Storage::External {
                buffer: buffer.clone(),
                offset,
            },
        ))
    }

    /// Zero the tensor in place (recorded, ordered with other GPU work).
    pub(crate) fn clear(&self) {
        let gpu = &self.0.gpu;
        let mut rec = gpu.0.recorder.lock();
        let enc = rec.encoder(gpu.device());
        let bytes = (self.numel() * 4) as u64;
        if bytes > 0 {
            enc.clear_buffer(self.buffer(), self.offset(), Some(bytes.div_ceil(4) * 4));
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.0.shape)
    }

    /// The context this tensor lives on.
    pub fn gpu(&self) -> &Gpu {
        &self.0.gpu
    }

    /// The wgpu buffer holding the data (bind it at [`Tensor::offset`] for
    /// [`Tensor::byte_size`] bytes).
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.0.storage.buffer()
    }

    /// Byte offset of the data in [`Tensor::buffer`].
    pub fn offset(&self) -> u64 {
        self.0.storage.offset()
    }

    /// Bytes of data (4 per element).
    pub fn byte_size(&self) -> u64 {
        (self.numel() * 4) as u64
    }

    pub(crate) fn binding(&self) -> Binding<'_> {
        Binding {
            buffer: self.buffer(),
            offset: self.offset(),
            size: self.byte_size().max(4),
        }
    }

    /// Unique id, increasing in creation order (the key of [`crate::autograd::Gradients`]).
    pub(crate) fn id(&self) -> u64 {
        self.0.id
    }

    /// A host buffer wrapped by [`Tensor::from_buffer`] may lack the usage an operation
    /// needs (wgpu would panic); pooled buffers have every usage.
    fn require_usage(&self, usage: wgpu::BufferUsages, what: &str) -> Result<()> {
        let have = self.buffer().usage();
        if have.contains(usage) {
            return Ok(());
        }
        Err(Error::Buffer(format!(
            "the host buffer has usage {have:?}; it needs {usage:?} to be {what}"
        )))
    }

    /// Blocking readback (submits pending work and waits).
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        let mut v = self.read_async().wait()?;
        v.truncate(self.numel());
        Ok(v)
    }

    /// Start a readback without blocking; see [`PendingRead`]. A host buffer without
    /// `COPY_SRC` gives a `PendingRead` that resolves to that error.
    pub fn read_async(&self) -> PendingRead {
        match self.require_usage(wgpu::BufferUsages::COPY_SRC, "read back") {
            Ok(()) => self.0.gpu.read_async(self.binding()),
            Err(e) => PendingRead::failed(self.gpu(), e),
        }
    }

    /// Read a one-element tensor.
    pub fn item(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(Error::mismatch(
                "item",
                "a one-element tensor",
                format!("{:?}", self.shape()),
            ));
        }
        Ok(self.to_vec()?[0])
    }

    /// Same data, new shape (no copy). Gradients flow through.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) != self.numel() {
            return Err(Error::shape(
                "reshape",
                format!(
                    "{:?} ({} elements) to {shape:?} ({} elements)",
                    self.shape(),
                    self.numel(),
                    numel(shape)
                ),
            ));
        }
        let out = Self::view(self.gpu(), shape, self.0.storage.clone());
        let in_shape = self.shape().to_vec();
        self.gpu().record(&out, &[self], move |g| {
            Ok(vec![Some(g.reshape(&in_shape)?)])
        });
        Ok(out)
    }

    /// The same data, cut off from the tape.
    pub fn detach(&self) -> Tensor {
        Self::view(self.gpu(), self.shape(), self.0.storage.clone())
    }

    /// A tensor of `shape` over the first elements of this one's storage (fresh id, no graph
    /// node, not a copy): scratch space that one allocation serves at several sizes.
    pub(crate) fn prefix_view(&self, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) > self.numel() {
            return Err(Error::shape(
                "prefix_view",
                format!("{shape:?} does not fit in {:?}", self.shape()),
            ));
        }
        Ok(Self::view(self.gpu(), shape, self.0.storage.clone()))
    }

    /// Mark as a leaf that receives a gradient (a parameter).
    pub fn set_requires_grad(&self, on: bool) -> &Self {
        self.0.requires_grad.store(on, Ordering::Relaxed);
        self
    }

    /// Whether gradients flow to or through this tensor.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad.load(Ordering::Relaxed)
    }

    /// Check that two shapes are equal, for op `op`.
    pub(crate) fn same_shape(&self, other: &Tensor, op: &'static str) -> Result<()> {
        if self.shape() != other.shape() {
            return Err(Error::mismatch(
                op,
                format!("{:?}", self.shape()),
                format!("{:?}", other.shape()),
            ));
        }
        Ok(())
    }
}
