//! Pipeline cache and the command recorder.
//!
//! Binding convention shared by every WGSL kernel in `shaders/`: binding 0 is a uniform
//! `Params` block (at most 128 bytes, read through a dynamic offset into one arena), then
//! `reads` read-only storage buffers, then `writes` read-write storage buffers.

use super::Gpu;
use crate::error::{Error, Result};
use std::sync::Arc;

/// Bytes of one parameter block as the shader sees it.
const PARAM_BYTES: u64 = 128;
/// Distance between two parameter blocks in the arena (the uniform offset alignment).
const PARAM_STRIDE: usize = 256;
/// Parameter blocks per submit; more dispatches than this in one step cause an extra submit.
const ARENA_SLOTS: usize = 8192;

/// Describes one compute entry point of one WGSL file.
#[derive(Debug, Clone, Copy)]
pub struct KernelSpec {
    /// The kernel family (the WGSL file's name), for cache keys and labels.
    pub family: &'static str,
    /// WGSL source text.
    pub source: &'static str,
    /// Entry point name.
    pub entry: &'static str,
    /// Read-only storage buffers, bound at 1..=reads.
    pub reads: u32,
    /// Read-write storage buffers, bound after the reads.
    pub writes: u32,
}

pub(crate) struct Kernel {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    bindings: u32,
}

/// One storage binding: a buffer range.
#[derive(Clone, Copy)]
pub(crate) struct Binding<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: u64,
    pub size: u64,
}

/// A kernel's parameter block: a `#[repr(C)]` `Pod` struct that mirrors its shader's WGSL
/// struct field for field, declared with [`kernel_params!`](crate::gpu::kernel_params).
pub(crate) trait Params: bytemuck::Pod {
    /// The name of the WGSL struct it mirrors (in the kernel family's module).
    const WGSL: &'static str;
    /// `(field, byte offset, Rust type)` in declaration order.
    const FIELDS: &'static [(&'static str, usize, &'static str)];
}

/// Declares a kernel's parameter block: a `#[repr(C)]` `bytemuck::Pod` struct whose fields
/// mirror the WGSL struct `$wgsl` one for one, in order, with the same names and types
/// (`u32`, `i32`, `f32` only, so both layouts are packed 4-byte words). The layout is
/// checked against naga's reflection of the WGSL by `tests/shaders.rs`.
macro_rules! kernel_params {
    (
        $(#[$m:meta])*
        struct $name:ident => $wgsl:literal {
            $($(#[$fm:meta])* $field:ident : $ty:ty,)*
        }
    ) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
        pub(crate) struct $name {
            $($(#[$fm])* pub(crate) $field: $ty,)*
        }
        impl $crate::gpu::Params for $name {
            const WGSL: &'static str = $wgsl;
            const FIELDS: &'static [(&'static str, usize, &'static str)] = &[
                $((stringify!($field), ::std::mem::offset_of!($name, $field), stringify!($ty)),)*
            ];
        }
    };
}
pub(crate) use kernel_params;

/// A size or index as a kernel's `u32` parameter (tensors are far below 2³² elements: a
/// storage binding is limited to less than 4 GiB).
pub(crate) fn u(v: usize) -> u32 {
    u32::try_from(v).expect("kernel parameter exceeds u32")
}

pub(crate) struct Recorder {
    encoder: Option<wgpu::CommandEncoder>,
    params: Vec<u8>,
    arena: wgpu::Buffer,
    pub(crate) total_dispatches: u64,
    pub(crate) total_submits: u64,
    pub(crate) profiler: Option<super::profile::Profiler>,
}

impl Recorder {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        let arena = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("isomax params arena"),
            size: (ARENA_SLOTS * PARAM_STRIDE) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Recorder {
            encoder: None,
            params: Vec::with_capacity(64 * PARAM_STRIDE),
            arena,
            total_dispatches: 0,
            total_submits: 0,
            profiler: None,
        }
    }

    pub(crate) fn has_pending(&self) -> bool {
        self.encoder.is_some()
    }

    pub(crate) fn encoder(&mut self, device: &wgpu::Device) -> &mut wgpu::CommandEncoder {
        self.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("isomax step"),
            })
        })
    }

    /// Write the parameter arena, then submit the pending encoder. `write_buffer` is
    /// ordered before the command buffers of the same submit, and after earlier submits.
    pub(crate) fn submit(&mut self, device: &wgpu::Device, queue: &wgpu::Queue) {
        let Some(enc) = self.encoder.take() else {
            return;
        };
        if !self.params.is_empty() {
            queue.write_buffer(&self.arena, 0, &self.params);
            self.params.clear();
        }
        let _ = device;
        queue.submit(Some(enc.finish()));
        self.total_submits += 1;
    }
}

/// Workgroup counts covering `n` invocations of `wg` each, split over two dimensions when
/// more than 65535 workgroups are needed. Kernels index with
/// `gid.x + gid.y * num_workgroups.x * WG`.
pub(crate) fn groups_1d(n: usize, wg: u32) -> [u32; 3] {
    let groups = n.div_ceil(wg as usize).max(1);
    if groups <= 65535 {
        [groups as u32, 1, 1]
    } else {
        let y = groups.div_ceil(65535);
        [groups.div_ceil(y) as u32, y as u32, 1]
    }
}

