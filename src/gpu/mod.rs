//! Device and memory: the [`Gpu`] context owns (or borrows from a host application) the
//! wgpu device and queue, the buffer pool, the pipeline cache and the command recorder.
//!
//! Ops never submit on their own: they record compute passes into one pending command
//! encoder, and their small parameter blocks go into one uniform arena written just before
//! the submit. Work reaches the GPU on [`Gpu::flush`] or when something is read back.

mod kernel;
pub(crate) mod pool;
mod profile;
mod readback;

pub use kernel::KernelSpec;
pub(crate) use kernel::{Binding, Params, groups_1d as kernel_groups_1d, kernel_params, u};
pub use pool::MemoryStats;
pub use profile::KernelTimes;
pub use readback::PendingRead;

use crate::error::{Error, Result};
use kernel::Recorder;
use pool::{Pool, SharedPool};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// A mutex for the engine's shared state. A panic while it is held (a bug in a host's
/// closure, say) must not wedge the device for every other thread, so poisoning is ignored:
/// each critical section leaves the state consistent before anything can panic.
pub(crate) struct Lock<T>(Mutex<T>);

impl<T> Lock<T> {
    pub(crate) fn new(value: T) -> Self {
        Lock(Mutex::new(value))
    }
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How to pick an adapter when the engine creates its own device.
#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    /// Backends to consider; `None` means `WGPU_BACKEND` from the environment, else all.
    pub backends: Option<wgpu::Backends>,
    /// Keep only adapters whose name contains this (case-insensitive); `None` reads
    /// `ISOMAX_ADAPTER` from the environment.
    pub adapter_name: Option<String>,
    /// Request WebGPU's default limits only (what every vendor guarantees). When false,
    /// buffer-size limits are raised to what the adapter offers.
    pub portable_limits: bool,
    /// Never use subgroup operations, even where the adapter has them (to run or compare
    /// the portable kernels on such an adapter).
    pub no_subgroups: bool,
}

/// A description of the adapter in use, for `isomax info` and logs.
#[derive(Debug, Clone)]
pub struct AdapterReport {
    /// Adapter name as the driver reports it.
    pub name: String,
    /// Graphics API (Vulkan, Metal, Dx12, Gl...).
    pub backend: String,
    /// Discrete, integrated, virtual GPU or CPU (software).
    pub device_type: String,
    /// Driver name and version information.
    pub driver: String,
    /// Largest storage buffer binding, in bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer, in bytes.
    pub max_buffer_size: u64,
    /// Storage buffers one compute shader may bind.
    pub max_storage_buffers_per_shader_stage: u32,
    /// Workgroup shared memory, in bytes.
    pub max_compute_workgroup_storage_size: u32,
    /// Invocations (threads) per workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// The device was created with timestamp queries (used for profiling).
    pub timestamp_queries: bool,
    /// Lanes per subgroup when the engine uses subgroup operations (fixed-size subgroups
    /// only), else `None`.
    pub subgroup_size: Option<u32>,
}

impl std::fmt::Display for AdapterReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "adapter:  {} ({}, {})",
            self.name, self.backend, self.device_type
        )?;
        writeln!(f, "driver:   {}", self.driver)?;
        writeln!(
            f,
            "limits:   storage binding {} MiB, buffer {} MiB, {} storage buffers/stage, \
             {} KiB workgroup memory, {} invocations/workgroup",
            self.max_storage_buffer_binding_size >> 20,
            self.max_buffer_size >> 20,
            self.max_storage_buffers_per_shader_stage,
            self.max_compute_workgroup_storage_size >> 10,
            self.max_compute_invocations_per_workgroup
        )?;
        write!(f, "timestamp queries: {}", self.timestamp_queries)?;
        match self.subgroup_size {
            Some(n) => write!(f, ", subgroups: {n} lanes"),
            None => write!(f, ", subgroups: not used"),
        }
    }
}

pub(crate) struct GpuInner {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) report: AdapterReport,
    pub(crate) is_cpu: bool,
    pub(crate) pool: SharedPool,
    pub(crate) kernels: Lock<HashMap<String, Arc<kernel::Kernel>>>,
    pub(crate) recorder: Lock<Recorder>,
    pub(crate) staging: Lock<HashMap<u64, Vec<wgpu::Buffer>>>,
    /// The first error wgpu reported outside an error scope on a device the engine owns
    /// (wgpu's default handler would panic); surfaced by [`Gpu::sync`] and readbacks.
    pub(crate) device_error: Arc<Lock<Option<String>>>,
}

/// The engine's handle on a device: cheap to clone, `Send + Sync`. Threads that share one
/// `Gpu` record into one pending command encoder (each op's passes are self-contained, so
/// interleaving is safe) and share its buffer pool and pipeline cache.
///
/// ```no_run
/// let gpu = isomax::Gpu::new()?;
/// println!("{}", gpu.report());
/// # Ok::<(), isomax::Error>(())
/// ```
#[derive(Clone)]
pub struct Gpu(pub(crate) Arc<GpuInner>);

