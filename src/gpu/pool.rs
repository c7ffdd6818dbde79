//! Buffer pool: GPU buffers are recycled so that a training step in steady state allocates
//! nothing new. Sizes are rounded up to 256 bytes; a request takes the smallest free buffer
//! of at least its size and at most twice it (tensors bind only their own bytes), which
//! keeps the many sizes of a DenseNet from each holding their own idle buffers. Every
//! buffer can be bound as storage and copied from and to.

use super::Lock;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Every pooled buffer is usable as storage and as a copy source/destination.
pub const POOL_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Allocation statistics, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes of all buffers the pool has created and still holds (in use or free).
    pub allocated: u64,
    /// The largest `allocated` ever reached.
    pub peak_allocated: u64,
    /// Bytes currently handed out to live tensors.
    pub in_use: u64,
    /// The largest `in_use` ever reached.
    pub peak_in_use: u64,
    /// How many buffers the pool has created since it started.
    pub buffers_created: u64,
}

#[derive(Default)]
pub(crate) struct Pool {
    free: BTreeMap<u64, Vec<wgpu::Buffer>>,
    pub(crate) stats: MemoryStats,
}

pub(crate) type SharedPool = Arc<Lock<Pool>>;

/// Round a byte count up to the pool's size class.
pub(crate) fn size_class(bytes: u64) -> u64 {
    bytes.max(4).div_ceil(256) * 256
}

impl Pool {
    pub(crate) fn acquire(&mut self, device: &wgpu::Device, bytes: u64) -> Result<wgpu::Buffer> {
        let size = size_class(bytes);
        let reuse = self
            .free
            .range_mut(size..=size * 2)
            .find(|(_, v)| !v.is_empty());
        if let Some(buf) = reuse.and_then(|(_, v)| v.pop()) {
            self.stats.in_use += buf.size();
            self.stats.peak_in_use = self.stats.peak_in_use.max(self.stats.in_use);
            return Ok(buf);
        }
        // A new buffer can fail (out of device memory): an error, not wgpu's panic.
        let scope = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buf = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("isomax pooled"),
            size,
            usage: POOL_USAGE,
            mapped_at_creation: false,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Limit {
                op: "alloc",
                detail: format!(
                    "cannot allocate {size} bytes on the device ({} bytes held by isomax): {e}",
                    self.stats.allocated
                ),
            });
        }
        self.stats.in_use += size;
        self.stats.peak_in_use = self.stats.peak_in_use.max(self.stats.in_use);
        self.stats.allocated += size;
        self.stats.peak_allocated = self.stats.peak_allocated.max(self.stats.allocated);
        self.stats.buffers_created += 1;
        Ok(buf)
    }

    pub(crate) fn release(&mut self, buf: wgpu::Buffer) {
        let size = buf.size();
        self.stats.in_use -= size;
        self.free.entry(size).or_default().push(buf);
    }

    /// Drop every free buffer (memory goes back to the driver).
    pub(crate) fn trim(&mut self) {
        for (size, bufs) in std::mem::take(&mut self.free) {
            self.stats.allocated -= size * bufs.len() as u64;
        }
    }
}

/// A buffer on loan from the pool; it goes back when dropped.
pub(crate) struct PooledBuffer {
    pub(crate) buffer: Option<wgpu::Buffer>,
    pub(crate) pool: SharedPool,
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            self.pool.lock().release(b);
        }
    }
}