impl Gpu {
    /// The cached pipeline for `spec`, built on first use. Shader or layout errors (a bug,
    /// or a device that cannot run the kernel) come back as an error naming the kernel
    /// instead of wgpu's panic.
    fn kernel(&self, spec: &KernelSpec, constants: &[(&str, f64)]) -> Result<Arc<Kernel>> {
        // Generated variants share family and entry names: the source address tells them apart.
        let key = format!(
            "{}::{}@{:p}{:?}",
            spec.family,
            spec.entry,
            spec.source.as_ptr(),
            constants
        );
        if let Some(k) = self.0.kernels.lock().get(&key) {
            return Ok(k.clone());
        }
        let device = &self.0.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(spec.family),
            source: wgpu::ShaderSource::Wgsl(spec.source.into()),
        });
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: true,
                min_binding_size: None,
            },
            count: None,
        }];
        for i in 0..spec.reads + spec.writes {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: 1 + i,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: i < spec.reads,
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(spec.entry),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(spec.entry),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(spec.entry),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(spec.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Device(format!(
                "kernel {}::{} cannot be built on this device: {e}",
                spec.family, spec.entry
            )));
        }
        let k = Arc::new(Kernel {
            pipeline,
            layout,
            bindings: spec.reads + spec.writes,
        });
        self.0.kernels.lock().insert(key, k.clone());
        Ok(k)
    }

    /// Record one dispatch of `spec` with the parameter block `params` into the pending
    /// encoder.
    pub(crate) fn dispatch<P: Params>(
        &self,
        spec: &KernelSpec,
        constants: &[(&str, f64)],
        params: &P,
        bindings: &[Binding<'_>],
        groups: [u32; 3],
    ) -> Result<()> {
        const { assert!(size_of::<P>() <= PARAM_BYTES as usize) };
        self.dispatch_bytes(
            spec,
            constants,
            bytemuck::bytes_of(params),
            bindings,
            groups,
        )
    }

    fn dispatch_bytes(
        &self,
        spec: &KernelSpec,
        constants: &[(&str, f64)],
        params: &[u8],
        bindings: &[Binding<'_>],
        groups: [u32; 3],
    ) -> Result<()> {
        let kernel = self.kernel(spec, constants)?;
        if bindings.len() as u32 != kernel.bindings {
            return Err(Error::Limit {
                op: spec.entry,
                detail: format!(
                    "internal: {} bindings given, kernel declares {}",
                    bindings.len(),
                    kernel.bindings
                ),
            });
        }
        let max_binding = self.0.device.limits().max_storage_buffer_binding_size;
        for b in bindings {
            if b.size > max_binding {
                return Err(Error::Limit {
                    op: spec.entry,
                    detail: format!(
                        "a tensor of {} bytes exceeds the device's storage binding limit of {} bytes",
                        b.size, max_binding
                    ),
                });
            }
        }
        if groups.iter().any(|&g| g > 65535) {
            return Err(Error::Limit {
                op: spec.entry,
                detail: format!("dispatch of {groups:?} workgroups exceeds 65535 per dimension"),
            });
        }
        if groups.contains(&0) {
            return Ok(());
        }
        let device = &self.0.device;
        let mut rec = self.0.recorder.lock();
        if rec.params.len() >= ARENA_SLOTS * PARAM_STRIDE {
            rec.submit(device, &self.0.queue);
        }
        let offset = rec.params.len();
        rec.params.extend_from_slice(params);
        rec.params.resize(offset + PARAM_STRIDE, 0);

        let mut entries = Vec::with_capacity(bindings.len() + 1);
        entries.push(wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &rec.arena,
                offset: 0,
                size: wgpu::BufferSize::new(PARAM_BYTES),
            }),
        });
        for (i, b) in bindings.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: 1 + i as u32,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: b.buffer,
                    offset: b.offset,
                    size: wgpu::BufferSize::new(b.size.max(4)),
                }),
            });
        }
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(spec.entry),
            layout: &kernel.layout,
            entries: &entries,
        });
        let slot = match &mut rec.profiler {
            Some(p) if (p.labels.len() as u32) < super::profile::QUERIES / 2 => {
                p.labels.push(spec.entry);
                Some(p.labels.len() as u32 - 1)
            }
            _ => None,
        };
        let Recorder {
            encoder, profiler, ..
        } = &mut *rec;
        let enc = encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("isomax step"),
            })
        });
        {
            let timestamp_writes = match (profiler.as_ref(), slot) {
                (Some(p), Some(i)) => Some(wgpu::ComputePassTimestampWrites {
                    query_set: &p.set,
                    beginning_of_pass_write_index: Some(2 * i),
                    end_of_pass_write_index: Some(2 * i + 1),
                }),
                _ => None,
            };
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(spec.entry),
                timestamp_writes,
            });
            pass.set_pipeline(&kernel.pipeline);
            pass.set_bind_group(0, &bind_group, &[offset as u32]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        }
        rec.total_dispatches += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_shader_is_an_error_not_a_panic() {
        let gpu = Gpu::portable().expect("adapter");
        let spec = KernelSpec {
            family: "broken",
            source: "fn nope( {",
            entry: "main",
            reads: 0,
            writes: 1,
        };
        let e = gpu.kernel(&spec, &[]).err().expect("must fail").to_string();
        assert!(e.contains("broken::main"), "{e}");
        assert_eq!(groups_1d(256 * 70_000, 256), [35_000, 2, 1]);
    }
}
