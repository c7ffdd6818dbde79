//! Copying results back to the host, blocking or not.

use super::{Binding, Gpu};
use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};

type MapResult = Arc<Mutex<Option<std::result::Result<(), wgpu::BufferAsyncError>>>>;

/// A readback in flight: the copy is submitted and the staging buffer is being mapped.
/// Call [`PendingRead::try_take`] from the host's own loop (it polls the device without
/// blocking), or [`PendingRead::wait`] to block.
pub struct PendingRead {
    gpu: Gpu,
    staging: Option<wgpu::Buffer>,
    bytes: u64,
    state: MapResult,
    /// Set when the read could not even start (it resolves to this error).
    error: Option<Error>,
}

impl Gpu {
    fn staging_buffer(&self, size: u64) -> wgpu::Buffer {
        if let Some(b) = self.0.staging.lock().get_mut(&size).and_then(|v| v.pop()) {
            return b;
        }
        self.0.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("isomax staging"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Start reading `b` back: records the copy, submits everything pending and requests
    /// the map. Never blocks.
    pub(crate) fn read_async(&self, b: Binding<'_>) -> PendingRead {
        let size = b.size.max(4).div_ceil(4) * 4;
        let staging = self.staging_buffer(super::pool::size_class(size));
        {
            let mut rec = self.0.recorder.lock();
            let enc = rec.encoder(&self.0.device);
            enc.copy_buffer_to_buffer(b.buffer, b.offset, &staging, 0, size);
        }
        self.flush();
        let state: MapResult = Arc::new(Mutex::new(None));
        let s2 = state.clone();
        staging.map_async(wgpu::MapMode::Read, 0..size, move |r| {
            *s2.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        });
        PendingRead {
            gpu: self.clone(),
            staging: Some(staging),
            bytes: size,
            state,
            error: None,
        }
    }
}

impl PendingRead {
    /// A read that resolves to `error` (checked before any GPU work).
    pub(crate) fn failed(gpu: &Gpu, error: Error) -> PendingRead {
        PendingRead {
            gpu: gpu.clone(),
            staging: None,
            bytes: 0,
            state: Arc::new(Mutex::new(None)),
            error: Some(error),
        }
    }

    /// Non-blocking: poll the device once; `Some` when the data is ready.
    pub fn try_take(&mut self) -> Option<Result<Vec<f32>>> {
        if let Some(e) = self.error.take() {
            return Some(Err(e));
        }
        let _ = self.gpu.0.device.poll(wgpu::PollType::Poll);
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()?;
        Some(self.finish())
    }

    /// Block until the data is ready.
    pub fn wait(mut self) -> Result<Vec<f32>> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        loop {
            if self
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some()
            {
                return self.finish();
            }
            self.gpu
                .0
                .device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| Error::Readback(e.to_string()))?;
        }
    }

    fn finish(&mut self) -> Result<Vec<f32>> {
        self.gpu.device_error()?;
        let staging = self
            .staging
            .take()
            .ok_or_else(|| Error::Readback("result already taken".into()))?;
        let r = self.state.lock().unwrap_or_else(|e| e.into_inner()).take();
        match r {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(Error::Readback(e.to_string())),
            None => return Err(Error::Readback("map not complete".into())),
        }
        let out = {
            let view = staging
                .get_mapped_range(0..self.bytes)
                .map_err(|e| Error::Readback(e.to_string()))?;
            bytemuck::cast_slice::<u8, f32>(&view).to_vec()
        };
        staging.unmap();
        let size = staging.size();
        self.gpu
            .0
            .staging
            .lock()
            .entry(size)
            .or_default()
            .push(staging);
        Ok(out)
    }
}