/// Minimal limits the engine's kernels need, on top of WebGPU's defaults.
fn required_limits(adapter_limits: &wgpu::Limits, portable: bool) -> wgpu::Limits {
    let mut l = wgpu::Limits::default();
    if !portable {
        l.max_storage_buffer_binding_size = adapter_limits
            .max_storage_buffer_binding_size
            .max(l.max_storage_buffer_binding_size);
        l.max_buffer_size = adapter_limits.max_buffer_size.max(l.max_buffer_size);
    }
    l
}

/// The subgroup width when the device has subgroup operations enabled and every subgroup
/// has the same width (kernels that share data across lanes are generated for that width).
fn fixed_subgroup_size(device: &wgpu::Device) -> Option<u32> {
    if !device.features().contains(wgpu::Features::SUBGROUP) {
        return None;
    }
    let i = device.adapter_info();
    (i.subgroup_min_size == i.subgroup_max_size && (1..=128).contains(&i.subgroup_min_size))
        .then_some(i.subgroup_min_size)
}

fn device_type_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

impl Gpu {
    /// Create a device on the best adapter (real GPUs first, then software ones),
    /// honouring `WGPU_BACKEND` and `ISOMAX_ADAPTER`.
    pub fn new() -> Result<Gpu> {
        Self::with_options(&GpuOptions::default())
    }

    /// Create a device with WebGPU's portable default limits (what the tests use).
    pub fn portable() -> Result<Gpu> {
        Self::with_options(&GpuOptions {
            portable_limits: true,
            ..Default::default()
        })
    }

    /// Create a device as `options` say.
    pub fn with_options(options: &GpuOptions) -> Result<Gpu> {
        let backends = options
            .backends
            .or_else(wgpu::Backends::from_env)
            .unwrap_or(wgpu::Backends::all());
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = backends;
        let instance = wgpu::Instance::new(desc);
        let filter = options
            .adapter_name
            .clone()
            .or_else(|| std::env::var("ISOMAX_ADAPTER").ok())
            .map(|s| s.to_lowercase());
        let mut adapters = pollster::block_on(instance.enumerate_adapters(backends));
        let all_names: Vec<String> = adapters
            .iter()
            .map(|a| {
                let i = a.get_info();
                format!("{} ({:?})", i.name, i.backend)
            })
            .collect();
        if let Some(f) = &filter {
            adapters.retain(|a| a.get_info().name.to_lowercase().contains(f));
        }
        // Real GPUs first; among equals prefer Vulkan/Metal/DX12 over GL (faster compute).
        adapters.sort_by_key(|a| {
            let i = a.get_info();
            (
                device_type_rank(i.device_type),
                (i.backend == wgpu::Backend::Gl) as u8,
            )
        });
        let Some(adapter) = adapters.into_iter().next() else {
            return Err(Error::Device(if all_names.is_empty() {
                format!(
                    "no GPU adapter found for backends {backends:?}. On a headless Linux machine \
                     install Mesa's software drivers (`apt-get install -y mesa-vulkan-drivers` \
                     for Vulkan/lavapipe; GL/llvmpipe comes with libegl-mesa0), or unset \
                     WGPU_BACKEND to try every backend."
                )
            } else {
                format!(
                    "no adapter matches '{}'; available: {}",
                    filter.unwrap_or_default(),
                    all_names.join(", ")
                )
            }));
        };
        let limits = required_limits(&adapter.limits(), options.portable_limits);
        let mut features = wgpu::Features::empty();
        let wanted =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
        if adapter.features().contains(wanted) {
            features |= wanted;
        }
        if !options.no_subgroups && adapter.features().contains(wgpu::Features::SUBGROUP) {
            features |= wgpu::Features::SUBGROUP;
        }
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("isomax"),
            required_features: features,
            required_limits: limits,
            ..Default::default()
        }))
        .map_err(|e| {
            Error::Device(format!(
                "cannot create a device on {}: {e}",
                adapter.get_info().name
            ))
        })?;
        let gpu = Self::assemble(device, queue);
        // Our own device: record uncaptured errors instead of panicking. A host's device
        // keeps the host's handler.
        let slot = gpu.0.device_error.clone();
        gpu.0.device.on_uncaptured_error(Arc::new(move |e| {
            slot.lock().get_or_insert_with(|| e.to_string());
        }));
        Ok(gpu)
    }

    /// Wrap a device and queue that a host application created. The engine checks that the
    /// device's limits are enough for its kernels and never polls it from another thread.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Result<Gpu> {
        let l = device.limits();
        let need = wgpu::Limits::default();
        let mut short = Vec::new();
        if l.max_storage_buffers_per_shader_stage < 8 {
            short.push(format!(
                "max_storage_buffers_per_shader_stage {} < 8",
                l.max_storage_buffers_per_shader_stage
            ));
        }
        if l.max_compute_invocations_per_workgroup < 256 {
            short.push(format!(
                "max_compute_invocations_per_workgroup {} < 256",
                l.max_compute_invocations_per_workgroup
            ));
        }
        if l.max_compute_workgroup_size_x < 256 {
            short.push(format!(
                "max_compute_workgroup_size_x {} < 256",
                l.max_compute_workgroup_size_x
            ));
        }
        if l.max_compute_workgroup_storage_size < need.max_compute_workgroup_storage_size {
            short.push(format!(
                "max_compute_workgroup_storage_size {} < {}",
                l.max_compute_workgroup_storage_size, need.max_compute_workgroup_storage_size
            ));
        }
        if l.max_uniform_buffer_binding_size < 256 {
            short.push("max_uniform_buffer_binding_size < 256".into());
        }
        if !short.is_empty() {
            return Err(Error::Device(format!(
                "the host device's limits are too small for isomax: {}",
                short.join(", ")
            )));
        }
        Ok(Self::assemble(device, queue))
    }

    fn assemble(device: wgpu::Device, queue: wgpu::Queue) -> Gpu {
        let l = device.limits();
        // A host-provided device is described by its own adapter, so kernels are chosen for
        // the real hardware (e.g. the CPU tilings on a host's lavapipe device).
        let i = device.adapter_info();
        let is_cpu = i.device_type == wgpu::DeviceType::Cpu;
        let report = AdapterReport {
            name: i.name.clone(),
            backend: format!("{:?}", i.backend),
            device_type: format!("{:?}", i.device_type),
            driver: format!("{} {}", i.driver, i.driver_info),
            max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
            max_buffer_size: l.max_buffer_size,
            max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
            max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            timestamp_queries: device.features().contains(wgpu::Features::TIMESTAMP_QUERY),
            subgroup_size: fixed_subgroup_size(&device),
        };
        let recorder = Recorder::new(&device);
        Gpu(Arc::new(GpuInner {
            device,
            queue,
            report,
            is_cpu,
            pool: Arc::new(Lock::new(Pool::default())),
            kernels: Lock::new(HashMap::new()),
            recorder: Lock::new(recorder),
            staging: Lock::new(HashMap::new()),
            device_error: Arc::new(Lock::new(None)),
        }))
    }

    /// The wgpu device (for host applications that share it).
    pub fn device(&self) -> &wgpu::Device {
        &self.0.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.0.queue
    }

    /// What adapter this is and what it allows.
    pub fn report(&self) -> &AdapterReport {
        &self.0.report
    }

    /// True on software adapters (lavapipe, llvmpipe), where kernels pick register tiles
    /// without workgroup barriers.
    pub fn is_cpu(&self) -> bool {
        self.0.is_cpu
    }

    /// Lanes per subgroup when kernels may use subgroup operations (see
    /// [`AdapterReport::subgroup_size`]).
    pub fn subgroup_size(&self) -> Option<u32> {
        self.0.report.subgroup_size
    }

    /// Buffer-pool statistics (peak bytes of GPU buffers the engine holds).
    pub fn memory(&self) -> MemoryStats {
        self.0.pool.lock().stats
    }

    /// Free the pool's idle buffers.
    pub fn trim_memory(&self) {
        self.0.pool.lock().trim();
    }

    /// Submit everything recorded so far. Does not wait.
    pub fn flush(&self) {
        self.0.recorder.lock().submit(&self.0.device, &self.0.queue);
    }

    /// Submit and wait until the GPU is idle (benchmarks, explicit sync points).
    pub fn sync(&self) -> Result<()> {
        self.flush();
        self.0
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Device(format!("device poll failed: {e}")))?;
        self.device_error()
    }

    /// An error the device reported since it was created (lost device, validation or
    /// out-of-memory outside the engine's error scopes), if any.
    pub(crate) fn device_error(&self) -> Result<()> {
        match self.0.device_error.lock().as_ref() {
            Some(e) => Err(Error::Device(format!("the GPU reported an error: {e}"))),
            None => Ok(()),
        }
    }

    /// Number of dispatches recorded since the context was created (for tests of batching).
    pub fn dispatch_count(&self) -> u64 {
        self.0.recorder.lock().total_dispatches
    }

    /// Number of queue submissions made so far.
    pub fn submit_count(&self) -> u64 {
        self.0.recorder.lock().total_submits
    }

    pub(crate) fn acquire(&self, bytes: u64) -> Result<pool::PooledBuffer> {
        let buffer = self.0.pool.lock().acquire(&self.0.device, bytes)?;
        Ok(pool::PooledBuffer {
            buffer: Some(buffer),
            pool: self.0.pool.clone(),
        })
    }

    /// Run `f` with gradient recording off on this thread (see [`crate::no_grad`]).
    pub fn no_grad<T>(&self, f: impl FnOnce() -> T) -> T {
        crate::autograd::no_grad(f)
    }

    /// Whether two handles share one device context.
    pub fn same_device(&self, other: &Gpu) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
